"""Timeouts, retries, faults, pool limits, outlier detection and connect failures, live."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import httpx
from proxy_harness import Harness, RawClient, cluster, config, get, route

from tollway.snapshot import types


def _url(p, path: str) -> str:
    host, port = p.listener_address("main")
    return f"http://{host}:{port}{path}"


def _stats(p) -> str:
    return httpx.get("http://{}:{}/stats/prometheus".format(*p.admin_address)).text


def _cluster_view(p, name: str = "c") -> dict[str, Any]:
    view = httpx.get("http://{}:{}/clusters".format(*p.admin_address)).json()
    return next(c for c in view["clusters"] if c["name"] == name)


def _wait(check: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return int(port)


def test_route_timeout_is_504_ut(harness: Harness) -> None:
    up = harness.upstream()
    r0 = types.Route(clusters=(types.WeightedCluster(cluster="c"),), timeout=0.1, retries=None)
    p = harness.proxy(config([r0], [cluster("c", up)]))
    r = httpx.get(_url(p, "/delay/2000"))
    assert r.status_code == 504
    assert 'response_flags="UT"' in _stats(p)


def test_retry_on_5xx_goes_to_another_host(harness: Harness) -> None:
    bad, good = harness.upstream("bad"), harness.upstream("good")
    bad.fail_status = 503
    r0 = types.Route(
        clusters=(types.WeightedCluster(cluster="c"),),
        retries=types.Retry(attempts=2, retry_on=("5xx",)),
    )
    lb = types.LoadBalancer(simple="ROUND_ROBIN")
    p = harness.proxy(config([r0], [cluster("c", bad, good, load_balancer=lb)]))
    for _ in range(6):
        r = httpx.get(_url(p, "/"))
        assert r.status_code == 200
        assert r.json()["upstream"] == "good"
    assert len(bad.requests) >= 1


def test_retries_exhausted_return_last_answer_with_urx(harness: Harness) -> None:
    bad = harness.upstream("bad")
    bad.fail_status = 503
    r0 = types.Route(
        clusters=(types.WeightedCluster(cluster="c"),),
        retries=types.Retry(attempts=2, retry_on=("5xx",)),
    )
    p = harness.proxy(config([r0], [cluster("c", bad)]))
    assert httpx.get(_url(p, "/")).status_code == 503
    assert len(bad.requests) == 3
    assert 'response_flags="URX"' in _stats(p)


def test_per_try_timeout_retries_then_succeeds_elsewhere(harness: Harness) -> None:
    slow, fast = harness.upstream("slow"), harness.upstream("fast")
    r0 = types.Route(
        clusters=(types.WeightedCluster(cluster="c"),),
        retries=types.Retry(attempts=1, per_try_timeout=0.2, retry_on=("gateway-error",)),
    )
    lb = types.LoadBalancer(simple="ROUND_ROBIN")
    p = harness.proxy(config([r0], [cluster("c", slow, fast, load_balancer=lb)]))
    slow.delay_ms = 5000
    for _ in range(4):
        r = httpx.get(_url(p, "/"))
        assert r.status_code == 200
        assert r.json()["upstream"] == "fast"
    assert len(slow.requests) >= 1


def test_connect_failure_is_503_uf_and_retried_elsewhere(harness: Harness) -> None:
    up = harness.upstream("live")
    dead = types.Endpoint(address="127.0.0.1", port=_closed_port())
    c = types.Cluster(
        name="c",
        service="svc.default.svc.cluster.local",
        port=80,
        endpoints=(dead,),
        load_balancer=types.LoadBalancer(simple="ROUND_ROBIN"),
    )
    p = harness.proxy(config([route(("c", 100), retries=None)], [c]))
    r = httpx.get(_url(p, "/"))
    assert r.status_code == 503
    assert "connection failure" in r.text
    assert 'response_flags="UF"' in _stats(p)
    c2 = types.Cluster(
        name="c",
        service="svc.default.svc.cluster.local",
        port=80,
        endpoints=(dead, types.Endpoint(address="127.0.0.1", port=up.port)),
        load_balancer=types.LoadBalancer(simple="ROUND_ROBIN"),
    )
    harness.apply(p, config([route(("c", 100))], [c2], version="v2"))
    for _ in range(4):
        assert httpx.get(_url(p, "/")).status_code == 200  # connect-failure is in retryOn


def test_no_endpoints_is_503_uh(harness: Harness) -> None:
    c = types.Cluster(name="c", service="svc.default.svc.cluster.local", port=80)
    p = harness.proxy(config([route(("c", 100))], [c]))
    r = httpx.get(_url(p, "/"))
    assert r.status_code == 503
    assert r.text == "no healthy upstream"


def test_fault_abort_and_delay(harness: Harness) -> None:
    up = harness.upstream()
    abort = types.Route(
        matches=(types.RouteMatch(uri=types.StringMatch(kind="prefix", value="/abort")),),
        clusters=(types.WeightedCluster(cluster="c"),),
        fault=types.Fault(abort_status=418, abort_percent=100.0),
    )
    delay = types.Route(
        clusters=(types.WeightedCluster(cluster="c"),),
        fault=types.Fault(delay=0.05, delay_percent=100.0),
    )
    p = harness.proxy(config([abort, delay], [cluster("c", up)]))
    assert httpx.get(_url(p, "/abort")).status_code == 418
    assert httpx.get(_url(p, "/slow")).status_code == 200
    stats = _stats(p)
    assert 'response_flags="FI"' in stats
    assert 'response_flags="DI"' in stats
    assert [r["path"] for r in up.requests] == ["/slow"]


def test_pool_overflow_is_503_uo_at_once(harness: Harness) -> None:
    up = harness.upstream()
    pool = types.ConnectionPool(max_connections=1, http1_max_pending_requests=1)
    p = harness.proxy(
        config([route(("c", 100), retries=None)], [cluster("c", up, connection_pool=pool)])
    )
    addr = p.listener_address("main")
    results: list[int] = []

    def one() -> None:
        c = RawClient(addr)
        c.send(get("/delay/300"))
        results.append(c.read_response().status)

    threads = [threading.Thread(target=one) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results).count(503) >= 1
    assert 200 in results
    assert 'response_flags="UO"' in _stats(p)
    assert up.connections == 1


def test_outlier_detection_ejects_failing_host(harness: Harness) -> None:
    bad, good = harness.upstream("bad"), harness.upstream("good")
    bad.fail_status = 500
    od = types.OutlierDetection(
        consecutive_5xx=3, interval=1.0, base_ejection_time=30.0, max_ejection_percent=100
    )
    lb = types.LoadBalancer(simple="ROUND_ROBIN")
    p = harness.proxy(
        config(
            [route(("c", 100), retries=None)],
            [cluster("c", bad, good, outlier=od, load_balancer=lb)],
        )
    )
    c = RawClient(p.listener_address("main"))
    for _ in range(12):
        c.send(get("/"))
        c.read_response()
    before = len(bad.requests)
    assert before == 3
    for _ in range(10):
        c.send(get("/"))
        assert c.read_response().status == 200
    assert len(bad.requests) == before
    view = httpx.get("http://{}:{}/clusters".format(*p.admin_address)).json()
    hosts = view["clusters"][0]["hosts"]
    assert [h["ejected"] for h in hosts] == [True, False]


def test_upstream_reset_before_headers_is_503(harness: Harness) -> None:
    up = harness.upstream()
    p = harness.proxy(config([route(("c", 100), retries=None)], [cluster("c", up)]))
    r = httpx.get(_url(p, "/reset"))
    assert r.status_code == 503
    assert httpx.get(_url(p, "/fine")).status_code == 200


def test_max_retries_budget_refuses_a_retry_while_another_is_in_flight(
    harness: Harness,
) -> None:
    """DestinationRule maxRetries on the data path: with a budget of one retry in flight
    for the cluster, a second request's retriable failure is answered as it is, flagged
    UO, and not retried (Envoy's retry circuit breaker)."""
    up = harness.upstream()
    r0 = types.Route(
        clusters=(types.WeightedCluster(cluster="c"),),
        retries=types.Retry(attempts=1, per_try_timeout=2.0, retry_on=("5xx",)),
    )
    pool = types.ConnectionPool(max_retries=1)
    p = harness.proxy(config([r0], [cluster("c", up, connection_pool=pool)]))
    results: list[int] = []
    slow = threading.Thread(target=lambda: results.append(
        httpx.get(_url(p, "/delay/10000"), timeout=30).status_code))
    slow.start()
    # its first try times out after 2 s and is retried: that retry holds the one slot
    _wait(lambda: up.seen["/delay/10000"] == 2, "the slow request's retry upstream")
    r = httpx.get(_url(p, "/status/503"), timeout=30)
    assert r.status_code == 503
    assert up.seen["/status/503"] == 1  # not retried: the budget is in use
    assert _cluster_view(p)["circuit_breakers"]["retry_overflow"] == 1
    slow.join(30)
    assert results == [504]
    assert 'response_flags="UO"' in _stats(p)
    cb = _cluster_view(p)["circuit_breakers"]
    assert (cb["requests"], cb["pending"], cb["retries"]) == (0, 0, 0)
    # with the slot free again, the same failure is retried
    assert httpx.get(_url(p, "/status/503"), timeout=30).status_code == 503
    assert up.seen["/status/503"] == 3


def test_upgrade_holds_a_connection_slot_until_the_tunnel_closes(harness: Harness) -> None:
    """An upgraded connection counts against tcp.maxConnections like any other: with a
    limit of one and a tunnel open, the next request waits in the pending queue for the
    slot and gets it when the tunnel closes (it used to open a second connection, and the
    tunnel's close then freed a slot it never took)."""
    up = harness.upstream()
    pool = types.ConnectionPool(max_connections=1, http1_max_pending_requests=4)
    p = harness.proxy(
        config([route(("c", 100), retries=None)], [cluster("c", up, connection_pool=pool)])
    )
    s = socket.create_connection(p.listener_address("main"), timeout=10)
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(1024)
    assert data.startswith(b"HTTP/1.1 101")
    results: list[int] = []
    waiter = threading.Thread(target=lambda: results.append(
        httpx.get(_url(p, "/after"), timeout=30).status_code))
    waiter.start()
    _wait(lambda: _cluster_view(p)["pending"] == 1 or results, "the request to queue")
    assert not results, "the request got a second upstream connection past maxConnections"
    assert up.connections == 1
    assert _cluster_view(p)["circuit_breakers"]["connections"] == 1
    s.close()  # the tunnel ends: its slot goes to the waiting request
    waiter.join(30)
    assert results == [200]
    assert up.connections == 2
    cb = _cluster_view(p)["circuit_breakers"]
    assert (cb["connections"], cb["pending"], cb["requests"]) == (1, 0, 0)  # one idle


def test_a_stale_pooled_connection_is_resent_on_a_newly_dialled_one(harness: Harness) -> None:
    """Two idle pooled connections, both given up by the server (it answers one request per
    connection and closes on the next unanswered): the request on the first is resent once,
    on a newly dialled connection, not on the other idle one, which is just as dead (it used
    to take that one and answer 503 UC)."""
    up = harness.upstream()
    up.answers_per_connection = 1
    p = harness.proxy(config([route(("c", 100), retries=None)], [cluster("c", up)]))
    results: list[int] = []
    both = [threading.Thread(target=lambda: results.append(
        httpx.get(_url(p, "/delay/1000"), timeout=30).status_code)) for _ in range(2)]
    for t in both:
        t.start()
    for t in both:
        t.join(30)
    assert results == [200, 200]
    assert up.connections == 2
    _wait(lambda: _cluster_view(p)["hosts"][0]["cx_idle"] == 2, "two idle connections")
    r = httpx.get(_url(p, "/after"), timeout=30)
    assert r.status_code == 200, r.text
    assert up.closed_unanswered == 1  # only the first stale one was tried
    assert up.connections == 3
    assert up.seen["/after"] == 1
    cb = _cluster_view(p)["circuit_breakers"]
    assert (cb["pending"], cb["requests"]) == (0, 0)
