"""Sidecar listeners: inbound (in front of the local app) and outbound (the app's calls) [pure].

Inbound: one listener per service port, whose route table sends everything to the local
app (`inbound|PORT||`), with Istio's inbound retry default (2 on reset-before-request).
Outbound: one listener, one route table with a virtual host per (service, port). Its
domains are the forms an app may write, each with `:PORT`: `NAME.NS.svc.DOMAIN`,
`NAME.NS.svc`, `NAME.NS`, and `NAME` when the service is in the proxy's own namespace
(as Kubernetes DNS search paths resolve it; `short_everywhere` also adds it for other
namespaces where it is unambiguous). The port-less forms go to the service's port 80 if
it has one, else its first port. The virtual host's routes are those of the oldest mesh
VirtualService for the host, else a default route to all its endpoints.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import NamedTuple

from tollway.control.registry import Service, as_list, as_map
from tollway.control.translate import names, routes, sidecar
from tollway.control.translate.match import Where
from tollway.control.world import World
from tollway.snapshot import types

VIRTUAL_INBOUND = "virtualInbound"  # a pod's captured inbound listener (Istio's name)
INBOUND_RETRY = types.Retry(attempts=2, retry_on=("reset-before-request",),
                            retriable_status_codes=())


class InboundPort(NamedTuple):
    service_port: int
    listen_address: str
    listen_port: int
    app_address: str
    app_port: int


def inbound_listener(p: InboundPort) -> types.Listener:
    return types.Listener(
        name=f"inbound|{p.listen_port}", kind="inbound", address=p.listen_address,
        port=p.listen_port, route_table=names.inbound_table(p.service_port),
        app_address=p.app_address, app_port=p.app_port, service_port=p.service_port,
    )


def inbound_table(p: InboundPort) -> types.RouteTable:
    route = types.Route(
        name="default",
        clusters=(types.WeightedCluster(cluster=names.inbound_cluster(p.service_port),
                                        weight=100, port=p.app_port),),
        retries=INBOUND_RETRY,
    )
    vhost = types.VirtualHost(name=names.inbound_table(p.service_port), domains=("*",),
                              routes=(route,))
    return types.RouteTable(name=names.inbound_table(p.service_port), virtual_hosts=(vhost,))


def _short_ok(world: World, node: types.Node, short_everywhere: bool) -> set[str]:
    """Hosts whose bare NAME the node may use."""
    kube = [s for s in world.services.values() if s.origin != "ServiceEntry"]
    counts = Counter(s.name for s in kube)
    return {s.host for s in kube
            if s.namespace == node.namespace or (short_everywhere and counts[s.name] == 1)}


def host_forms(svc: Service, short: bool) -> list[str]:
    if svc.origin == "ServiceEntry":
        return [svc.host]
    forms = [svc.host, f"{svc.name}.{svc.namespace}.svc", f"{svc.name}.{svc.namespace}"]
    return [*forms, svc.name] if short else forms


def default_port(svc: Service) -> int | None:
    if not svc.ports:
        return None
    return 80 if svc.port(80) else svc.ports[0].number


def _domains(svc: Service, port: int, forms: list[str]) -> list[str]:
    """What an app may write as Host for this service port: each name form with `:PORT`,
    the bare forms on the default port, and the ClusterIPs likewise (a captured request
    to VIP:port routes as the service)."""
    forms = [*forms, *svc.addresses]
    return [f"{f}:{port}" for f in forms] + (forms if port == default_port(svc) else [])


def _vhost(world: World, node: types.Node, svc: Service, port: int,
           forms: list[str]) -> types.VirtualHost:
    domains = _domains(svc, port, forms)
    vs = world.virtual_service_for(svc.host, node.namespace)
    found = routes.vs_routes(world, vs, Where(node, port)) if vs else []
    return types.VirtualHost(name=f"{svc.host}:{port}", domains=tuple(domains),
                             routes=tuple(found) or (routes.default_route(svc.host, port),))


def _vs_only_hosts(world: World, node: types.Node) -> Iterable[types.VirtualHost]:
    """Mesh VirtualService hosts that no service or entry provides (routes still apply)."""
    for host in sorted(world.mesh_virtual_services):
        vs = world.virtual_service_for(host, node.namespace)
        if host in world.services or vs is None:
            continue
        found = routes.vs_routes(world, vs, Where(node, None))
        if found:
            yield types.VirtualHost(name=host, domains=(host, f"{host}:80"), routes=tuple(found))


def _uses_source_labels(world: World) -> bool:
    key = ("uses_source_labels",)
    if key not in world.memo:
        world.memo[key] = any(
            "sourceLabels" in b or "sourceNamespace" in b
            for vs in world.virtual_services for r in as_list(vs.spec.get("http"))
            for b in (as_map(x) for x in as_list(as_map(r).get("match"))))
    return bool(world.memo[key])


def outbound_table(world: World, node: types.Node,
                   short_everywhere: bool = False) -> types.RouteTable:
    """The outbound route table, shared by every proxy it would be identical for."""
    scope = sidecar.scope_for(world, node)
    labels = tuple(sorted(node.labels.items())) if _uses_source_labels(world) else None
    key = ("outbound", node.namespace, labels, short_everywhere, scope)
    if key not in world.memo:
        world.memo[key] = _outbound_table(world, node, short_everywhere, scope)
    table: types.RouteTable = world.memo[key]
    return table


def _outbound_table(world: World, node: types.Node, short_everywhere: bool,
                    scope: sidecar.Scope = sidecar.Scope()) -> types.RouteTable:
    """Every visible service's virtual hosts; a Sidecar's egress scope narrows them
    (see translate/sidecar.py for what happens to the hosts outside it)."""
    short = _short_ok(world, node, short_everywhere)
    vhosts: list[types.VirtualHost] = []
    for host in sorted(world.services):
        svc = world.services[host]
        if not svc.visible_in(node.namespace):
            continue
        forms = host_forms(svc, host in short)
        for sp in svc.ports:
            if scope.allows(svc.namespace, svc.host, sp.number):
                vhosts.append(_vhost(world, node, svc, sp.number, forms))
            elif scope.mode == "ALLOW_ANY" and svc.origin != "ServiceEntry":
                vhosts.append(_passthrough(svc, sp.number, forms))
    vhosts += [v for v in _vs_only_hosts(world, node) if scope.everything
               or any(scope.allows(vs.namespace, v.name, None)
                      for vs in world.mesh_virtual_services.get(v.name, ()))]
    if scope.mode == "REGISTRY_ONLY" and not scope.everything:
        vhosts.append(sidecar.BLOCK_ALL_HOST)
    return types.RouteTable(name=names.OUTBOUND_TABLE, virtual_hosts=unique_domains(vhosts))


def _passthrough(svc: Service, port: int, forms: list[str]) -> types.VirtualHost:
    domains = _domains(svc, port, forms)
    return types.VirtualHost(name=f"{sidecar.PASSTHROUGH}|{svc.host}:{port}",
                             domains=tuple(domains),
                             routes=(sidecar.passthrough_route(svc.host, port),))


def unique_domains(vhosts: Iterable[types.VirtualHost]) -> tuple[types.VirtualHost, ...]:
    """A domain belongs to the first virtual host that claims it (deterministic order)."""
    seen: set[str] = set()
    out = []
    for v in vhosts:
        domains = tuple(d for d in dict.fromkeys(v.domains) if d not in seen)
        seen.update(domains)
        if domains:
            out.append(types.VirtualHost(name=v.name, domains=domains, routes=v.routes))
    return tuple(out)


def outbound_listener(address: str, port: int) -> types.Listener:
    return types.Listener(name="outbound", kind="outbound", address=address, port=port,
                          route_table=names.OUTBOUND_TABLE)
