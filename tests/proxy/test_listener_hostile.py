"""Hostile input against a live proxy: each case gets its 4xx or a close, never a crash,
a leaked connection or an effect on other clients (checked after every case)."""

from __future__ import annotations

import socket
import time

import pytest
from proxy_harness import Harness, RawClient, cluster, config, get, route

from tollway.proxy.http1.parse import Limits


@pytest.fixture
def live(harness: Harness):
    up = harness.upstream("a")
    limits = Limits(max_head_bytes=8 * 1024)
    p = harness.proxy(config([route(("c", 100))], [cluster("c", up)]), limits=limits)
    bystander = RawClient(p.listener_address("main"))
    yield p, bystander
    # the bystander, connected all along, is still served; nothing leaked
    bystander.send(get("/still-ok"))
    assert bystander.read_response().status == 200
    bystander.close()
    rt = p.bound["main"].runtime
    deadline = time.monotonic() + 3
    while len(rt.connections) > 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(rt.connections) == 0


def _exchange(p, data: bytes, timeout: float = 5.0) -> bytes:
    s = socket.create_connection(p.listener_address("main"), timeout=timeout)
    s.sendall(data)
    out = b""
    try:
        while True:
            piece = s.recv(65536)
            if not piece:
                break
            out += piece
    except (ConnectionResetError, TimeoutError):
        pass
    s.close()
    return out


CASES = {
    "garbage request line": (b"HELLO\r\n\r\n", b"HTTP/1.1 400"),
    "space in target": (b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 400"),
    "bare LF": (b"GET / HTTP/1.1\nHost: x\n\n", b"HTTP/1.1 400"),
    "obs-fold": (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", b"HTTP/1.1 400"),
    "space before colon": (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", b"HTTP/1.1 400"),
    "NUL in header": (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", b"HTTP/1.1 400"),
    "CL and TE": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 400",
    ),
    "two CL": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"HTTP/1.1 400",
    ),
    "TE not chunked last": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        b"HTTP/1.1 400",
    ),
    "bad chunk size": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 400",
    ),
    "negative CL": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", b"HTTP/1.1 400"),
    "missing Host": (b"GET / HTTP/1.1\r\n\r\n", b"HTTP/1.1 400"),
    "oversized headers": (
        b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 9000 + b"\r\n\r\n",
        b"HTTP/1.1 431",
    ),
    "oversized request line": (
        b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"HTTP/1.1 431",
    ),
    "endless headers": (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 2000, b"HTTP/1.1 431"),
    "unknown Expect": (b"GET / HTTP/1.1\r\nHost: x\r\nExpect: magic\r\n\r\n", b"HTTP/1.1 417"),
    "two Host headers": (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", b"HTTP/1.1 400"),
    "escaped NUL in path": (b"GET /a%00b HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 400"),
    "unknown upgrade": (
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\nGET /s",
        b"HTTP/1.1 403",
    ),
    "CONNECT": (b"CONNECT x:1 HTTP/1.1\r\nHost: x:1\r\n\r\nrawbytes", b"HTTP/1.1 403"),
    # a declined h2c upgrade is parsed again, with llhttp's framing checks
    "h2c with CL and TE": (
        b"POST / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
        b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 400",
    ),
    "h2c with a bad chunk size": (
        b"POST / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 400",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_request_is_refused_and_connection_closed(live, case: str) -> None:
    p, _ = live
    data, expect = CASES[case]
    out = _exchange(p, data)
    assert out.startswith(expect), out[:80]
    assert b"connection: close" in out.lower()


def test_h2c_cut_short_mid_body_leaves_nothing_behind(live, harness) -> None:
    """The downgraded request's body never arrives in full: the client goes away."""
    p, _ = live
    s = socket.create_connection(p.listener_address("main"), timeout=5)
    s.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
              b"Content-Length: 100000\r\n\r\nabc")
    time.sleep(0.2)
    s.close()


def test_smuggled_second_request_after_bad_framing_is_never_forwarded(live, harness) -> None:
    p, _ = live
    up = harness.upstreams[0]
    _exchange(
        p,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked"
        b"\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    assert "/smuggled" not in up.seen


@pytest.fixture
def impatient(harness: Harness):
    up = harness.upstream("a")
    limits = Limits(header_timeout=0.3, idle_timeout=0.6)
    return harness.proxy(config([route(("c", 100))], [cluster("c", up)]), limits=limits)


def test_slow_headers_get_408(impatient) -> None:
    p = impatient
    s = socket.create_connection(p.listener_address("main"), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    out = s.recv(1024)
    assert out.startswith(b"HTTP/1.1 408")
    s.close()


def test_idle_keepalive_connection_is_closed(impatient) -> None:
    p = impatient
    c = RawClient(p.listener_address("main"))
    c.send(get("/"))
    assert c.read_response().status == 200
    assert c.closed()


def test_abrupt_client_reset_mid_body_and_mid_response(live) -> None:
    p, _ = live
    for data in (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nabc",
        get("/delay/200"),
        get("/big/5000000"),
    ):
        s = socket.create_connection(p.listener_address("main"))
        s.sendall(data)
        time.sleep(0.05)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()


def test_many_garbage_connections_do_not_disturb(live) -> None:
    p, bystander = live
    for i in range(50):
        _exchange(p, bytes([i % 256]) * 20 + b"\r\n\r\n", timeout=2)
        if i % 10 == 0:
            bystander.send(get("/between"))
            assert bystander.read_response().status == 200
