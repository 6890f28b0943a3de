"""Istio HTTPMatchRequest -> snapshot RouteMatch [pure].

Config-time conditions are decided here, not on the hot path: `port`, `sourceLabels`,
`sourceNamespace` and a block's own `gateways` decide whether the block exists at all for
this proxy and listener (`block_applies`). Runtime conditions become plain specs the proxy
compiles once (RE2 for regex).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from tollway.control.registry import as_int, as_list, as_map, selects, str_labels
from tollway.control.world import MESH, qualify_gateway
from tollway.snapshot import types

KINDS = ("exact", "prefix", "regex")


@dataclass(frozen=True, slots=True)
class Where:
    """Where a route table is being built: which proxy, which listener port, which gateway."""

    node: types.Node
    port: int | None  # service port (sidecar) or server port number (gateway)
    gateway: str = MESH  # "ns/name" of the Gateway, or "mesh" for sidecars


def string_match(value: Any) -> types.StringMatch | None:
    m = as_map(value)
    for kind in KINDS:
        if kind in m and isinstance(m[kind], str):
            return types.StringMatch(kind=cast(types.MatchKind, kind), value=m[kind])
    return None


def _header(name: str, value: Any, invert: bool) -> types.HeaderMatch:
    m = as_map(value)
    presence = not m or m.get("regex") == "*"
    return types.HeaderMatch(name=name.lower(), match=None if presence else string_match(m),
                             invert=invert)


def _headers(block: Mapping[str, Any]) -> tuple[types.HeaderMatch, ...]:
    out = [_header(str(k), v, False) for k, v in as_map(block.get("headers")).items()]
    out += [_header(str(k), v, True) for k, v in as_map(block.get("withoutHeaders")).items()]
    return tuple(out)


def _query(block: Mapping[str, Any]) -> tuple[types.QueryMatch, ...]:
    out = []
    for k, v in as_map(block.get("queryParams")).items():
        m = as_map(v)
        out.append(types.QueryMatch(name=str(k), match=string_match(m) if m else None))
    return tuple(out)


def block_applies(block: Mapping[str, Any], vs_namespace: str, where: Where) -> bool:
    """Config-time conditions of one match block for this proxy and listener."""
    port = as_int(block.get("port"))
    if port is not None and where.port is not None and port != where.port:
        return False
    gateways = [qualify_gateway(str(g), vs_namespace) for g in as_list(block.get("gateways"))]
    if gateways and where.gateway not in gateways:
        return False
    if where.gateway == MESH:
        source = str_labels(block.get("sourceLabels"))
        if source and not selects(source, where.node.labels):
            return False
        ns = block.get("sourceNamespace")
        if ns and ns != where.node.namespace:
            return False
    return True


CONFIG_TIME = frozenset({"name", "ignoreUriCase", "port", "gateways", "sourceLabels",
                         "sourceNamespace", "uri"})
MATCH_ALL_URIS = ({"prefix": "/"}, {"regex": ".*"})


def is_catch_all(block: Mapping[str, Any]) -> bool:
    """A block that matches every request on this listener (istiod stops after it)."""
    if not set(block) <= CONFIG_TIME:
        return False
    uri = block.get("uri")
    return uri is None or dict(as_map(uri)) in MATCH_ALL_URIS


def route_match(block: Mapping[str, Any]) -> types.RouteMatch:
    return types.RouteMatch(
        name=str(block.get("name") or ""),
        uri=string_match(block.get("uri")),
        scheme=string_match(block.get("scheme")),
        method=string_match(block.get("method")),
        authority=string_match(block.get("authority")),
        headers=_headers(block),
        query_params=_query(block),
        ignore_uri_case=bool(block.get("ignoreUriCase", False)),
        port=as_int(block.get("port")),
        source_labels=str_labels(block.get("sourceLabels")),
        source_namespace=block.get("sourceNamespace") or None,
        gateways=tuple(str(g) for g in as_list(block.get("gateways"))),
    )


def merge_blocks(root: Mapping[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    """A delegate's match block inside its root's: the child's conditions narrow the root's."""
    merged = dict(root)
    for key, value in child.items():
        if key in ("headers", "withoutHeaders", "queryParams", "sourceLabels"):
            merged[key] = {**as_map(root.get(key)), **as_map(value)}
        else:
            merged[key] = value
    return merged
