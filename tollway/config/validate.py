"""One parsed document -> a validated Resource and its findings (pure).

The envelope (apiVersion, kind, metadata) is checked here by hand, because its errors
must name the kinds Tollway knows; the spec is checked by the kind's typed model, whose
errors `errors.py` turns into findings at the right line. Lints that are warnings, not
errors, come from `lint.py`.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from pydantic import ValidationError

from tollway.config.errors import describe, did_you_mean, findings_from_validation
from tollway.config.findings import Finding, Severity
from tollway.config.kinds import (
    ALL_KINDS,
    NOT_MODELLED,
    KindSpec,
    group_of,
    lookup,
    named,
    of_group,
)
from tollway.config.lint import lint
from tollway.config.resource import DEFAULT_NAMESPACE, Resource, SourceRef
from tollway.config.source import Document, PathKey, format_path

_TOP_COMMON = ("apiVersion", "kind", "metadata", "status")
_META_FIELDS = (
    "name", "namespace", "labels", "annotations", "generateName", "uid",
    "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp",
    "deletionGracePeriodSeconds", "finalizers", "ownerReferences", "managedFields",
    "selfLink",
)
_DNS_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_RBAC_GROUP = "rbac.authorization.k8s.io"


def _name_problem(kspec: KindSpec, name: str) -> str | None:
    """Kubernetes' name rule for this kind, as its apiserver applies it: RBAC objects take
    any path segment (`system:metrics-server`), a Service a DNS-1035 label, a Namespace a
    DNS-1123 label, everything else (custom resources too) a DNS-1123 subdomain."""
    if kspec.group == _RBAC_GROUP:
        if name in (".", "..") or "/" in name or "%" in name:
            return (f"name '{name}' must not be '.' or '..' nor contain '/' or '%' "
                    "(a path segment name)")
        return None
    if kspec.group == "" and kspec.kind == "Service":
        if not _DNS_1035.fullmatch(name) or len(name) > 63:
            return (f"name '{name}' must be a DNS-1035 label: lowercase letters, digits and "
                    "'-', starting with a letter, at most 63 characters (no dots)")
        return None
    if kspec.group == "" and kspec.kind == "Namespace":
        if not _DNS_LABEL.fullmatch(name) or len(name) > 63:
            return (f"name '{name}' must be a DNS-1123 label: lowercase letters, digits and "
                    "'-', at most 63 characters (no dots)")
        return None
    if not _DNS_NAME.fullmatch(name) or len(name) > 253:
        return (f"name '{name}' must be lowercase letters, digits, '-' or '.', starting and "
                "ending with a letter or digit (a DNS-1123 name)")
    return None


def _closest(word: str, options: tuple[str, ...] | list[str]) -> str:
    return did_you_mean(word, list(options))


class _Ctx:
    """Accumulates findings for one document with its kind/name filled in."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.kind = ""
        self.name = ""
        self.findings: list[Finding] = []

    def add(self, path: PathKey, message: str, severity: Severity = Severity.ERROR) -> None:
        self.findings.append(
            Finding(self.doc.file, self.doc.line_of(path), self.kind, self.name,
                    format_path(path), message, severity, self.doc.index)
        )


def _envelope(ctx: _Ctx, data: dict[str, Any]) -> KindSpec | None:
    api = data.get("apiVersion")
    kind = data.get("kind")
    if isinstance(kind, str):
        ctx.kind = kind
    meta = data.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("name"), str):
        ctx.name = meta["name"]
    if not isinstance(api, str) or not api:
        ctx.add(("apiVersion",), "apiVersion is required (e.g. networking.istio.io/v1)")
        return None
    if not isinstance(kind, str) or not kind:
        ctx.add(("kind",), "kind is required (e.g. VirtualService)")
        return None
    spec = lookup(api, kind)
    if spec is None:
        same_group = of_group(api, kind)
        elsewhere = named(kind)
        why = NOT_MODELLED.get((group_of(api)[0], kind))
        if same_group is not None:
            served = ", ".join(same_group.api_versions)
            ctx.add(("apiVersion",), f"{kind} is served as {served}, not '{api}'")
        elif why is not None:  # before `elsewhere`: a Knative Service is no core Service
            ctx.add(("kind",), f"{kind} ({api}) is not a kind Tollway reads: {why}")
        elif elsewhere:
            served = " or ".join(", ".join(s.api_versions) for s in elsewhere)
            ctx.add(("apiVersion",), f"{kind} is served as {served}, not '{api}'")
        else:
            known = sorted({s.kind for s in ALL_KINDS})
            ctx.add(("kind",), f"unknown kind '{kind}' ({api}){_closest(kind, known)}"
                    " (docs/validating.md lists every kind Tollway reads)")
        return None
    return spec


def _metadata(ctx: _Ctx, data: dict[str, Any],
              kspec: KindSpec) -> tuple[str, dict[str, str], dict[str, str]]:
    meta = data.get("metadata")
    if not isinstance(meta, dict):
        ctx.add(("metadata",), "metadata with a name is required")
        return DEFAULT_NAMESPACE, {}, {}
    for key in meta:
        if key not in _META_FIELDS:
            ctx.add(("metadata", key), f"unknown field '{key}'{_closest(key, _META_FIELDS)}")
    name = meta.get("name")
    generate = meta.get("generateName")
    if (name is None or name == "") and isinstance(generate, str) and generate:
        # Kubernetes appends 5 random characters; a hash of the document keeps the name
        # the same on every load, so re-applying the folder changes nothing.
        name = generate + _content_suffix(data)
        ctx.name = name
        ctx.add(("metadata", "generateName"), f"no metadata.name: named '{name}' "
                "(generateName plus a hash of this document)", Severity.INFO)
    if not isinstance(name, str) or not name:
        ctx.add(("metadata", "name"), "metadata.name is required and must be a string")
    elif (problem := _name_problem(kspec, name)) is not None:
        ctx.add(("metadata", "name"), problem)
    ns = meta.get("namespace", DEFAULT_NAMESPACE)
    if not isinstance(ns, str) or not _DNS_LABEL.fullmatch(ns) or len(ns) > 63:
        ctx.add(("metadata", "namespace"), "namespace must be a DNS-1123 label (lowercase "
                "letters, digits and '-', at most 63)")
        ns = DEFAULT_NAMESPACE
    maps: list[dict[str, str]] = []
    for field in ("labels", "annotations"):
        value = meta.get(field) or {}
        if not isinstance(value, dict):
            ctx.add(("metadata", field), f"{field} must be a mapping of strings")
            value = {}
        for k, v in value.items():
            if not isinstance(v, str):
                ctx.add(("metadata", field, k),
                        f"{field[:-1]} values must be strings; quote it: \"{v}\"")
        maps.append({k: v for k, v in value.items() if isinstance(v, str)})
    return ns, maps[0], maps[1]


_GO_BOOLS = ("1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False")
DRY_RUN = "istio.io/dry-run"


def _dry_run(ctx: _Ctx, kspec: KindSpec, annotations: dict[str, str],
             spec: dict[str, Any]) -> None:
    """Istio's rule: only an ALLOW or DENY AuthorizationPolicy may carry `istio.io/dry-run`,
    with a boolean value; on any other Istio kind the whole resource is refused."""
    if DRY_RUN not in annotations or not kspec.group.endswith("istio.io"):
        return
    where = ("metadata", "annotations", DRY_RUN)
    if kspec.kind != "AuthorizationPolicy":
        ctx.add(where, f"{DRY_RUN} is only supported on AuthorizationPolicy; remove it")
    elif annotations[DRY_RUN] not in _GO_BOOLS:
        ctx.add(where, f"{DRY_RUN} must be \"true\" or \"false\", got '{annotations[DRY_RUN]}'")
    elif str(spec.get("action") or "ALLOW") not in ("ALLOW", "DENY"):
        ctx.add(where, f"{DRY_RUN} works only with action ALLOW or DENY")


def _content_suffix(data: dict[str, Any]) -> str:
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:5]


def _spec_of(
    ctx: _Ctx, data: dict[str, Any], kspec: KindSpec
) -> tuple[dict[str, Any] | None, PathKey]:
    allowed = (*_TOP_COMMON, *kspec.top_fields)
    for key in data:
        if key not in allowed:
            ctx.add((key,), f"unknown field '{key}'{_closest(key, allowed)}")
    if kspec.top_fields == ("spec",):
        spec = data.get("spec")
        if spec is None and not kspec.spec_required:
            spec = {}
        if spec is None:
            ctx.add(("spec",), f"{kspec.kind} needs a spec")
            return None, ("spec",)
        if not isinstance(spec, dict):
            ctx.add(("spec",), f"spec must be a mapping, got {describe(spec)}")
            return None, ("spec",)
        return spec, ("spec",)
    return {k: data[k] for k in kspec.top_fields if k in data}, ()


def validate_document(doc: Document) -> tuple[Resource | None, list[Finding]]:
    """Check one document; return its Resource (None if unusable) and its findings."""
    ctx = _Ctx(doc)
    data = doc.data
    if not isinstance(data, dict):
        ctx.add((), f"document is {describe(data)}, not a mapping; each document must be an object "
                "with apiVersion, kind, metadata and spec")
        return None, ctx.findings
    kspec = _envelope(ctx, data)
    if kspec is None:
        return None, ctx.findings
    namespace, labels, annotations = _metadata(ctx, data, kspec)
    spec, prefix = _spec_of(ctx, data, kspec)
    if spec is None:
        return None, ctx.findings
    model: Any = None
    try:
        model = kspec.model.model_validate(spec)
    except ValidationError as exc:
        for path, message in findings_from_validation(exc, kspec.model):
            ctx.add((*prefix, *path), message)
    except (RecursionError, ValueError, TypeError) as exc:  # pragma: no cover - defensive
        ctx.add(prefix, f"cannot validate: {exc}")
    resource = Resource(
        api_version=data["apiVersion"], kind=kspec.kind, name=ctx.name, namespace=namespace,
        spec=spec, raw=data, source=SourceRef(doc.file, doc.index, doc.line),
        labels=labels, annotations=annotations, model=model, lines=doc.lines,
    )
    if model is not None and not ctx.findings:
        for severity, path, message in lint(resource):
            ctx.add((*prefix, *path), message, severity)
    _dry_run(ctx, kspec, annotations, spec)
    if kspec.ignored is not None and not any(f.is_error for f in ctx.findings):
        # Accepted, not enforced: one warning, and kept out of the resource set so
        # nothing downstream mistakes it for a kind it acts on.
        ctx.add((), f"accepted; {kspec.ignored}", Severity.WARNING)
        return None, ctx.findings
    if any(f.is_error for f in ctx.findings) or not ctx.name:
        return None, ctx.findings
    return resource, ctx.findings
