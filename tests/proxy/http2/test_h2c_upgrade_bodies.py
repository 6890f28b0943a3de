"""`curl --http2` with a request body: the `Upgrade: h2c` is not taken, the request is
served as HTTP/1.1 with its body, as Envoy's HTTP/1 codec serves every h2c upgrade.

curl sends `Upgrade: h2c` with a body too (RFC 7540 3.2 lets the client send HTTP/2
frames only after the whole body). A bodiless upgrade switches (test_h2_downstream.py);
with a body, Content-Length or chunked, small or past any window, the proxy ignores the
upgrade, and the upstream receives the same bytes without the upgrade headers. The real
curl against a live proxy; the harness app records a SHA-256 of what it received.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from proxy_harness import Harness, RawClient, cluster, config, get, route

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed")

UPGRADE_HEADS = ("upgrade", "http2-settings")


def _proxy(harness: Harness):  # type: ignore[no-untyped-def]
    up = harness.upstream("app")
    return up, harness.proxy(config([route(("c", 100))], [cluster("c", up)]))


def _curl(*args: str) -> subprocess.CompletedProcess[str]:
    assert CURL is not None
    return subprocess.run([CURL, "-sS", "-v", "--http2", *args], capture_output=True,
                          text=True, timeout=120)


def _sent_upgrade(r: subprocess.CompletedProcess[str]) -> None:
    """curl asked to upgrade, and got an HTTP/1.1 answer instead of a 101."""
    assert "> Upgrade: h2c" in r.stderr, r.stderr
    assert "101 Switching Protocols" not in r.stderr
    assert "< HTTP/1.1 200" in r.stderr, r.stderr


@needs_curl
@pytest.mark.parametrize("size", [5, 3_000_000], ids=["small", "past-every-window"])
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_curl_http2_with_a_body_is_served_over_http1(
    harness: Harness, tmp_path: Path, size: int, chunked: bool
) -> None:
    up, p = _proxy(harness)
    host, port = p.listener_address("main")
    data = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    body = tmp_path / "body"
    body.write_bytes(data)
    extra = ["-H", "Transfer-Encoding: chunked"] if chunked else []
    r = _curl(*extra, "--data-binary", f"@{body}", f"http://{host}:{port}/post")
    assert r.returncode == 0, r.stderr
    _sent_upgrade(r)
    seen = json.loads(r.stdout)
    assert seen["body_len"] == size
    assert seen["body_sha256"] == hashlib.sha256(data).hexdigest()
    assert not any(h in seen["headers"] for h in UPGRADE_HEADS)
    assert "upgrade" not in seen["headers"].get("connection", "").lower()
    if chunked:
        assert seen["headers"]["transfer-encoding"] == "chunked"
    else:
        assert seen["headers"]["content-length"] == str(size)
    assert len(up.requests) == 1


@needs_curl
def test_two_bodies_on_one_curl_connection(harness: Harness) -> None:
    """curl reuses the connection: the second request after a declined upgrade is parsed
    as usual (and is itself served as HTTP/1.1)."""
    up, p = _proxy(harness)
    host, port = p.listener_address("main")
    r = _curl("-d", "first", f"http://{host}:{port}/a", "--next", "--http2", "-d", "second!",
              f"http://{host}:{port}/b")
    assert r.returncode == 0, r.stderr
    assert "Re-using existing connection" in r.stderr
    assert [(q["path"], q["body_len"]) for q in up.requests] == [("/a", 5), ("/b", 7)]
    assert up.connections == 1


H2C_CHUNKED = (b"POST /x HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade, HTTP2-Settings, "
               b"keep-alive\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\n"
               b"x-trailer: t\r\n\r\n")


def test_a_chunked_h2c_body_then_a_pipelined_request(harness: Harness) -> None:
    up, p = _proxy(harness)
    c = RawClient(p.listener_address("main"))
    c.send(H2C_CHUNKED + get("/next"))
    assert c.read_response().status == 200
    assert c.read_response().status == 200
    c.close()
    assert [(r["path"], r["body_len"]) for r in up.requests] == [("/x", 5), ("/next", 0)]
    assert up.requests[0]["body_sha256"] == hashlib.sha256(b"abcde").hexdigest()
    assert not any(h in up.requests[0]["headers"] for h in UPGRADE_HEADS)


def test_many_pipelined_h2c_requests_in_one_read(harness: Harness) -> None:
    """Each declined upgrade is parsed again by a loop, not a nested call: hundreds in one
    segment neither overflow the stack nor lose a request."""
    up, p = _proxy(harness)
    c = RawClient(p.listener_address("main"))
    n = 300
    one = (b"POST /p HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
           b"Content-Length: 2\r\n\r\nok")
    c.send(one * n)
    statuses = [c.read_response().status for _ in range(n)]
    c.close()
    assert statuses == [200] * n
    assert up.seen["/p"] == n


def test_an_h2c_head_split_across_reads(harness: Harness) -> None:
    """The head arrives in pieces and the body in the same read as its last piece."""
    up, p = _proxy(harness)
    c = RawClient(p.listener_address("main"))
    for piece in (H2C_CHUNKED[:20], H2C_CHUNKED[20:90], H2C_CHUNKED[90:]):
        c.send(piece)
    assert c.read_response().status == 200
    c.close()
    assert up.requests[0]["body_len"] == 5
