"""VirtualService http routes -> ordered snapshot Routes [pure].

First match wins, so order is kept exactly. Destinations become Istio cluster names
`outbound|PORT|SUBSET|FQDN`, short hosts resolved in the VirtualService's namespace. The
port is the destination's `port.number`, else the listener's port when the service has
it, else the service's first port. Weights: a single destination takes 100%; among
several, weight 0 (or none) drops the destination. Delegates (one level) are inlined
with their match blocks narrowed by the root's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tollway.config.resource import Resource
from tollway.control.registry import as_int, as_list, as_map
from tollway.control.translate import actions, names
from tollway.control.translate.match import (
    Where,
    block_applies,
    is_catch_all,
    merge_blocks,
    route_match,
)
from tollway.control.world import World
from tollway.snapshot import types

MAX_DELEGATE_DEPTH = 1


def destination_port(world: World, host: str, port: Any, where: Where) -> int:
    given = as_int(as_map(port).get("number"))
    if given is not None:
        return given
    svc = world.services.get(host)
    if svc is None or not svc.ports:
        return where.port or 80
    if where.port is not None and svc.port(where.port) is not None:
        return where.port
    return svc.ports[0].number


def cluster_of(world: World, dest: Any, namespace: str, where: Where) -> tuple[str, str, str, int]:
    """(cluster name, FQDN, subset, port) for an Istio Destination."""
    d = as_map(dest)
    host = world.resolve(str(d.get("host") or ""), namespace)
    subset = str(d.get("subset") or "")
    port = destination_port(world, host, d.get("port"), where)
    return names.outbound_cluster(port, subset, host), host, subset, port


def weighted(world: World, route: Mapping[str, Any], namespace: str,
             where: Where) -> tuple[types.WeightedCluster, ...]:
    items = [as_map(r) for r in as_list(route.get("route"))]
    out = []
    for item in items:
        weight = as_int(item.get("weight"), 0) or 0
        if len(items) == 1:
            weight = 100
        elif weight <= 0:
            continue
        cluster, host, subset, port = cluster_of(world, item.get("destination"), namespace, where)
        req, resp, authority = actions.request_response(item.get("headers"))
        if authority is not None:  # a destination's Host: the proxy reads it from `set`
            base = req or types.HeaderOps()
            req = types.HeaderOps(set={**base.set, "host": authority}, add=base.add,
                                  remove=base.remove)
        out.append(types.WeightedCluster(cluster=cluster, weight=weight, host=host,
                                         subset=subset, port=port, request_headers=req,
                                         response_headers=resp))
    return tuple(out)


def mirrors(world: World, route: Mapping[str, Any], namespace: str,
            where: Where) -> tuple[types.Mirror, ...]:
    specs: list[tuple[Any, float]] = []
    if isinstance(route.get("mirror"), Mapping):
        legacy = route.get("mirrorPercent")
        pct = actions.percentage({"percentage": route.get("mirrorPercentage"),
                                  "percent": legacy}, default=100.0)
        specs.append((route["mirror"], pct))
    for m in as_list(route.get("mirrors")):
        specs.append((as_map(m).get("destination"), actions.percentage(as_map(m), default=100.0)))
    out = []
    for dest, pct in specs:
        if pct <= 0:
            continue
        cluster, host, _, _ = cluster_of(world, dest, namespace, where)
        out.append(types.Mirror(cluster=cluster, host=host, percent=pct))
    return tuple(out)


def http_route(world: World, vs: Resource, route: Mapping[str, Any],
               matches: tuple[types.RouteMatch, ...], where: Where) -> types.Route:
    ns = vs.namespace
    req, resp, authority = actions.request_response(route.get("headers"))
    return types.Route(
        name=str(route.get("name") or ""),
        matches=matches,
        clusters=weighted(world, route, ns, where),
        redirect=actions.redirect(route),
        direct_response=actions.direct_response(route),
        rewrite=actions.rewrite(route, authority),
        timeout=actions.timeout(route),
        retries=actions.retries(route),
        fault=actions.fault(route),
        mirrors=mirrors(world, route, ns, where),
        request_headers=req,
        response_headers=resp,
        cors=actions.cors(route),
        virtual_service=f"{ns}/{vs.name}",
    )


def _applicable(blocks: list[Mapping[str, Any]], ns: str,
                where: Where) -> list[Mapping[str, Any]] | None:
    """The blocks that exist for this proxy; None when the rule does not apply at all."""
    if not blocks:
        return []
    kept = [b for b in blocks if block_applies(b, ns, where)]
    return kept or None


def _delegate(world: World, route: Mapping[str, Any], vs: Resource) -> Resource | None:
    ref = as_map(route.get("delegate"))
    if not ref.get("name"):
        return None
    return world.resources.get("VirtualService", str(ref.get("namespace") or vs.namespace),
                               str(ref["name"]))


def vs_routes(world: World, vs: Resource, where: Where, depth: int = 0,
              outer: list[Mapping[str, Any]] | None = None) -> list[types.Route]:
    """Every http rule of `vs` that applies here, in order."""
    out: list[types.Route] = []
    for raw in as_list(vs.spec.get("http")):
        route = as_map(raw)
        blocks = [as_map(b) for b in as_list(route.get("match"))]
        if outer:
            blocks = ([merge_blocks(o, b) for o in outer for b in blocks] if blocks
                      else list(outer))
        kept = _applicable(blocks, vs.namespace, where)
        if kept is None:
            continue
        child = _delegate(world, route, vs)
        if child is not None:
            if depth < MAX_DELEGATE_DEPTH:
                out += vs_routes(world, child, where, depth + 1, kept or outer)
            continue
        matches = tuple(route_match(b) for b in kept)
        out.append(http_route(world, vs, route, matches, where))
        if not kept or any(is_catch_all(b) for b in kept):
            break  # later rules are unreachable; istiod does not emit them either
    return out


def default_route(host: str, port: int) -> types.Route:
    """A host with endpoints but no VirtualService: everything to all its endpoints."""
    return types.Route(
        name="default",
        clusters=(types.WeightedCluster(cluster=names.outbound_cluster(port, "", host),
                                        weight=100, host=host, port=port),),
    )


def https_redirect_route() -> types.Route:
    """Gateway `tls.httpsRedirect`: every request answered 301 to https."""
    return types.Route(name="https-redirect", redirect=types.Redirect(scheme="https"),
                       retries=None)
