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
