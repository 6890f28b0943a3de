"""Build `Resource`s and the authorization table's policies without the YAML loader."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tollway.config.resource import Resource, ResourceSet, SourceRef
from tollway.proxy import tls

Issue = Callable[..., tls.Credentials]


def resource(kind: str, name: str, namespace: str, spec: dict[str, Any], *,
             annotations: dict[str, str] | None = None, order: int = 0,
             created: str = "") -> Resource:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if created:
        meta["creationTimestamp"] = created
    api = "security.istio.io/v1"
    raw = {"apiVersion": api, "kind": kind, "metadata": meta, "spec": spec}
    return Resource(api, kind, name, namespace, spec, raw, SourceRef("t.yaml", order, 1),
                    annotations=annotations or {})


class FakeWorld:
    """Stands in for control.world.World: only `.resources` is read."""

    def __init__(self, *resources: Resource) -> None:
        self.resources = ResourceSet(resources)


def ap(name: str, spec: dict[str, Any], namespace: str = "payments", **kw: Any) -> Resource:
    return resource("AuthorizationPolicy", name, namespace, spec, **kw)


def pa(name: str, spec: dict[str, Any], namespace: str = "payments", **kw: Any) -> Resource:
    return resource("PeerAuthentication", name, namespace, spec, **kw)
