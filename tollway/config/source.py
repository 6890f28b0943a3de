"""YAML text -> plain documents with a line for every field path (pure).

Parsing goes through ruamel.yaml's *node* layer rather than its constructors, so that we
keep the line of every key and item (findings must point at lines), and so that we decide
ourselves what an alias may cost: a billion-laughs document is refused once its expansion
passes a node budget instead of being materialised. Anything wrong becomes a `Finding`;
nothing here raises on bad input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.constructor import SafeConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from tollway.config.findings import Finding

PathKey = tuple[str | int, ...]

MAX_BYTES = 1024 * 1024  # per file; Kubernetes itself refuses objects over ~1.5 MB
MAX_ITEMS = 25_000  # lines + flow items per file: keeps the pure-Python parser under ~2 s
MAX_NODES = 100_000  # per document, after alias expansion (real manifests stay far below)
MAX_DEPTH = 64

_MERGE_TAG = "tag:yaml.org,2002:merge"
_NULL_TAG = "tag:yaml.org,2002:null"
_SCALAR_TAGS = {
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
}


@dataclass(frozen=True, slots=True)
class Document:
    """One YAML document: its plain data, its index in the file, and field-path lines."""

    file: str
    index: int
    data: Any
    line: int
    lines: dict[PathKey, int] = field(default_factory=dict)

    def line_of(self, path: PathKey) -> int:
        """The line of `path`, or of its nearest existing ancestor."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.line


class SourceError(Exception):
    """Raised internally while converting; always turned into a Finding."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


def format_path(path: PathKey) -> str:
    """`("spec", "http", 0, "route")` -> `spec.http[0].route`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


class _Converter:
    """Node graph -> plain Python, recording lines, with an expansion budget."""

    def __init__(self, constructor: SafeConstructor) -> None:
        self.lines: dict[PathKey, int] = {}
        self.nodes = 0
        self._scalars = constructor

    def convert(self, node: Node, path: PathKey, depth: int = 0) -> Any:
        self.nodes += 1
        line = node.start_mark.line + 1
        if self.nodes > MAX_NODES:
            raise SourceError(
                f"document expands to more than {MAX_NODES} nodes (an alias bomb?); "
                "write it out without anchors/aliases",
                line,
            )
        if depth > MAX_DEPTH:
            raise SourceError(f"nesting deeper than {MAX_DEPTH} levels", line)
        if isinstance(node, MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, SequenceNode):
            out: list[Any] = []
            for i, item in enumerate(node.value):
                self.lines.setdefault((*path, i), item.start_mark.line + 1)
                out.append(self.convert(item, (*path, i), depth + 1))
            return out
        return self._scalar(node)

    def _scalar(self, node: Node) -> Any:
        if not isinstance(node, ScalarNode):  # pragma: no cover - defensive
            raise SourceError("unsupported YAML node", node.start_mark.line + 1)
        if node.tag in _SCALAR_TAGS:
            try:
                return self._scalars.construct_object(node, deep=True)
            except (YAMLError, ValueError, OverflowError):
                return str(node.value)
        return str(node.value)

    def _mapping(self, node: MappingNode, path: PathKey, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        explicit: set[str] = set()
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged = self.convert(value_node, path, depth + 1)
                sources = merged if isinstance(merged, list) else [merged]
                for src in sources:
                    if isinstance(src, dict):
                        for k, v in src.items():
                            out.setdefault(k, v)
                continue
            if not isinstance(key_node, ScalarNode):
                raise SourceError(
                    "a mapping key must be a plain string", key_node.start_mark.line + 1
                )
            key = str(key_node.value)
            kline = key_node.start_mark.line + 1
            if key in explicit:
                raise SourceError(f"duplicate key '{key}'", kline)
            explicit.add(key)
            self.lines[(*path, key)] = kline
            out[key] = self.convert(value_node, (*path, key), depth + 1)
        return out


def _error_line(exc: BaseException) -> int:
    if isinstance(exc, MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = str(exc.problem or "")
        if exc.context_mark is not None and ("<stream end>" in problem
                                             or "end of stream" in problem):
            mark = exc.context_mark
        if mark is not None:
            return int(mark.line) + 1
    return 1


def _syntax_message(exc: BaseException) -> str:
    if isinstance(exc, MarkedYAMLError):
        parts = [p for p in (exc.context, exc.problem) if p]
        text = ", ".join(str(p) for p in parts) or "invalid YAML"
    else:
        text = str(exc).splitlines()[0] if str(exc) else "invalid YAML"
    return f"YAML syntax error: {text}"


def _yaml() -> YAML:
    yaml = YAML(typ="safe", pure=True)
    yaml.allow_duplicate_keys = True
    return yaml


_BRACKETS = str.maketrans({c: None for c in map(chr, range(128)) if c not in "[]{}\n"})


def _too_deep(text: str) -> int:
    """Line where [ / { nesting passes MAX_DEPTH, else 0.

    ruamel's scanner is quadratic in flow nesting, so this is checked before parsing.
    """
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return 0
    depth, line = 0, 1
    for ch in text.translate(_BRACKETS):
        if ch == "\n":
            line += 1
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return line
        elif depth:
            depth -= 1
    return 0


def parse_text(text: str, file: str = "<string>") -> tuple[list[Document], list[Finding]]:
    """Split `text` into documents; every problem is a Finding (never an exception)."""
    size = len(text.encode("utf-8", errors="replace"))
    if size > MAX_BYTES:
        mb = size / (1024 * 1024)
        return [], [
            Finding(
                file, 1, "", "", "",
                f"file is {mb:.1f} MB; Tollway reads manifests up to "
                f"{MAX_BYTES // (1024 * 1024)} MB per file (split it into several files)",
                doc=0,
            )
        ]
    items = text.count("\n") + text.count(",")
    if items > MAX_ITEMS:
        return [], [Finding(file, 1, "", "", "", f"file has {items} lines/items; Tollway reads "
                            f"manifest files up to {MAX_ITEMS} (split it into several files)")]
    deep = _too_deep(text)
    if deep:
        return [], [Finding(file, deep, "", "", "", f"nesting deeper than {MAX_DEPTH} levels")]
    docs: list[Document] = []
    findings: list[Finding] = []
    index = -1
    yaml = _yaml()
    try:
        for node in yaml.compose_all(text):
            index += 1
            if node is None or (isinstance(node, ScalarNode) and node.tag == _NULL_TAG):
                continue
            conv = _Converter(yaml.constructor)
            line = node.start_mark.line + 1
            try:
                data = conv.convert(node, ())
            except SourceError as exc:
                findings.append(Finding(file, exc.line, "", "", "", str(exc), doc=index))
                continue
            except RecursionError:
                findings.append(
                    Finding(file, line, "", "", "", "document nested too deeply", doc=index)
                )
                continue
            docs.append(Document(file, index, data, line, conv.lines))
    except RecursionError:
        findings.append(Finding(file, 1, "", "", "", "YAML nested too deeply", doc=index + 1))
    except (YAMLError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        findings.append(
            Finding(file, _error_line(exc), "", "", "", _syntax_message(exc), doc=index + 1)
        )
    return docs, findings
