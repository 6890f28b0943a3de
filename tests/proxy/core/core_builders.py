"""Builders for compact snapshot fixtures in the proxy core tests."""

from __future__ import annotations

from tollway.snapshot import types


def sm(kind: str, value: str) -> types.StringMatch:
    return types.StringMatch(kind=kind, value=value)  # type: ignore[arg-type]


def route(name: str, *matches: types.RouteMatch, **kw: object) -> types.Route:
    clusters = kw.pop("clusters", (types.WeightedCluster(cluster=f"c-{name}"),))
    return types.Route(name=name, matches=matches, clusters=clusters, **kw)  # type: ignore[arg-type]


def table(*routes: types.Route, domains: tuple[str, ...] = ("*",)) -> types.RouteTable:
    return types.RouteTable(
        name="t", virtual_hosts=(types.VirtualHost(name="vh", domains=domains, routes=routes),)
    )
