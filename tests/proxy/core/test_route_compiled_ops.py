"""CORS and header operations are compiled with the route, never per request."""

from __future__ import annotations

from tollway.proxy.core import cors, headerops
from tollway.proxy.core.route import compile_routes
from tollway.snapshot import types


def _route() -> types.Route:
    return types.Route(
        clusters=(
            types.WeightedCluster(cluster="a", weight=50,
                                  response_headers=types.HeaderOps(set={"x-who": "dest"})),
            types.WeightedCluster(cluster="b", weight=50),
        ),
        request_headers=types.HeaderOps(set={"x-req": "route"}),
        response_headers=types.HeaderOps(set={"x-who": "route"}, add={"x-route": "1"}),
        cors=types.Cors(allow_origins=(types.StringMatch(kind="exact", value="https://a.x"),)),
    )


def test_the_route_entry_carries_its_compiled_cors_and_ops() -> None:
    (entry,) = compile_routes((_route(),))
    assert isinstance(entry.cors, cors.CorsPolicy)
    assert entry.shapes_response
    a, b = entry.spec.clusters
    before = len(headerops._compiled)
    ops_a = entry.response_ops_for(a)
    assert ops_a is entry.response_ops_for(a)  # the same compiled tuple for every request
    assert len(headerops._compiled) == before  # and no cache filled on the way
    # Envoy's order: the destination's operations, then the route's (the route's set wins)
    pairs: list[tuple[str, str]] = [("x-who", "upstream")]
    for op in ops_a or ():
        pairs = op(pairs)
    assert pairs == [("x-who", "route"), ("x-route", "1")]
    assert entry.response_ops_for(b) is not None and len(entry.response_ops_for(b) or ()) == 1
    assert entry.request_ops_for(b) is entry.request_ops_for(b)


def test_a_plain_route_shapes_nothing() -> None:
    (entry,) = compile_routes((types.Route(clusters=(types.WeightedCluster(cluster="a"),)),))
    assert entry.cors is None and not entry.shapes_response
    assert entry.response_ops_for(entry.spec.clusters[0]) is None


def test_routes_share_what_is_read_only_across_a_large_table() -> None:
    """10,000 routes must not hold 10,000 copies of the same retry policy, 90/10 picker
    or empty header-operation tables (bench/rss.py: RSS growth per route)."""
    plain = [
        types.Route(name=f"r{i}", clusters=(types.WeightedCluster(cluster="a", weight=90),
                                            types.WeightedCluster(cluster="b", weight=10)),
                    retries=types.Retry(attempts=2, retry_on=("connect-failure",)))
        for i in range(3)
    ]
    other = types.Route(name="o", clusters=(types.WeightedCluster(cluster="a", weight=50),
                                            types.WeightedCluster(cluster="b", weight=50)),
                        retries=types.Retry(attempts=5, retry_on=("5xx",)))
    entries = compile_routes((*plain, other, _route()))
    first, second, third, odd, ops = entries
    assert first.retry_policy is second.retry_policy is third.retry_policy
    assert odd.retry_policy is not first.retry_policy and odd.retry_policy.attempts == 5
    assert first.retry_policy.attempts == 2
    assert first._picker is second._picker and odd._picker is not first._picker
    assert first._cumulative == (0.9, 1.0) and odd._cumulative == (0.5, 1.0)
    # no header operations: nothing to apply, whatever destination was picked
    for wc in (*first.spec.clusters, None):
        assert first.request_ops_for(wc) is None and first.response_ops_for(wc) is None
    # the entry with operations still has its own
    assert ops.request_ops_for(ops.spec.clusters[1]) is not None
    assert ops.response_ops_for(None) is not None
