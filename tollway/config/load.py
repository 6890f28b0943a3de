"""Files and folders -> a validated ResourceSet plus findings (the IO edge of config/).

`load_text` is pure; `load_paths` only adds reading files. Neither raises on bad input:
everything wrong with the user's manifests comes back as a Finding, so the CLI, the
control plane and `tollway up` all report the same thing the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tollway.config.findings import ConfigError, Finding, Severity, has_errors
from tollway.config.resource import Resource, ResourceSet
from tollway.config.source import MAX_BYTES, Document, parse_text
from tollway.config.validate import validate_document

SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True, slots=True)
class LoadResult:
    resources: ResourceSet
    findings: tuple[Finding, ...]
    files: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when no finding is an error (warnings allowed)."""
        return not has_errors(self.findings)

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.is_error)

    def raise_if_errors(self) -> None:
        """For callers that must refuse the whole apply: ConfigError carries the errors."""
        if not self.ok:
            raise ConfigError(self.errors)


def _unlist(doc: Document) -> list[Document]:
    """`kind: List` (what `kubectl get -o yaml` prints) -> one document per item."""
    data = doc.data
    if not (isinstance(data, dict) and data.get("kind") == "List"
            and isinstance(data.get("items"), list)):
        return [doc]
    out = []
    for i, item in enumerate(data["items"]):
        prefix = ("items", i)
        lines = {k[2:]: v for k, v in doc.lines.items() if k[:2] == prefix}
        out.append(Document(doc.file, doc.index, item, doc.line_of(prefix), lines))
    return out


def _load_one(text: str, file: str) -> tuple[list[Resource], list[Finding]]:
    docs, findings = parse_text(text, file)
    docs = [d for doc in docs for d in _unlist(doc)]
    resources: list[Resource] = []
    for doc in docs:
        resource, more = validate_document(doc)
        findings.extend(more)
        if resource is not None:
            resources.append(resource)
    if not docs and not findings:
        findings.append(
            Finding(file, 1, "", "", "", "no resources in this file (it is empty)",
                    Severity.WARNING)
        )
    return resources, findings


def load_text(text: str, file: str = "<string>") -> LoadResult:
    """Parse and validate one YAML/JSON text (any number of documents)."""
    resources, findings = _load_one(text, file)
    return LoadResult(ResourceSet(resources), tuple(findings), (file,))


def expand_paths(paths: Sequence[str | Path]) -> tuple[list[Path], list[Finding]]:
    """Files as given; folders -> their *.yaml/*.yml/*.json files, sorted (not recursive)."""
    files: list[Path] = []
    findings: list[Finding] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(
                c for c in path.iterdir() if c.is_file() and c.suffix.lower() in SUFFIXES
            )
            if not found:
                subs = sorted(c.name for c in path.iterdir() if c.is_dir())
                hint = (f" (folders are not read recursively; name a sub-folder, e.g. "
                        f"{path / subs[0]})" if subs else "")
                findings.append(
                    Finding(str(path), 0, "", "", "",
                            f"folder holds no .yaml, .yml or .json files{hint}",
                            Severity.WARNING)
                )
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            findings.append(Finding(str(path), 0, "", "", "", "no such file or folder"))
    return files, findings


def _read(path: Path) -> tuple[str | None, Finding | None]:
    file = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            mb = size / (1024 * 1024)
            return None, Finding(
                file, 1, "", "", "",
                f"file is {mb:.1f} MB; Tollway reads manifests up to "
                f"{MAX_BYTES // (1024 * 1024)} MB per file (split it into several files)",
            )
        return path.read_bytes().decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return None, Finding(file, 1, "", "", "", f"file is not UTF-8 text ({exc.reason})")
    except OSError as exc:
        return None, Finding(file, 0, "", "", "", f"cannot read: {exc.strerror or exc}")


def load_paths(paths: Sequence[str | Path]) -> LoadResult:
    """Load files and folders; later resources replace earlier ones with the same key."""
    files, findings = expand_paths(paths)
    resources: list[Resource] = []
    for path in files:
        text, problem = _read(path)
        if problem is not None:
            findings.append(problem)
            continue
        assert text is not None
        more_resources, more_findings = _load_one(text, str(path))
        resources.extend(more_resources)
        findings.extend(more_findings)
    return LoadResult(ResourceSet(resources), tuple(findings), tuple(str(f) for f in files))
