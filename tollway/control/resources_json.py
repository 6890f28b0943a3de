"""Resources as the API shows them: Kubernetes-shaped objects with metadata and status.

Kind names are matched as kubectl does: case-insensitive, singular or plural, or a short
name (`vs`, `dr`, `deploy`, `svc`, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tollway.config.resource import Resource
from tollway.control.store import ConfigStore, Key

SHORT_NAMES = {
    "vs": "virtualservice",
    "dr": "destinationrule",
    "gw": "gateway",
    "se": "serviceentry",
    "we": "workloadentry",
    "pa": "peerauthentication",
    "ap": "authorizationpolicy",
    "deploy": "deployment",
    "svc": "service",
    "ro": "rollout",
    "ns": "namespace",
    "sa": "serviceaccount",
    "canaries": "canary",
}


SECRET_FIELDS = ("data", "stringData")


def redacted(value: object) -> str:
    """What GET shows of a Secret's value: its size, never its bytes (private keys)."""
    return f"<redacted: {len(str(value))} characters>"


def kind_matches(query: str, kind: str) -> bool:
    q = query.lower()
    q = SHORT_NAMES.get(q, q)
    k = kind.lower()
    return q in (k, k + "s", k + "es") or (k.endswith("y") and q == k[:-1] + "ies")


def to_object(store: ConfigStore, r: Resource, conflict: str = "") -> dict[str, Any]:
    """The resource as GET shows it; `metadata.source` says where it came from ("folder",
    "api", or the controller that made it) and `metadata.conflict` what it shadows."""
    meta = store.meta(r.key)
    metadata: dict[str, Any] = {"name": r.name, "namespace": r.namespace}
    if r.labels:
        metadata["labels"] = dict(r.labels)
    if r.annotations:
        metadata["annotations"] = dict(r.annotations)
    if meta is not None:
        metadata["resourceVersion"] = str(meta.resource_version)
        metadata["generation"] = meta.generation
        metadata["managedBy"] = meta.manager
        metadata["source"] = meta.source or meta.manager
    if conflict:
        metadata["conflict"] = conflict
    obj: dict[str, Any] = {"apiVersion": r.api_version, "kind": r.kind, "metadata": metadata}
    for key, value in r.raw.items():
        if key not in ("apiVersion", "kind", "metadata", "status"):
            obj[key] = value
    if r.kind == "Secret":
        for key in SECRET_FIELDS:
            if isinstance(obj.get(key), dict):
                obj[key] = {k: redacted(v) for k, v in obj[key].items()}
    status = store.status(r.key)
    if status:
        obj["status"] = status
    return obj


def select(
    store: ConfigStore, kind: str | None, name: str | None, namespace: str | None,
    conflicts: Mapping[Key, str] | None = None,
) -> list[dict[str, Any]]:
    out = []
    for r in sorted(store.current(), key=lambda r: (r.kind, r.namespace, r.name)):
        if kind and not kind_matches(kind, r.kind):
            continue
        if name and r.name != name:
            continue
        if namespace and r.namespace != namespace:
            continue
        out.append(to_object(store, r, (conflicts or {}).get(r.key, "")))
    return out
