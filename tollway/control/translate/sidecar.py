"""Istio's Sidecar resource: which services one workload's sidecar knows [pure].

Which Sidecar applies (Istio's order): the oldest one in the workload's namespace whose
`workloadSelector` matches its labels, else the oldest one there without a selector,
else the oldest one without a selector in the root namespace; none means "everything".

`egress[].hosts` entries are `namespace/host`: the namespace is a name, `.` (the
Sidecar's own namespace), `*` (any) or `~` (none), the host an FQDN, `*` or a
`*.suffix` wildcard. A listener with a `port` admits its hosts on that port only.

A service outside the scope gets no routes of its own, as Istio pushes no config for it.
Then `outboundTrafficPolicy.mode` decides, as Istio's catch-all does:
- ALLOW_ANY (the mesh default): the request passes through, as Istio's
  PassthroughCluster would take it to the Service's address: to the service's endpoints,
  with none of its VirtualService or DestinationRule settings and no mTLS (a STRICT
  destination refuses it, as in Istio);
- REGISTRY_ONLY: every host outside the scope, in the mesh or not, gets 502 (Istio's
  `block_all` virtual host).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from tollway.config.resource import Resource
from tollway.control.registry import as_list, as_map, selects
from tollway.control.translate import names
from tollway.control.world import ROOT_NAMESPACE, World, host_matches, oldest_first
from tollway.snapshot import types

Mode = Literal["ALLOW_ANY", "REGISTRY_ONLY"]
PASSTHROUGH = "PassthroughCluster"
BLOCK_ALL = "block_all"


@dataclass(frozen=True)
class Scope:
    """The egress hosts of the Sidecar that applies, resolved for one namespace."""

    sidecar: str = ""  # "namespace/name", "" when none applies
    hosts: tuple[tuple[int | None, str, str], ...] = ()  # (port, namespace, host pattern)
    mode: Mode = "ALLOW_ANY"

    @property
    def everything(self) -> bool:
        return not self.hosts

    def allows(self, namespace: str, host: str, port: int | None) -> bool:
        if self.everything:
            return True
        for want_port, ns, pattern in self.hosts:
            if want_port is not None and port is not None and want_port != port:
                continue
            if ns not in ("*", namespace):
                continue
            if host_matches(pattern, host):
                return True
        return False


def _selector(r: Resource) -> Mapping[str, str] | None:
    sel = r.spec.get("workloadSelector")
    if not isinstance(sel, Mapping):
        return None
    return {str(k): str(v) for k, v in as_map(sel.get("labels")).items()}


def sidecar_for(world: World, node: types.Node) -> Resource | None:
    """The one Sidecar that applies to `node`, by Istio's precedence."""
    all_ = world.resources.of_kind("Sidecar")
    if not all_:
        return None
    mine = oldest_first(r for r in all_ if r.namespace == node.namespace)
    for r in mine:
        sel = _selector(r)
        if sel and selects(sel, node.labels):
            return r
    for r in mine:
        if _selector(r) is None:
            return r
    return next((r for r in oldest_first(all_) if r.namespace == ROOT_NAMESPACE
                 and _selector(r) is None), None)


def _egress(r: Resource, own_namespace: str) -> tuple[tuple[int | None, str, str], ...]:
    out: list[tuple[int | None, str, str]] = []
    for listener in as_list(r.spec.get("egress")):
        port = as_map(as_map(listener).get("port")).get("number")
        for entry in as_list(as_map(listener).get("hosts")):
            ns, _, host = str(entry).partition("/")
            if ns == "~":
                continue  # `~/*`: no services from any namespace
            ns = own_namespace if ns == "." else ns
            out.append((int(port) if isinstance(port, int) and port else None, ns,
                        host.lower()))
    return tuple(out)


def scope_for(world: World, node: types.Node) -> Scope:
    r = sidecar_for(world, node)
    if r is None:
        return Scope()
    mode = str(as_map(r.spec.get("outboundTrafficPolicy")).get("mode") or "ALLOW_ANY")
    hosts = _egress(r, node.namespace)
    if not as_list(r.spec.get("egress")):
        hosts = ()  # no egress section: Istio's default scope (everything)
    elif not hosts:
        hosts = ((None, "~", "~"),)  # only `~/*`: nothing is in scope
    return Scope(f"{r.namespace}/{r.name}", hosts,
                 "REGISTRY_ONLY" if mode == "REGISTRY_ONLY" else "ALLOW_ANY")


def passthrough_cluster_name(host: str, port: int) -> str:
    return f"{PASSTHROUGH}|{port}||{host}"


def passthrough_route(host: str, port: int) -> types.Route:
    return types.Route(name="allow_any", retries=None, clusters=(types.WeightedCluster(
        cluster=passthrough_cluster_name(host, port), weight=100, host=host, port=port),))


BLOCK_ALL_HOST = types.VirtualHost(
    name=BLOCK_ALL, domains=("*",),
    routes=(types.Route(name=BLOCK_ALL, direct_response=types.DirectResponse(status=502),
                        retries=None),))


def passthrough_clusters(world: World, cluster_names: Sequence[str]) -> tuple[types.Cluster, ...]:
    """Plain clusters to the endpoints of out-of-scope services (ALLOW_ANY)."""
    out = []
    for name in sorted(set(cluster_names)):
        ref = names.parse_cluster(name)
        if ref is None or ref.direction != PASSTHROUGH:
            continue
        host = ref.host
        svc = world.services.get(host)
        out.append(types.Cluster(
            name=name, service=host, port=ref.port,
            endpoints=tuple(e for e in world.endpoints_of(host, ref.port) if e.healthy),
            load_balancer=types.LoadBalancer(simple="ROUND_ROBIN"),
            service_name=svc.name if svc else host.split(".")[0],
            service_namespace=svc.namespace if svc else ""))
    return tuple(out)
