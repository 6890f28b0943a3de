"""Routing through a live proxy: split, redirect, direct response, rewrite, header ops, NR."""

from __future__ import annotations

import httpx
from proxy_harness import Harness, RawClient, cluster, config, get, route

from tollway.snapshot import types


def _url(p, path: str) -> str:
    host, port = p.listener_address("main")
    return f"http://{host}:{port}{path}"


def test_weighted_split_converges_to_weights(harness: Harness) -> None:
    a, b = harness.upstream("v1"), harness.upstream("v2")
    p = harness.proxy(config([route(("c1", 90), ("c2", 10))], [cluster("c1", a), cluster("c2", b)]))
    c = RawClient(p.listener_address("main"))
    n = 2000
    for _ in range(n):
        c.send(get("/"))
        c.read_response()
    share = b.seen["/"] / n
    assert 0.07 < share < 0.13  # 10% +- 3 sd (sd ~0.0067)


def test_no_route_is_404_nr(harness: Harness) -> None:
    up = harness.upstream()
    p = harness.proxy(config([route(("c", 100))], [cluster("c", up)], domains=("only-this",)))
    r = httpx.get(_url(p, "/"), headers={"host": "other"})
    assert r.status_code == 404
    assert 'response_flags="NR"' in httpx.get(_admin(p) + "/stats/prometheus").text


def _admin(p) -> str:
    return "http://{}:{}".format(*p.admin_address)


def test_redirect_and_direct_response(harness: Harness) -> None:
    up = harness.upstream()
    routes = [
        types.Route(
            matches=(types.RouteMatch(uri=types.StringMatch(kind="prefix", value="/old")),),
            redirect=types.Redirect(uri="/new", authority="example.com"),
        ),
        types.Route(
            matches=(types.RouteMatch(uri=types.StringMatch(kind="exact", value="/dr")),),
            direct_response=types.DirectResponse(status=418, body="teapot"),
        ),
        route(("c", 100)),
    ]
    p = harness.proxy(config(routes, [cluster("c", up)]))
    r = httpx.get(_url(p, "/old/x?y=1"))
    assert r.status_code == 301
    location = r.headers["location"]
    assert location.startswith("http://example.com")
    assert location.endswith("/new?y=1")
    r = httpx.get(_url(p, "/dr"))
    assert (r.status_code, r.text) == (418, "teapot")
    assert up.requests == []


def test_rewrite_uri_and_authority(harness: Harness) -> None:
    up = harness.upstream()
    r0 = types.Route(
        matches=(types.RouteMatch(uri=types.StringMatch(kind="prefix", value="/api/")),),
        clusters=(types.WeightedCluster(cluster="c"),),
        rewrite=types.Rewrite(uri="/v2/", authority="backend.internal"),
    )
    p = harness.proxy(config([r0], [cluster("c", up)]))
    body = httpx.get(_url(p, "/api/items?x=1")).json()
    assert body["path"] == "/v2/items?x=1"
    assert body["headers"]["host"] == "backend.internal"


def test_header_operations_route_and_destination(harness: Harness) -> None:
    up = harness.upstream()
    r0 = types.Route(
        clusters=(
            types.WeightedCluster(
                cluster="c",
                request_headers=types.HeaderOps(add={"x-dest": "d"}),
                response_headers=types.HeaderOps(set={"x-resp-dest": "rd"}),
            ),
        ),
        request_headers=types.HeaderOps(set={"x-route": "r"}, remove=("x-drop",)),
        response_headers=types.HeaderOps(add={"x-resp": "1"}, remove=("x-upstream",)),
    )
    p = harness.proxy(config([r0], [cluster("c", up)]))
    r = httpx.get(_url(p, "/"), headers={"x-drop": "1", "x-route": "old"})
    seen = r.json()["headers"]
    assert seen["x-route"] == "r"
    assert seen["x-dest"] == "d"
    assert "x-drop" not in seen
    assert r.headers["x-resp"] == "1"
    assert r.headers["x-resp-dest"] == "rd"
    assert "x-upstream" not in r.headers


def test_header_match_routes_canary(harness: Harness) -> None:
    a, b = harness.upstream("v1"), harness.upstream("v2")
    canary = types.Route(
        matches=(
            types.RouteMatch(
                headers=(
                    types.HeaderMatch(
                        name="user-id", match=types.StringMatch(kind="regex", value="user-[0-9]{3}")
                    ),
                )
            ),
        ),
        clusters=(types.WeightedCluster(cluster="c2"),),
    )
    p = harness.proxy(config([canary, route(("c1", 100))], [cluster("c1", a), cluster("c2", b)]))
    assert httpx.get(_url(p, "/"), headers={"user-id": "user-123"}).json()["upstream"] == "v2"
    assert httpx.get(_url(p, "/"), headers={"user-id": "user-12"}).json()["upstream"] == "v1"


def test_trace_headers_created_and_propagated(harness: Harness) -> None:
    up = harness.upstream()
    p = harness.proxy(config([route(("c", 100))], [cluster("c", up)]))
    seen = httpx.get(_url(p, "/")).json()["headers"]
    assert len(seen["x-request-id"]) == 36
    assert seen["traceparent"].startswith("00-")
    assert "x-b3-traceid" in seen
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    seen = httpx.get(_url(p, "/"), headers={"traceparent": tp, "x-request-id": "rid-1"}).json()
    assert seen["headers"]["x-request-id"] == "rid-1"
    assert seen["headers"]["traceparent"].split("-")[1] == "0af7651916cd43dd8448eb211c80319c"


def test_cors_preflight_answered_and_simple_request_gets_headers(harness: Harness) -> None:
    up = harness.upstream()
    r0 = types.Route(
        clusters=(types.WeightedCluster(cluster="c"),),
        cors=types.Cors(
            allow_origins=(types.StringMatch(kind="exact", value="https://a.example"),),
            allow_methods=("GET", "POST"),
        ),
    )
    p = harness.proxy(config([r0], [cluster("c", up)]))
    pre = httpx.options(
        _url(p, "/x"),
        headers={"origin": "https://a.example", "access-control-request-method": "POST"},
    )
    assert pre.status_code == 200
    assert pre.headers["access-control-allow-origin"] == "https://a.example"
    assert "POST" in pre.headers["access-control-allow-methods"]
    assert up.requests == []
    r = httpx.get(_url(p, "/x"), headers={"origin": "https://a.example"})
    assert r.headers["access-control-allow-origin"] == "https://a.example"
    r = httpx.get(_url(p, "/x"), headers={"origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
