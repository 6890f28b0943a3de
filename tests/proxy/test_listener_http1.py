"""HTTP/1.1 on both sides: keep-alive, pipelining, bodies, 100-continue, HEAD, close, upgrade."""

from __future__ import annotations

import json
import resource
import socket
import time

from proxy_harness import Harness, RawClient, cluster, config, get, route


def _proxy(harness: Harness, **kw):
    up = harness.upstream("a")
    p = harness.proxy(config([route(("c", 100))], [cluster("c", up)]), **kw)
    return up, p, p.listener_address("main")


def test_keepalive_reuses_both_connections(harness: Harness) -> None:
    up, p, addr = _proxy(harness)
    c = RawClient(addr)
    for i in range(5):
        c.send(get(f"/n/{i}"))
        r = c.read_response()
        assert r.status == 200
        assert r.json()["path"] == f"/n/{i}"
    assert up.connections == 1
    assert p.listeners_view()["listeners"][0]["accepted"] == 1


def test_pipelined_requests_answered_in_order(harness: Harness) -> None:
    _, _, addr = _proxy(harness)
    c = RawClient(addr)
    c.send(get("/delay/50") + get("/one") + get("/two"))
    paths = [c.read_response().json()["path"] for _ in range(3)]
    assert paths == ["/delay/50", "/one", "/two"]


def test_chunked_request_and_response_stream_through(harness: Harness) -> None:
    _, _, addr = _proxy(harness)
    c = RawClient(addr)
    c.send(
        b"POST /chunked HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    r = c.read_response()
    assert r.status == 200
    assert r.header("transfer-encoding") == "chunked"
    assert r.json()["body_len"] == 11


def test_large_upload_streams_without_buffering(harness: Harness) -> None:
    _, p, addr = _proxy(harness)
    size = 64 * 1024 * 1024
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    s = socket.create_connection(addr, timeout=90)
    s.sendall(b"PUT /up HTTP/1.1\r\nHost: svc\r\nContent-Length: %d\r\n\r\n" % size)
    block = b"z" * (1 << 20)
    for _ in range(size // len(block)):
        s.sendall(block)
    data = b""
    while b"}" not in data:
        data += s.recv(65536)
    body = json.loads(data.split(b"\r\n\r\n", 1)[1])
    assert body["body_len"] == size
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - peak_before
    assert grown < size // 2  # streamed with backpressure, never held whole
    # the proxy never held the body: no exchange kept a buffer or a replay copy
    # (the client can read the last byte before the proxy's loop thread finishes the
    # exchange: wait for it rather than race it)
    rt = next(iter(p.bound.values())).runtime
    deadline = time.monotonic() + 10
    while any(conn.active is not None for conn in rt.connections) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert all(conn.active is None for conn in rt.connections)


def test_expect_100_continue_is_answered_before_the_body(harness: Harness) -> None:
    _, _, addr = _proxy(harness)
    c = RawClient(addr)
    c.send(b"POST /e HTTP/1.1\r\nHost: svc\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
    first = c.sock.recv(100)
    assert first.startswith(b"HTTP/1.1 100 Continue")
    c.send(b"data")
    r = c.read_response()
    assert r.status == 200
    assert r.json()["body_len"] == 4
    assert "expect" not in r.json()["headers"]


def test_head_gets_headers_only_and_connection_stays_usable(harness: Harness) -> None:
    _, _, addr = _proxy(harness)
    c = RawClient(addr)
    c.send(b"HEAD /h HTTP/1.1\r\nHost: svc\r\n\r\n")
    r = c.read_response(head=True)
    assert r.status == 200
    assert r.body == b""
    c.send(get("/after"))
    assert c.read_response().json()["path"] == "/after"


def test_connection_close_is_honoured(harness: Harness) -> None:
    _, _, addr = _proxy(harness)
    c = RawClient(addr)
    c.send(get("/x", extra="Connection: close\r\n"))
    r = c.read_response()
    assert r.status == 200
    assert r.header("connection") == "close"
    assert c.closed()


def test_hop_by_hop_headers_are_removed_both_ways(harness: Harness) -> None:
    _, _, addr = _proxy(harness)
    c = RawClient(addr)
    c.send(
        get(
            "/hop",
            extra="Connection: x-secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\n"
            "TE: trailers\r\nProxy-Connection: keep-alive\r\n",
        )
    )
    r = c.read_response()
    seen = r.json()["headers"]
    for name in ("connection", "x-secret", "keep-alive", "te", "proxy-connection"):
        assert name not in seen
    assert r.header("keep-alive") is None
    assert r.header("connection") is None
    assert r.header("x-upstream") == "a"


def test_websocket_upgrade_is_tunnelled(harness: Harness) -> None:
    _, _, addr = _proxy(harness)
    s = socket.create_connection(addr, timeout=10)
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(1024)
    assert data.startswith(b"HTTP/1.1 101")
    s.sendall(b"ping")
    got = data.split(b"\r\n\r\n", 1)[1]
    while b"echo:ping" not in got:
        got += s.recv(1024)
    s.close()


def test_absolute_form_routes_by_uri(harness: Harness) -> None:
    a = harness.upstream("a")
    b = harness.upstream("b")
    cfg = config([route(("cb", 100))], [cluster("cb", b)], domains=("bsvc", "bsvc:8080"))
    from tollway.snapshot import types

    table_a = types.VirtualHost(name="a", domains=("asvc",), routes=(route(("ca", 100)),))
    rt = types.RouteTable(name="rt", virtual_hosts=(*cfg.route_tables[0].virtual_hosts, table_a))
    cfg = types.ProxyConfig(
        version="v",
        node=cfg.node,
        listeners=cfg.listeners,
        route_tables=(rt,),
        clusters=(*cfg.clusters, cluster("ca", a)),
    )
    p = harness.proxy(cfg)
    c = RawClient(p.listener_address("main"))
    c.send(b"GET http://bsvc:8080/p?q=1 HTTP/1.1\r\nHost: asvc\r\n\r\n")
    r = c.read_response()
    assert r.json()["upstream"] == "b"
    assert r.json()["path"] == "/p?q=1"
    c.send(get("/o", host="asvc"))
    assert c.read_response().json()["upstream"] == "a"


def test_slow_reader_backpressure_does_not_stall_the_pooled_connection(harness: Harness) -> None:
    up, p, addr = _proxy(harness)
    slow = socket.create_connection(addr, timeout=30)
    size = 32 * 1024 * 1024
    slow.sendall(get(f"/big/{size}"))
    # not read until the proxy's buffer to this client filled and it paused the upstream:
    # waited for (a fixed second moved too few bytes through a loaded host to fill it)
    runtime = p.bound["main"].runtime
    deadline = time.monotonic() + 60
    while runtime.write_pauses < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    got = 0
    while got < size:
        got += len(slow.recv(1 << 20))
    slow.close()
    assert p.bound["main"].runtime.write_pauses >= 1
    c = RawClient(addr)
    c.send(get("/after-big"))
    assert c.read_response().json()["path"] == "/after-big"
    assert up.connections == 1  # the same upstream connection, reading again
