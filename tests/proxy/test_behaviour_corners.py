"""Issue 12's corners through a live proxy: redirect ports as Istio defines them, and a
destination's `headers.request.set` of host changing the upstream Host as Envoy does."""

from __future__ import annotations

import pytest
from proxy_harness import Harness, RawClient, cluster, config, get

from tollway.proxy.core.route import compile_routes
from tollway.snapshot import types


def _location(rd: types.Redirect, host: str, path: str = "/old?q=1",
              scheme: str = "http", request_port: int | None = None) -> str | None:
    (compiled,) = compile_routes((types.Route(redirect=rd),))
    return compiled.redirect_location(host, path, scheme, request_port)


@pytest.mark.parametrize(
    ("redirect", "host", "request_port", "location"),
    [
        # no port setting: the Host as sent, explicit port kept
        (types.Redirect(uri="/new"), "shop:8080", None, "http://shop:8080/new?q=1"),
        (types.Redirect(uri="/new", scheme="https"), "shop:8080", None,
         "https://shop:8080/new?q=1"),
        # ...except the old scheme's default port when the scheme changes
        (types.Redirect(scheme="https"), "shop:80", None, "https://shop/old?q=1"),
        # FROM_REQUEST_PORT: the port the request was sent to
        (types.Redirect(derive_port="FROM_REQUEST_PORT"), "shop:8080", 80,
         "http://shop:8080/old?q=1"),
        (types.Redirect(derive_port="FROM_REQUEST_PORT", scheme="https"), "shop", 8443,
         "https://shop:8443/old?q=1"),
        (types.Redirect(derive_port="FROM_REQUEST_PORT", authority="other"), "shop:9000", None,
         "http://other:9000/old?q=1"),
        # FROM_PROTOCOL_DEFAULT: the redirect scheme's default port, whatever was sent
        (types.Redirect(derive_port="FROM_PROTOCOL_DEFAULT", scheme="https"), "shop:8080", 80,
         "https://shop/old?q=1"),
        (types.Redirect(derive_port="FROM_PROTOCOL_DEFAULT"), "shop:8080", None,
         "http://shop/old?q=1"),
        # scheme with port
        (types.Redirect(scheme="https", port=8443), "shop:8080", None,
         "https://shop:8443/old?q=1"),
        (types.Redirect(scheme="https", port=443), "shop", None, "https://shop/old?q=1"),
        # authority replaces host and port
        (types.Redirect(authority="new.example.com"), "shop:8080", None,
         "http://new.example.com/old?q=1"),
        (types.Redirect(authority="new.example.com:81"), "shop", None,
         "http://new.example.com:81/old?q=1"),
    ],
)
def test_redirect_location_per_istio(redirect: types.Redirect, host: str,
                                     request_port: int | None, location: str) -> None:
    assert _location(redirect, host, request_port=request_port) == location


def test_a_redirect_through_the_proxy_keeps_the_requests_port(harness: Harness) -> None:
    rd = types.Route(redirect=types.Redirect(scheme="https", derive_port="FROM_REQUEST_PORT"))
    default = types.Route(redirect=types.Redirect(scheme="https",
                                                  derive_port="FROM_PROTOCOL_DEFAULT"))
    table = config([rd], [], domains=("shop", "shop:8080"))
    p = harness.proxy(table)
    c = RawClient(p.listener_address("main"))
    c.send(get("/cart?x=1", host="shop:8080"))
    r = c.read_response()
    assert (r.status, r.header("location")) == (301, "https://shop:8080/cart?x=1")
    c.close()
    p2 = harness.proxy(config([default], [], domains=("shop:8080",)))
    c = RawClient(p2.listener_address("main"))
    c.send(get("/cart", host="shop:8080"))
    assert c.read_response().header("location") == "https://shop/cart"
    c.close()


def _host_route(route_set: dict[str, str] | None, dest_set: dict[str, str] | None,
                rewrite: str | None = None) -> types.Route:
    wc = types.WeightedCluster(
        cluster="c", weight=100,
        request_headers=types.HeaderOps(set=dest_set) if dest_set else None)
    return types.Route(
        clusters=(wc,),
        request_headers=types.HeaderOps(set=route_set) if route_set else None,
        rewrite=types.Rewrite(authority=rewrite) if rewrite else None)


@pytest.mark.parametrize(
    ("route_set", "dest_set", "rewrite", "upstream_host"),
    [
        (None, {"host": "dest.internal"}, None, "dest.internal"),
        (None, {":authority": "dest.internal"}, None, "dest.internal"),
        (None, {"Host": "dest.internal", "x-a": "1"}, None, "dest.internal"),
        ({"host": "route.internal"}, {"host": "dest.internal"}, None, "route.internal"),
        (None, {"host": "dest.internal"}, "rewritten.internal", "rewritten.internal"),
        (None, {"x-a": "1"}, None, "svc"),
    ],
)
def test_a_destination_host_set_changes_the_upstream_host(
    harness: Harness, route_set: dict[str, str] | None, dest_set: dict[str, str] | None,
    rewrite: str | None, upstream_host: str,
) -> None:
    up = harness.upstream("app")
    p = harness.proxy(config([_host_route(route_set, dest_set, rewrite)], [cluster("c", up)]))
    c = RawClient(p.listener_address("main"))
    c.send(get("/", host="svc"))
    assert c.read_response().status == 200
    c.close()
    seen = up.requests[-1]
    assert seen["headers"]["host"] == upstream_host
    assert seen["raw_head"].lower().count("\r\nhost:") == 1
