"""An endpoint-only change to a cluster (an EndpointSlice update) keeps what Envoy keeps
across an EDS update: the pooled connections and the outlier state of the hosts that
stay. Removed hosts' requests in flight finish; their connections close after."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
from proxy_harness import Harness, RawClient, cluster, config, get, route

from tollway.snapshot import types

RR = types.LoadBalancer(simple="ROUND_ROBIN")


def _url(p: Any, path: str) -> str:
    host, port = p.listener_address("main")
    return f"http://{host}:{port}{path}"


def _cluster_view(p: Any) -> dict[str, Any]:
    view = httpx.get("http://{}:{}/clusters".format(*p.admin_address)).json()
    return next(c for c in view["clusters"] if c["name"] == "c")


def _wait(check: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_hosts_that_stay_keep_their_pooled_connections(harness: Harness) -> None:
    """[a, b] -> [b, c] while a request is in flight on each: both finish, b's connection
    serves on from the pool (it used to be dropped with the whole cluster, and b got a new
    one), a's closes once its response is done, and the connection slots the new cluster
    counts are exactly its open connections."""
    a, b, c = harness.upstream("a"), harness.upstream("b"), harness.upstream("c")
    routes = [route(("c", 100), retries=None)]
    p = harness.proxy(config(routes, [cluster("c", a, b, load_balancer=RR)]))
    results: list[int] = []
    slow = [threading.Thread(target=lambda: results.append(
        httpx.get(_url(p, "/delay/1500"), timeout=30).status_code)) for _ in range(2)]
    for t in slow:
        t.start()
    _wait(lambda: a.seen["/delay/1500"] == 1 and b.seen["/delay/1500"] == 1,
          "one request in flight on each host")
    harness.apply(p, config(routes, [cluster("c", b, c, load_balancer=RR)], version="v2"))
    for t in slow:
        t.join(30)
    assert results == [200, 200]
    _wait(lambda: a.disconnects == 1, "the removed host's connection to close")
    client = RawClient(p.listener_address("main"))
    for _ in range(4):
        client.send(get("/after"))
        assert client.read_response().status == 200
    client.close()
    assert (b.seen["/after"], c.seen["/after"]) == (2, 2)
    assert (a.connections, b.connections, c.connections) == (1, 1, 1)
    assert b.disconnects == 0
    view = _cluster_view(p)
    assert [h["address"].rsplit(":", 1)[1] for h in view["hosts"]] == [str(b.port), str(c.port)]
    assert [h["cx_idle"] for h in view["hosts"]] == [1, 1]
    cb = view["circuit_breakers"]
    assert (cb["connections"], cb["pending"], cb["requests"]) == (2, 0, 0)


def test_an_ejected_host_stays_ejected_across_an_endpoint_change(harness: Harness) -> None:
    """Outlier state follows the host, not its position: `bad` ejected, then a new endpoint
    is put in front of it; it stays ejected and gets no request."""
    bad, good, new = harness.upstream("bad"), harness.upstream("good"), harness.upstream("new")
    bad.fail_status = 500
    od = types.OutlierDetection(
        consecutive_5xx=3, interval=1.0, base_ejection_time=30.0, max_ejection_percent=100
    )
    routes = [route(("c", 100), retries=None)]
    p = harness.proxy(config(routes, [cluster("c", bad, good, outlier=od, load_balancer=RR)]))
    client = RawClient(p.listener_address("main"))
    for _ in range(6):
        client.send(get("/"))
        client.read_response()
    assert len(bad.requests) == 3
    assert [h["ejected"] for h in _cluster_view(p)["hosts"]] == [True, False]
    harness.apply(p, config(routes, [cluster("c", new, bad, good, outlier=od, load_balancer=RR)],
                            version="v2"))
    assert [h["ejected"] for h in _cluster_view(p)["hosts"]] == [False, True, False]
    for _ in range(6):
        client.send(get("/"))
        assert client.read_response().status == 200
    client.close()
    assert len(bad.requests) == 3
    assert (len(new.requests), good.connections) == (3, 1)


def test_a_changed_cluster_spec_still_starts_afresh(harness: Harness) -> None:
    """Only an endpoint change keeps the pools: another change (here the load balancer)
    builds the cluster anew, as before."""
    up = harness.upstream()
    routes = [route(("c", 100), retries=None)]
    p = harness.proxy(config(routes, [cluster("c", up)]))
    assert httpx.get(_url(p, "/one")).status_code == 200
    harness.apply(p, config(routes, [cluster("c", up, load_balancer=RR)], version="v2"))
    _wait(lambda: up.disconnects == 1, "the old cluster's idle connection to close")
    assert httpx.get(_url(p, "/two")).status_code == 200
    assert up.connections == 2


def test_requests_queued_on_a_replaced_cluster_are_served(harness: Harness) -> None:
    """One connection allowed, one request on it and one queued for it, then the cluster
    is replaced (a new load balancer: not an endpoint-only change). The queued request is
    served by the old cluster once the first is done: it used to wait for its timeout
    (for ever here: the route has none), since a closed cluster neither handed a released
    connection to a waiter nor opened one for it."""
    up = harness.upstream()
    routes = [route(("c", 100), retries=None)]
    one = types.ConnectionPool(max_connections=1)
    p = harness.proxy(config(routes, [cluster("c", up, connection_pool=one)]))
    results: list[int] = []
    first = threading.Thread(target=lambda: results.append(
        httpx.get(_url(p, "/delay/800"), timeout=30).status_code))
    first.start()
    _wait(lambda: up.seen["/delay/800"] == 1, "the first request in flight")
    queued = threading.Thread(target=lambda: results.append(
        httpx.get(_url(p, "/queued"), timeout=15).status_code))
    queued.start()
    _wait(lambda: _cluster_view(p)["pending"] == 1, "the second request queued")
    harness.apply(p, config(routes, [cluster("c", up, connection_pool=one, load_balancer=RR)],
                            version="v2"))
    for t in (first, queued):
        t.join(30)
    assert results == [200, 200] and up.seen["/queued"] == 1
    assert httpx.get(_url(p, "/after"), timeout=15).status_code == 200
    _wait(lambda: up.disconnects >= 1, "the old cluster's connection to close after use")
