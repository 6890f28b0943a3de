"""DestinationRule trafficPolicy -> the effective policy for one (port, subset), Istio's way [pure].

Istio's MergeTrafficPolicy: start from the top-level policy; a top-level
`portLevelSettings` entry for the port replaces all four blocks (loadBalancer,
connectionPool, outlierDetection, tls) — blocks it omits fall back to defaults, not to the
top level. Then the subset's policy replaces whole blocks it gives (no field merging
inside a block), and the subset's own portLevelSettings for the port replace all four.
Several DRs for one host: subsets concatenate (first name wins), the first DR's top-level
policy wins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from tollway.config.resource import Resource
from tollway.control.registry import as_int, as_list, as_map
from tollway.control.translate.actions import seconds
from tollway.snapshot import types

BLOCKS = ("loadBalancer", "connectionPool", "outlierDetection", "tls")
UNLIMITED = 4294967295
Policy = Mapping[str, Any]


def _port_level(policy: Policy, port: int) -> Policy | None:
    for p in as_list(policy.get("portLevelSettings")):
        if as_int(as_map(as_map(p).get("port")).get("number")) == port:
            return as_map(p)
    return None


def merge(top: Policy, subset: Policy | None, port: int) -> dict[str, Any]:
    """The four blocks in force for this port and subset (absent block: None)."""
    merged: dict[str, Any] = {b: top.get(b) for b in BLOCKS}
    pl = _port_level(top, port)
    if pl is not None:
        merged = {b: pl.get(b) for b in BLOCKS}
    if subset:
        for b in BLOCKS:
            if subset.get(b) is not None:
                merged[b] = subset[b]
        spl = _port_level(subset, port)
        if spl is not None:
            merged = {b: spl.get(b) for b in BLOCKS}
    return merged


def merged_rules(drs: Sequence[Resource]) -> tuple[Policy, dict[str, Mapping[str, Any]]]:
    """(top-level policy of the first DR, subsets by name, first definition wins)."""
    top = as_map(drs[0].spec.get("trafficPolicy")) if drs else {}
    subsets: dict[str, Mapping[str, Any]] = {}
    for dr in drs:
        for s in as_list(dr.spec.get("subsets")):
            name = str(as_map(s).get("name") or "")
            if name and name not in subsets:
                subsets[name] = as_map(s)
    return top, subsets


def _positive(value: Any, default: int) -> int:
    """Istio cannot tell 0 from unset: zero (or negative) means the default."""
    n = as_int(value)
    return n if n is not None and n > 0 else default


def _duration(value: Any, default: float) -> float:
    s = seconds(value)
    return s if s is not None else default


def load_balancer(spec: Any) -> types.LoadBalancer:
    m = as_map(spec)
    simple = str(m.get("simple") or "LEAST_REQUEST")
    if simple in ("LEAST_CONN", "UNSPECIFIED"):
        simple = "LEAST_REQUEST"
    if simple not in ("ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "PASSTHROUGH"):
        simple = "LEAST_REQUEST"
    return types.LoadBalancer(
        simple=cast(Any, simple), consistent_hash=_consistent_hash(m.get("consistentHash")),
    )


def _consistent_hash(spec: Any) -> types.ConsistentHash | None:
    m = as_map(spec)
    if not m:
        return None
    ring = _positive(as_map(m.get("ringHash")).get("minimumRingSize"),
                     _positive(m.get("minimumRingSize"), 1024))
    cookie = as_map(m.get("httpCookie"))
    if m.get("httpHeaderName"):
        return types.ConsistentHash(kind="header", name=str(m["httpHeaderName"]).lower(),
                                    minimum_ring_size=ring)
    if cookie:
        return types.ConsistentHash(kind="cookie", name=str(cookie.get("name") or ""),
                                    cookie_path=cookie.get("path"),
                                    cookie_ttl=seconds(cookie.get("ttl")),
                                    minimum_ring_size=ring)
    if m.get("httpQueryParameterName"):
        return types.ConsistentHash(kind="query_param", name=str(m["httpQueryParameterName"]),
                                    minimum_ring_size=ring)
    if m.get("useSourceIp"):
        return types.ConsistentHash(kind="source_ip", minimum_ring_size=ring)
    return None


def connection_pool(spec: Any) -> types.ConnectionPool:
    m = as_map(spec)
    tcp, http = as_map(m.get("tcp")), as_map(m.get("http"))
    d = types.ConnectionPool()
    idle = http.get("idleTimeout", tcp.get("idleTimeout"))
    return types.ConnectionPool(
        max_connections=_positive(tcp.get("maxConnections"), d.max_connections),
        connect_timeout=_duration(tcp.get("connectTimeout"), d.connect_timeout) or
        d.connect_timeout,
        http1_max_pending_requests=_positive(http.get("http1MaxPendingRequests"),
                                             d.http1_max_pending_requests),
        http2_max_requests=_positive(http.get("http2MaxRequests"), d.http2_max_requests),
        max_requests_per_connection=_positive(http.get("maxRequestsPerConnection"), 0),
        max_retries=_positive(http.get("maxRetries"), d.max_retries),
        idle_timeout=_duration(idle, d.idle_timeout),
        max_concurrent_streams=_positive(http.get("maxConcurrentStreams"), 0),
    )


def outlier(spec: Any) -> types.OutlierDetection | None:
    """Present block -> detection on; consecutive5xxErrors defaults to 5, 0 turns it off."""
    if not isinstance(spec, Mapping):
        return None
    d = types.OutlierDetection()
    c5 = as_int(spec.get("consecutive5xxErrors"), as_int(spec.get("consecutiveErrors"), 5))
    gw = as_int(spec.get("consecutiveGatewayErrors"))
    split = bool(spec.get("splitExternalLocalOriginErrors", False))
    local = as_int(spec.get("consecutiveLocalOriginFailures"), 5 if split else None)
    return types.OutlierDetection(
        consecutive_5xx=c5 if c5 else None,
        consecutive_gateway=gw if gw else None,
        consecutive_local_origin=local if split and local else None,
        split_external_local_origin_errors=split,
        interval=_duration(spec.get("interval"), d.interval),
        base_ejection_time=_duration(spec.get("baseEjectionTime"), d.base_ejection_time),
        max_ejection_percent=as_int(spec.get("maxEjectionPercent"), d.max_ejection_percent)
        or 0,
        min_health_percent=as_int(spec.get("minHealthPercent"), d.min_health_percent) or 0,
    )


def subset_labels(subset: Mapping[str, Any] | None) -> dict[str, str]:
    return {str(k): str(v) for k, v in as_map((subset or {}).get("labels")).items()}
