"""Inbound listener in front of the app, HTTP/1.0 clients, consistent-hash stickiness."""

from __future__ import annotations

import httpx
from proxy_harness import Harness, RawClient, cluster, config, route

from tollway.snapshot import types


def test_inbound_listener_forwards_to_the_app_and_reports_as_destination(
    harness: Harness,
) -> None:
    app = harness.upstream("app")
    inbound = types.Listener(
        name="main",
        kind="inbound",
        address="127.0.0.1",
        app_address="127.0.0.1",
        app_port=app.port,
        service_port=8080,
    )
    cfg = types.ProxyConfig(
        version="in",
        node=types.Node(
            name="reviews-v2-0.default",
            workload="reviews-v2",
            labels={"app": "reviews", "version": "v2"},
        ),
        listeners=(inbound,),
    )
    p = harness.proxy(cfg)
    host, port = p.listener_address("main")
    r = httpx.get(f"http://{host}:{port}/inside", headers={"host": "reviews:8080"})
    assert r.json()["upstream"] == "app"
    text = httpx.get("http://{}:{}/stats/prometheus".format(*p.admin_address)).text
    line = next(ln for ln in text.splitlines() if ln.startswith("istio_requests_total{"))
    assert 'reporter="destination"' in line
    assert 'destination_workload="reviews-v2"' in line
    assert 'destination_version="v2"' in line
    assert 'destination_service="reviews.default.svc.cluster.local"' in line
    assert 'connection_security_policy="none"' in line


def test_http10_client_gets_unchunked_body_and_close(harness: Harness) -> None:
    up = harness.upstream()
    p = harness.proxy(config([route(("c", 100))], [cluster("c", up)]))
    c = RawClient(p.listener_address("main"))
    c.send(b"GET /chunked HTTP/1.0\r\nHost: svc\r\n\r\n")
    data = b""
    while True:
        piece = c.sock.recv(65536)
        if not piece:
            break
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding" not in head.lower()
    assert body.startswith(b"{") and body.endswith(b"}")


def test_consistent_hash_on_header_is_sticky(harness: Harness) -> None:
    ups = [harness.upstream(f"u{i}") for i in range(4)]
    lb = types.LoadBalancer(consistent_hash=types.ConsistentHash(kind="header", name="x-user"))
    p = harness.proxy(config([route(("c", 100))], [cluster("c", *ups, load_balancer=lb)]))
    host, port = p.listener_address("main")
    with httpx.Client(base_url=f"http://{host}:{port}") as client:
        for user in ("alice", "bob", "carol", "dave", "erin"):
            seen = {client.get("/", headers={"x-user": user}).json()["upstream"] for _ in range(6)}
            assert len(seen) == 1
        spread = {
            client.get("/", headers={"x-user": f"user-{i}"}).json()["upstream"] for i in range(40)
        }
    assert len(spread) >= 3
