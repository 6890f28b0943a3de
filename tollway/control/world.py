"""World: one immutable view of resources, registry and the indexes translation reads [pure].

Built once per change of resources or replicas; every proxy's snapshot is then computed
from the same World, so they all agree. Indexes hold resources in Istio's precedence
order (oldest first: creationTimestamp when given, else the order they were read).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tollway.config.resource import CLUSTER_DOMAIN, Resource, ResourceSet
from tollway.control import registry
from tollway.control.registry import Replica, Service, as_list, as_map
from tollway.snapshot import types

MESH = "mesh"
ROOT_NAMESPACE = "istio-system"


def age_key(r: Resource) -> tuple[str, str, int]:
    """Oldest first: creationTimestamp when given, else file and document order."""
    meta = as_map(as_map(r.raw).get("metadata"))
    return (str(meta.get("creationTimestamp") or "~"), r.source.file, r.source.doc)


def oldest_first(items: Iterable[Resource]) -> tuple[Resource, ...]:
    return tuple(sorted(items, key=age_key))


def resolve_host(host: str, namespace: str, known: Mapping[str, Any],
                 domain: str = CLUSTER_DOMAIN, namespaces: Collection[str] = ()) -> str:
    """A host as a resource names it -> the FQDN it means (Istio: relative to that resource).

    `reviews` -> `reviews.NS.svc.DOMAIN`; `reviews.foo.svc` expands; `reviews.foo` expands
    when that service is known or `foo` is a namespace of the mesh; anything else
    (ServiceEntry hosts, wildcards) stays as written.
    """
    h = str(host).strip().lower().rstrip(".")
    if "*" in h or h in known:
        return h
    if "." not in h:
        return registry.fqdn(h, namespace, domain)
    parts = h.split(".")
    if len(parts) == 2 and (f"{h}.svc.{domain}" in known or parts[1] in namespaces):
        return f"{h}.svc.{domain}"
    if len(parts) == 3 and parts[2] == "svc":
        return f"{h}.{domain}"
    return h


def namespaces_of(resources: ResourceSet, replicas: Sequence[Replica]) -> frozenset[str]:
    """Every namespace the mesh knows: Namespace objects and where anything lives."""
    found = {r.namespace for r in resources} | {r.name for r in resources.of_kind("Namespace")}
    return frozenset(found | {r.namespace for r in replicas})


def host_matches(pattern: str, host: str) -> bool:
    """Istio host matching: equal, or `*.example.com` covering `api.example.com`; `*` all."""
    if pattern == "*" or pattern == host:
        return True
    if pattern.startswith("*"):
        suffix = pattern[1:]
        if host.startswith("*"):
            return host[1:].endswith(suffix)
        return host.endswith(suffix)
    return False


def vs_gateways(vs: Resource) -> tuple[str, ...]:
    """The VS's gateways as `ns/name` (or `mesh`); none given means mesh only."""
    names = [str(g) for g in as_list(vs.spec.get("gateways"))]
    return tuple(qualify_gateway(g, vs.namespace) for g in names) or (MESH,)


def visible(r: Resource, namespace: str) -> bool:
    """Istio exportTo: `*` (default) everywhere, `.` its own namespace, `~` nowhere, or names."""
    export = [str(x) for x in as_list(r.spec.get("exportTo"))]
    if not export or "*" in export:
        return True
    return namespace in export or ("." in export and namespace == r.namespace)


def qualify_gateway(name: str, namespace: str) -> str:
    if name == MESH or "/" in name:
        return name
    return f"{namespace}/{name}"


@dataclass(frozen=True)
class World:
    """Resources + registry + indexes; never mutated (build a new one on change)."""

    resources: ResourceSet
    endpoints: Mapping[str, tuple[types.Endpoint, ...]]
    services: Mapping[str, Service]
    mesh_virtual_services: Mapping[str, tuple[Resource, ...]]
    destination_rules: Mapping[str, tuple[Resource, ...]]
    gateways: tuple[Resource, ...]
    virtual_services: tuple[Resource, ...]
    replicas: tuple[Replica, ...] = ()
    cluster_domain: str = CLUSTER_DOMAIN
    namespaces: frozenset[str] = frozenset()
    # Per-World memo of what many proxies share (filled by translate; never changes results:
    # a World is immutable, so anything computed from it stays true for its lifetime).
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(cls, resources: ResourceSet, replicas: Sequence[Replica] = (),
              domain: str = CLUSTER_DOMAIN) -> World:
        reg = registry.build_registry(resources, replicas, domain)
        spaces = namespaces_of(resources, replicas)
        vss = oldest_first(resources.of_kind("VirtualService"))
        mesh: dict[str, list[Resource]] = {}
        for vs in vss:
            if MESH not in vs_gateways(vs):
                continue
            for h in as_list(vs.spec.get("hosts")):
                mesh.setdefault(resolve_host(h, vs.namespace, reg.services, domain, spaces),
                                []).append(vs)
        drs: dict[str, list[Resource]] = {}
        for dr in oldest_first(resources.of_kind("DestinationRule")):
            host = resolve_host(str(dr.spec.get("host") or ""), dr.namespace, reg.services,
                                domain, spaces)
            drs.setdefault(host, []).append(dr)
        return cls(
            resources=resources, endpoints=reg.endpoints, services=reg.services,
            mesh_virtual_services={k: tuple(v) for k, v in mesh.items()},
            destination_rules={k: tuple(v) for k, v in drs.items()},
            gateways=oldest_first(resources.of_kind("Gateway")),
            virtual_services=vss, replicas=tuple(replicas), cluster_domain=domain,
            namespaces=spaces,
        )

    def virtual_service_for(self, host: str, namespace: str) -> Resource | None:
        """The mesh VirtualService a proxy in `namespace` uses for `host` (oldest visible)."""
        return next((vs for vs in self.mesh_virtual_services.get(host, ())
                     if visible(vs, namespace)), None)

    def resolve(self, host: str, namespace: str) -> str:
        return resolve_host(host, namespace, self.services, self.cluster_domain,
                            self.namespaces)

    def endpoints_of(self, host: str, port: int) -> tuple[types.Endpoint, ...]:
        return self.endpoints.get(registry.endpoint_key(host, port), ())

    def destination_rules_for(self, host: str, namespace: str | None = None
                              ) -> tuple[Resource, ...]:
        """The DestinationRules in force for `host` as seen from `namespace`.

        Exact host first, else the most specific wildcard covering it (no merging across).
        Among those visible (exportTo), Istio prefers the client's namespace, then the
        service's, then the root namespace; DRs of the chosen namespace merge.
        """
        found = self.destination_rules.get(host, ())
        if not found:
            best = max((p for p in self.destination_rules
                        if "*" in p and host_matches(p, host)), key=len, default="")
            found = self.destination_rules.get(best, ())
        if namespace is None:
            return found
        found = tuple(dr for dr in found if visible(dr, namespace))
        svc = self.services.get(host)
        for ns in (namespace, svc.namespace if svc else None, ROOT_NAMESPACE):
            chosen = tuple(dr for dr in found if dr.namespace == ns)
            if chosen:
                return chosen
        return tuple(dr for dr in found if dr.namespace == found[0].namespace) if found else ()

    def secret(self, namespace: str, name: str) -> Resource | None:
        return self.resources.get("Secret", namespace, name)

    def services_of(self, node: types.Node) -> tuple[Service, ...]:
        """The services whose endpoints include this node's workload (for inbound telemetry)."""
        key = ("services_of",)
        if key not in self.memo:
            self.memo[key] = self._workload_services()
        index: dict[tuple[str, str], tuple[Service, ...]] = self.memo[key]
        return index.get((node.namespace, node.workload), ())

    def _workload_services(self) -> dict[tuple[str, str], tuple[Service, ...]]:
        found: dict[tuple[str, str], set[str]] = {}
        for svc in self.services.values():
            if svc.origin == "ServiceEntry":
                continue
            for sp in svc.ports:
                for e in self.endpoints_of(svc.host, sp.number):
                    if e.namespace == svc.namespace:
                        found.setdefault((e.namespace, e.workload), set()).add(svc.host)
        return {k: tuple(self.services[h] for h in sorted(v)) for k, v in found.items()}
