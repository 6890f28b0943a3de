"""Mirroring, Istio metrics, access log, admin views, atomic config swap and drain."""

from __future__ import annotations

import io
import json
import threading
import time

import httpx
import pytest
from proxy_harness import Harness, RawClient, cluster, config, get, route

from tests.conftest import eventually
from tollway.snapshot import types
from tollway.snapshot.codec import SnapshotError


def _url(p, path: str) -> str:
    host, port = p.listener_address("main")
    return f"http://{host}:{port}{path}"


def _admin(p, path: str) -> httpx.Response:
    return httpx.get("http://{}:{}{}".format(*p.admin_address, path))


def _wait(pred, timeout: float = 60.0) -> None:
    # copies are sent off the request path: on a loaded host they may land seconds later
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.01)
    raise AssertionError(f"condition not reached in {timeout:.0f}s")


def _mirror_route(percent: float = 100.0) -> types.Route:
    return types.Route(
        clusters=(types.WeightedCluster(cluster="main"),),
        mirrors=(types.Mirror(cluster="shadow", percent=percent),),
    )


def test_mirror_sends_shadow_copy_with_suffixed_host(harness: Harness) -> None:
    main, shadow = harness.upstream("main"), harness.upstream("shadow")
    p = harness.proxy(config([_mirror_route()], [cluster("main", main), cluster("shadow", shadow)]))
    r = httpx.post(_url(p, "/m"), content=b"payload", headers={"host": "myapp:8080"})
    assert r.json()["upstream"] == "main"
    _wait(lambda: len(shadow.requests) == 1)
    copy = shadow.requests[0]
    assert copy["headers"]["host"] == "myapp-shadow:8080"
    assert copy["body_len"] == 7
    assert main.requests[0]["headers"]["host"] == "myapp:8080"


def test_each_mirror_decides_alike_with_and_without_a_body(harness: Harness) -> None:
    """A request without a body sends its copies at once, one with a body collects them
    first: both take mirrorPercentage (0%: never) and count a copy to a cluster that is
    not in the snapshot as failed, without touching the request."""
    main, full = harness.upstream("main"), harness.upstream("full")
    never = harness.upstream("never")
    r = types.Route(
        clusters=(types.WeightedCluster(cluster="main"),),
        mirrors=(
            types.Mirror(cluster="full"),
            types.Mirror(cluster="never", percent=0.0),
            types.Mirror(cluster="gone"),
        ),
    )
    p = harness.proxy(config([r], [cluster("main", main), cluster("full", full),
                                   cluster("never", never)]))
    for _ in range(2):
        assert httpx.get(_url(p, "/g")).json()["upstream"] == "main"
        assert httpx.post(_url(p, "/p"), content=b"body").json()["upstream"] == "main"
    _wait(lambda: len(full.requests) == 4)
    assert sorted((c["method"], c["body_len"]) for c in full.requests) == [
        ("GET", 0), ("GET", 0), ("POST", 4), ("POST", 4)]
    assert never.requests == [] and len(main.requests) == 4
    assert p.mirrorer.failed == 2 * 2


def test_slow_or_dead_mirror_never_slows_or_fails_the_request(harness: Harness) -> None:
    main, shadow = harness.upstream("main"), harness.upstream("shadow")
    # held for the whole test: 2 in flight, 2 queued and 16 dropped whatever the pace (at
    # 3 s, 20 requests on a loaded host outlived the first copies and freed slots)
    shadow.delay_ms = 120_000
    p = harness.proxy(config([_mirror_route()], [cluster("main", main), cluster("shadow", shadow)]))
    p.mirrorer.max_in_flight = 2
    p.mirrorer.max_queue = 2
    c = RawClient(p.listener_address("main"))
    for _ in range(20):
        c.send(get("/"))
        assert c.read_response().status == 200
    stats = p.mirrorer.statistics()
    assert stats["dropped"] == 16
    assert "tollway_mirror_requests" in _admin(p, "/stats/prometheus").text


def test_istio_metrics_have_istio_names_labels_and_buckets(harness: Harness) -> None:
    up = harness.upstream("v2")
    c = types.Cluster(
        name="outbound|80|v2|reviews.default.svc.cluster.local",
        service="reviews.default.svc.cluster.local",
        port=80,
        service_name="reviews",
        service_namespace="default",
        endpoints=(
            types.Endpoint(
                address="127.0.0.1",
                port=up.port,
                workload="reviews-v2",
                labels={"app": "reviews", "version": "v2"},
            ),
        ),
    )
    p = harness.proxy(config([route((c.name, 100))], [c]))
    for _ in range(3):
        httpx.get(_url(p, "/status/201"))
    text = _admin(p, "/stats/prometheus").text
    line = next(ln for ln in text.splitlines() if ln.startswith("istio_requests_total{"))
    for label in (
        'reporter="source"',
        'destination_service="reviews.default.svc.cluster.local"',
        'destination_service_name="reviews"',
        'destination_version="v2"',
        'destination_workload="reviews-v2"',
        'response_code="201"',
        'response_flags="-"',
        'request_protocol="http"',
        'source_workload="client"',
        'connection_security_policy="unknown"',
    ):
        assert label in line
    assert line.endswith(" 3.0")
    assert "istio_request_duration_milliseconds_bucket{" in text
    assert 'le="3600000"' in text
    assert "istio_request_bytes_sum" in text and "istio_response_bytes_count" in text


def test_access_log_line_per_request(harness: Harness) -> None:
    up = harness.upstream()
    log = io.StringIO()
    p = harness.proxy(config([route(("c", 100))], [cluster("c", up)]), access_log=log)
    httpx.get(_url(p, "/logged"), headers={"user-agent": "ua"})
    # written by the proxy's log thread, off the request path: it arrives shortly after
    lines = eventually(lambda: log.getvalue().splitlines(), 20, "the access log line")
    entry = json.loads(lines[0])
    assert entry["path"] == "/logged"
    assert entry["response_code"] == 200
    assert entry["response_flags"] == "-"
    assert entry["user_agent"] == "ua"
    assert entry["upstream_cluster"] == "c"
    assert {"duration", "bytes_sent", "bytes_received", "request_id", "authority"} <= set(entry)


def test_admin_ready_config_dump_clusters(harness: Harness) -> None:
    up = harness.upstream()
    p = harness.proxy(config([route(("c", 100))], [cluster("c", up)], version="abc"))
    assert _admin(p, "/ready").status_code == 200
    dump = _admin(p, "/config_dump").json()
    assert dump["version"] == "abc"
    assert dump["config"]["clusters"][0]["name"] == "c"
    clusters = _admin(p, "/clusters").json()
    assert clusters["clusters"][0]["hosts"][0]["address"] == f"127.0.0.1:{up.port}"


def test_proxy_without_config_is_not_ready(harness: Harness) -> None:
    p = harness.proxy(None)
    assert _admin(p, "/ready").status_code == 503


def test_apply_swaps_atomically_and_refuses_bad_snapshots(harness: Harness) -> None:
    a, b = harness.upstream("a"), harness.upstream("b")
    p = harness.proxy(config([route(("c", 100))], [cluster("c", a)], version="one"))
    slow = RawClient(p.listener_address("main"))
    slow.send(get("/delay/300"))
    time.sleep(0.05)
    harness.apply(p, config([route(("c", 100))], [cluster("c", b)], version="two"))
    assert slow.read_response().json()["upstream"] == "a"  # finished on its own config
    assert httpx.get(_url(p, "/")).json()["upstream"] == "b"
    bad = config([route(("c", 100))], [cluster("c", a)], version="three")
    bad = types.ProxyConfig(
        version="three",
        node=bad.node,
        listeners=bad.listeners,
        route_tables=(),
        clusters=bad.clusters,
    )
    with pytest.raises(SnapshotError):
        harness.apply(p, bad)
    assert p.version == "two"
    assert httpx.get(_url(p, "/")).json()["upstream"] == "b"


def test_apply_adds_and_removes_listeners(harness: Harness) -> None:
    a = harness.upstream("a")
    cfg = config([route(("c", 100))], [cluster("c", a)])
    p = harness.proxy(cfg)
    extra = types.Listener(name="second", kind="outbound", address="127.0.0.1", route_table="rt")
    two = types.ProxyConfig(
        version="2",
        node=cfg.node,
        listeners=(*cfg.listeners, extra),
        route_tables=cfg.route_tables,
        clusters=cfg.clusters,
    )
    harness.apply(p, two)
    host, port = p.listener_address("second")
    assert httpx.get(f"http://{host}:{port}/").status_code == 200
    harness.apply(p, cfg)
    with pytest.raises(KeyError):
        p.listener_address("second")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://{host}:{port}/")


def test_drain_finishes_in_flight_then_closes(harness: Harness) -> None:
    a = harness.upstream("a")
    p = harness.proxy(config([route(("c", 100))], [cluster("c", a)]))
    addr = p.listener_address("main")
    c = RawClient(addr)
    c.send(get("/delay/300"))
    time.sleep(0.05)
    done = threading.Event()

    def drain() -> None:
        harness.lt.run(p.drain(5.0))
        done.set()

    t = threading.Thread(target=drain)
    t.start()
    assert c.read_response().status == 200
    t.join(10)
    assert done.is_set()
    with pytest.raises(httpx.ConnectError):
        httpx.get("http://{}:{}/".format(*addr))
