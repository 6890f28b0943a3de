"""The policy sees what the app sees: an attacker's request shapes, through real sockets.

Each case is a request a caller can send to slip past a check that compares strings:
trailing whitespace in a header or Host, a second Host, a fragment, an upgrade the mesh
does not tunnel, a spoofed request id or X-Forwarded-For at the gateway. The upstream
records the head it received, so "forwarded" is checked on the wire, not inferred.
"""

from __future__ import annotations

import socket
import time

import pytest
from proxy_harness import Harness, RawClient, cluster, config, get, route

from tollway.snapshot import types


def _deny(**operation: tuple[str, ...]) -> types.Authz:
    op = types.AuthzOperation(**{k: types.StringSet(values=v) for k, v in operation.items()})
    return types.Authz(policies=(types.AuthzPolicy(
        name="default/deny", action="DENY", rules=(types.AuthzRule(operations=(op,)),)),))


def _deny_header(name: str, value: str) -> types.Authz:
    cond = types.AuthzCondition(key=f"request.headers[{name}]", values=(value,))
    return types.Authz(policies=(types.AuthzPolicy(
        name="default/deny", action="DENY", rules=(types.AuthzRule(conditions=(cond,)),)),))


def _raw(p, data: bytes, timeout: float = 10.0) -> bytes:
    """Send bytes, read until the proxy closes (or the timeout)."""
    s = socket.create_connection(p.listener_address("main"), timeout=timeout)
    s.sendall(data)
    out = b""
    try:
        while piece := s.recv(65536):
            out += piece
    except (ConnectionResetError, TimeoutError):
        pass
    s.close()
    return out


def _one(p, data: bytes):
    c = RawClient(p.listener_address("main"))
    c.send(data)
    r = c.read_response()
    c.close()
    return r


# ------------------------------------------------------------------ whitespace


def test_trailing_whitespace_in_a_header_value_does_not_dodge_a_deny(harness: Harness) -> None:
    up = harness.upstream("app")
    p = harness.proxy(config([route(("c", 100))], [cluster("c", up)], kind="inbound",
                             authz=_deny_header("x-user", "admin")))
    assert _one(p, get("/", extra="x-user: admin\r\n")).status == 403
    assert _one(p, get("/", extra="x-user: admin \t \r\n")).status == 403
    assert _one(p, get("/", extra="x-user:   admin\r\n")).status == 403
    assert up.requests == []
    r = _one(p, get("/", extra="x-user: guest   \r\n"))
    assert r.status == 200
    assert "x-user: guest\r\n" in up.requests[-1]["raw_head"]  # forwarded trimmed too


def test_trailing_whitespace_in_host_routes_and_matches_as_the_bare_host(
    harness: Harness,
) -> None:
    up = harness.upstream("app")
    table = config([route(("c", 100))], [cluster("c", up)], domains=("admin.internal",),
                   kind="inbound", authz=_deny(hosts=("admin.internal",)))
    p = harness.proxy(table)
    assert _one(p, get("/", host="admin.internal   ")).status == 403
    assert up.requests == []
    # routing sees the trimmed Host as well (no policy this time)
    p2 = harness.proxy(config([route(("c", 100))], [cluster("c", up)],
                              domains=("admin.internal",)))
    c = RawClient(p2.listener_address("main"))
    c.send(get("/", host="admin.internal \t"))
    assert c.read_response().status == 200
    c.close()
    assert "host: admin.internal\r\n" in up.requests[-1]["raw_head"]


def test_two_host_headers_are_refused_not_joined(harness: Harness) -> None:
    up = harness.upstream("app")
    p = harness.proxy(config([route(("c", 100))], [cluster("c", up)]))
    out = _raw(p, b"GET / HTTP/1.1\r\nHost: public\r\nHost: admin.internal\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400")
    out = _raw(p, b"GET / HTTP/1.1\r\nHost: public\r\nHOST: public\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400")
    assert up.requests == []


# ------------------------------------------------------------------ fragments


@pytest.mark.parametrize(
    ("target", "forwarded"),
    [("/public#frag", "/public"), ("/a?x=1#/../admin", "/a?x=1"), ("/b#?q=1", "/b")],
)
def test_a_fragment_is_never_forwarded(harness: Harness, target: str, forwarded: str) -> None:
    up = harness.upstream("app")
    p = harness.proxy(config([route(("c", 100))], [cluster("c", up)]))
    assert _one(p, get(target)).status == 200
    assert up.requests[-1]["path"] == forwarded


# ------------------------------------------------------------------ upgrades

H2C = (b"GET /ws HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade, HTTP2-Settings\r\n"
       b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")


def test_h2c_is_answered_by_the_proxy_never_tunnelled_to_the_app(harness: Harness) -> None:
    """A bodiless `Upgrade: h2c` switches the client's connection to the proxy's own
    HTTP/2 (RFC 9113 3.2 via 7540): the app gets a plain HTTP/1.1 request without the
    upgrade headers, never a 101 it could answer and so turn the hop into a blind tunnel."""
    up = harness.upstream("app")  # its /ws answers 101 to any request that asks to upgrade
    p = harness.proxy(config([route(("c", 100))], [cluster("c", up)]))
    c = RawClient(p.listener_address("main"))
    c.send(H2C)
    r = c.read_response(head=True)
    assert r.status == 101 and r.header("upgrade") == "h2c"  # the proxy's, not the app's
    c.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")  # preface, SETTINGS
    deadline = time.monotonic() + 20
    while not up.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    seen = up.requests[-1]
    assert seen["path"] == "/ws"
    assert "upgrade" not in seen["headers"] and "http2-settings" not in seen["headers"]
    c.close()


def test_h2c_with_a_body_forwards_the_body_and_keeps_parsing(harness: Harness) -> None:
    up = harness.upstream("app")
    p = harness.proxy(config([route(("c", 100))], [cluster("c", up)]))
    c = RawClient(p.listener_address("main"))
    c.send(b"POST /x HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade, HTTP2-Settings\r\n"
           b"Upgrade: h2c\r\nHTTP2-Settings: AAMA\r\nContent-Length: 5\r\n\r\nhello"
           + get("/next"))
    assert c.read_response().status == 200
    assert c.read_response().status == 200
    assert [(r["path"], r["body_len"]) for r in up.requests] == [("/x", 5), ("/next", 0)]
    c.close()


@pytest.mark.parametrize("kind", [b"foo", b"TLS/1.2", b"websocketx"])
def test_other_upgrades_are_refused_and_never_reach_the_app(
    harness: Harness, kind: bytes
) -> None:
    up = harness.upstream("app")
    p = harness.proxy(config([route(("c", 100))], [cluster("c", up)]))
    out = _raw(p, b"GET /ws HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade\r\nUpgrade: " + kind
               + b"\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: svc\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 403")
    assert out.count(b"HTTP/1.1") == 1  # the connection closed; nothing after was served
    assert up.requests == []


def test_connect_is_refused(harness: Harness) -> None:
    up = harness.upstream("app")
    p = harness.proxy(config([route(("c", 100))], [cluster("c", up)]))
    out = _raw(p, b"CONNECT 10.0.0.1:22 HTTP/1.1\r\nHost: 10.0.0.1:22\r\n\r\nSSH-2.0-x\r\n")
    assert out.startswith(b"HTTP/1.1 403")
    assert up.requests == []


def test_the_upgrade_types_setting_adds_a_tunnelled_type(harness: Harness) -> None:
    up = harness.upstream("app")
    cfg = config([route(("c", 100))], [cluster("c", up)])
    listener = types.Listener(name="main", kind="outbound", route_table="rt",
                              upgrade_types=("websocket", "foo"))
    import msgspec

    p = harness.proxy(msgspec.structs.replace(cfg, listeners=(listener,)))
    s = socket.create_connection(p.listener_address("main"), timeout=10)
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    assert head.startswith(b"HTTP/1.1 101")
    s.sendall(b"ping")
    assert s.recv(4096) == b"echo:ping"
    s.close()


# ------------------------------------------------------------------ the gateway edge


def _gateway(harness: Harness, up) -> object:
    return harness.proxy(config([route(("c", 100))], [cluster("c", up)], kind="gateway"))


def test_gateway_appends_the_peer_to_x_forwarded_for(harness: Harness) -> None:
    up = harness.upstream("app")
    p = _gateway(harness, up)
    assert _one(p, get("/", extra="X-Forwarded-For: 10.9.9.9\r\n")).status == 200
    assert up.requests[-1]["headers"]["x-forwarded-for"] == "10.9.9.9,127.0.0.1"
    assert _one(p, get("/")).status == 200
    assert up.requests[-1]["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert up.requests[-1]["raw_head"].lower().count("x-forwarded-for") == 1


def test_gateway_makes_a_new_request_id_for_an_outside_request(harness: Harness) -> None:
    up = harness.upstream("app")
    p = _gateway(harness, up)
    chosen = "00000000-0000-4000-8000-000000000001"
    assert _one(p, get("/", extra=f"x-request-id: {chosen}\r\n")).status == 200
    rid = up.requests[-1]["headers"]["x-request-id"]
    assert rid != chosen and len(rid) == 36
    assert up.requests[-1]["raw_head"].lower().count("x-request-id") == 1


def test_sidecars_keep_the_request_id_and_add_no_forwarded_for(harness: Harness) -> None:
    up = harness.upstream("app")
    p = harness.proxy(config([route(("c", 100))], [cluster("c", up)]))
    chosen = "00000000-0000-4000-8000-000000000002"
    assert _one(p, get("/", extra=f"x-request-id: {chosen}\r\n")).status == 200
    assert up.requests[-1]["headers"]["x-request-id"] == chosen
    assert "x-forwarded-for" not in up.requests[-1]["headers"]


# ------------------------------------------------------------------ path normalization


def _normalizing(harness: Harness, up, mode: str, authz: types.Authz | None = None):
    return harness.proxy(config([route(("c", 100))], [cluster("c", up)], kind="inbound",
                                mesh=types.Mesh(path_normalization=mode),
                                authz=authz or types.Authz()))


@pytest.mark.parametrize(
    "target",
    ["/public/../admin", "/%61dmin/users", "/public/..%2fadmin", "/public\\..\\admin",
     "/./admin", "/public/%2e%2e/admin"],
)
def test_the_default_normalization_stops_paths_around_a_deny(
    harness: Harness, target: str
) -> None:
    up = harness.upstream("app")
    p = harness.proxy(config([route(("c", 100))], [cluster("c", up)], kind="inbound",
                             authz=_deny(paths=("/admin*",))))
    if "%2f" in target:  # BASE keeps an escaped slash: the app gets it escaped, not /admin
        assert _one(p, get(target)).status == 200
        assert up.requests[-1]["path"] == "/public/..%2fadmin"
        return
    assert _one(p, get(target)).status == 403
    assert up.requests == []


def test_the_app_receives_the_normalized_path(harness: Harness) -> None:
    up = harness.upstream("app")
    p = _normalizing(harness, up, "BASE")
    assert _one(p, get("/a/./b/../c%7e?x=/../y")).status == 200
    assert up.requests[-1]["path"] == "/a/c~?x=/../y"


@pytest.mark.parametrize(
    ("mode", "target", "forwarded"),
    [
        ("NONE", "/a/../b", "/a/../b"),
        ("BASE", "//a//b", "//a//b"),
        ("MERGE_SLASHES", "//a//b", "/a/b"),
        ("MERGE_SLASHES", "/a%2F%2Fb", "/a%2F%2Fb"),
        ("DECODE_AND_MERGE_SLASHES", "/a%2F%2Fb%5cc", "/a/b/c"),
    ],
)
def test_each_mode_forwards_what_istio_documents(
    harness: Harness, mode: str, target: str, forwarded: str
) -> None:
    up = harness.upstream("app")
    p = _normalizing(harness, up, mode)
    assert _one(p, get(target)).status == 200
    assert up.requests[-1]["path"] == forwarded


def test_merge_slashes_stops_a_doubled_slash_around_a_deny(harness: Harness) -> None:
    up = harness.upstream("app")
    deny = _deny(paths=("/admin*",))
    base = _normalizing(harness, up, "BASE", deny)
    merged = _normalizing(harness, up, "DECODE_AND_MERGE_SLASHES", deny)
    assert _one(merged, get("//admin")).status == 403
    assert _one(merged, get("/public%2F..%2Fadmin")).status == 403
    assert up.requests == []
    assert _one(base, get("//admin")).status == 200  # BASE alone: as Istio documents


def test_an_escaped_nul_is_a_bad_request(harness: Harness) -> None:
    up = harness.upstream("app")
    p = _normalizing(harness, up, "BASE")
    assert _raw(p, get("/xyz/.%00../abc")).startswith(b"HTTP/1.1 400")
    assert up.requests == []
