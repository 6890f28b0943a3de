"""HTTP/2 from the client side: curl (nghttp2) and the h2 library against a live proxy.

h2c with prior knowledge, `Upgrade: h2c`, ALPN h2 at a TLS gateway and on the mTLS
inbound; many streams on one connection; bodies both ways past the flow-control windows;
gRPC callers get local replies as gRPC statuses. The upstream is the harness's HTTP/1.1
app, which records what it received: what crossed is checked on the wire.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from h2client import H2Client
from proxy_harness import Harness, RawClient, cluster, config, get, route

from tollway.control.ca import CertificateAuthority
from tollway.proxy import tls
from tollway.snapshot import types

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed")


def _proxy(harness: Harness, **kw: object):  # type: ignore[no-untyped-def]
    up = harness.upstream("app")
    return up, harness.proxy(config([route(("c", 100))], [cluster("c", up)], **kw))


def _curl(*args: str) -> subprocess.CompletedProcess[str]:
    assert CURL is not None
    return subprocess.run([CURL, "-sS", *args], capture_output=True, text=True, timeout=60)


@needs_curl
def test_curl_http2_prior_knowledge(harness: Harness) -> None:
    up, p = _proxy(harness)
    host, port = p.listener_address("main")
    r = _curl("--http2-prior-knowledge", "-D", "-", "-H", "x-trace-me: 1",
              f"http://{host}:{port}/hello?x=1")
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.partition("\n\n")
    assert head.startswith("HTTP/2 200")
    seen = json.loads(body)
    assert seen["path"] == "/hello?x=1" and seen["method"] == "GET"
    assert seen["headers"]["x-trace-me"] == "1"
    assert seen["headers"]["host"] == f"{host}:{port}"  # :authority became Host
    assert seen["headers"]["x-request-id"]  # the chain ran: trace headers were set
    assert up.requests[-1]["raw_head"].startswith("GET /hello?x=1 HTTP/1.1")


@needs_curl
def test_curl_http2_upgrade_from_http1(harness: Harness) -> None:
    up, p = _proxy(harness)
    host, port = p.listener_address("main")
    r = _curl("--http2", "-v", f"http://{host}:{port}/up")
    assert r.returncode == 0, r.stderr
    assert "HTTP/1.1 101 Switching Protocols" in r.stderr
    assert "< HTTP/2 200" in r.stderr
    assert json.loads(r.stdout)["path"] == "/up"
    seen = up.requests[-1]["headers"]
    assert "upgrade" not in seen and "http2-settings" not in seen


@needs_curl
def test_curl_uploads_and_downloads_past_every_window(harness: Harness, tmp_path: Path) -> None:
    _, p = _proxy(harness)
    host, port = p.listener_address("main")
    body = tmp_path / "body"
    body.write_bytes(b"y" * 3_000_000)
    r = _curl("--http2-prior-knowledge", "--data-binary", f"@{body}", f"http://{host}:{port}/post")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["body_len"] == 3_000_000
    r = _curl("--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
              f"http://{host}:{port}/big/5000000")
    assert r.stdout == "200 5000000"


def test_many_streams_on_one_connection(harness: Harness) -> None:
    up, p = _proxy(harness)
    c = H2Client(p.listener_address("main"))
    try:
        sids = [c.request(f"/s/{i}") for i in range(40)]
        replies = [c.wait(s) for s in sids]
        assert [r.status for r in replies] == [200] * 40
        assert sorted(json.loads(r.body)["path"] for r in replies) == sorted(
            f"/s/{i}" for i in range(40))
        # bodies of several streams interleave on the connection
        posts = [c.request("/p", method="POST", body=b"z" * 200_000,
                           headers=[("content-length", "200000")]) for _ in range(3)]
        assert [json.loads(c.wait(s).body)["body_len"] for s in posts] == [200_000] * 3
        assert all(r["headers"].get("content-length") == "200000" for r in up.requests[-3:])
    finally:
        c.close()


def test_a_repeated_request_gets_a_header_dict_of_its_own(harness: Harness) -> None:
    """The same request again on one connection: its header block is indexed, the
    decoder's cache answers it, and the checked head kept on that cache entry is shared
    (headers.request_head_cached). Each exchange still changes only its own copy: the
    gateway appends the peer to x-forwarded-for once per request, never onto the last."""
    up = harness.upstream("app")
    p = harness.proxy(config([route(("c", 100))], [cluster("c", up)], kind="gateway"))
    c = H2Client(p.listener_address("main"))
    try:
        for _ in range(4):
            reply = c.get("/same", headers=[("x-forwarded-for", "10.0.0.1")])
            assert reply.status == 200
        seen = [r["headers"].get("x-forwarded-for") for r in up.requests[-4:]]
        assert seen == ["10.0.0.1,127.0.0.1"] * 4
    finally:
        c.close()


def test_a_body_without_length_goes_upstream_chunked(harness: Harness) -> None:
    up, p = _proxy(harness)
    c = H2Client(p.listener_address("main"))
    try:
        reply = c.get("/nolen", method="POST", body=b"q" * 70_000)
        assert reply.status == 200
        assert json.loads(reply.body)["body_len"] == 70_000
        assert up.requests[-1]["headers"]["transfer-encoding"] == "chunked"
    finally:
        c.close()


def test_the_chain_runs_for_streams_no_route_and_grpc_local_replies(harness: Harness) -> None:
    up = harness.upstream("app")
    p = harness.proxy(config([route(("c", 100))], [cluster("c", up)], domains=("known",)))
    c = H2Client(p.listener_address("main"))
    try:
        assert c.get("/", authority="other").status == 404
        assert c.get("/", authority="known").status == 200
        grpc = c.get("/pkg.Svc/Method", method="POST", authority="other", headers=[
            ("content-type", "application/grpc"), ("te", "trailers")])
        # Envoy's local reply to a gRPC caller: HTTP 200, the status in grpc-status
        assert grpc.status == 200
        assert grpc.headers["grpc-status"] == "12"  # 404 -> UNIMPLEMENTED
        assert grpc.headers["content-type"] == "application/grpc"
    finally:
        c.close()
    assert [r["path"] for r in up.requests] == ["/"]


def test_response_headers_lose_hop_by_hop_fields(harness: Harness) -> None:
    _, p = _proxy(harness)
    c = H2Client(p.listener_address("main"))
    try:
        reply = c.get("/hop")
        assert reply.status == 200
        assert "connection" not in reply.headers and "keep-alive" not in reply.headers
        assert reply.headers["x-upstream"] == "app"
        chunked = c.get("/chunked")  # the upstream's chunked body arrives whole, unframed
        assert json.loads(chunked.body)["path"] == "/chunked"
        assert "transfer-encoding" not in chunked.headers
    finally:
        c.close()


def test_an_h2c_upgrade_with_a_body_stays_http1(harness: Harness) -> None:
    up, p = _proxy(harness)
    c = RawClient(p.listener_address("main"))
    c.send(b"POST /x HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade, HTTP2-Settings\r\n"
           b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
           b"Content-Length: 5\r\n\r\nhello" + get("/next"))
    assert c.read_response().status == 200
    assert c.read_response().status == 200
    c.close()
    assert [(r["path"], r["body_len"]) for r in up.requests] == [("/x", 5), ("/next", 0)]


def _self_signed(host: str) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(key, hashes.SHA256()))
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), pem_key


def _gateway(harness: Harness, cert: str, key: str):  # type: ignore[no-untyped-def]
    up = harness.upstream("app")
    base = config([route(("c", 100))], [cluster("c", up)])
    gw = types.Listener(name="main", kind="gateway", address="127.0.0.1", route_table="rt",
                        tls=types.DownstreamTls(mode="SIMPLE", credential=types.TlsCredential(
                            cert_chain=cert, private_key=key)))
    cfg = types.ProxyConfig(version="g", node=base.node, listeners=(gw,),
                            route_tables=base.route_tables, clusters=base.clusters)
    return up, harness.proxy(cfg)


def test_gateway_speaks_h2_by_alpn_and_http1_to_others(harness: Harness, tmp_path: Path) -> None:
    cert, key = _self_signed("shop.example.com")
    _, p = _gateway(harness, cert, key)
    ca = tmp_path / "ca.pem"
    ca.write_text(cert)
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    ctx.check_hostname = False
    c = H2Client(p.listener_address("main"), ctx=ctx)
    try:
        assert c.sock.selected_alpn_protocol() == "h2"
        reply = c.get("/tls", authority="shop.example.com")
        assert reply.status == 200
        seen = json.loads(reply.body)["headers"]
        assert seen["x-forwarded-proto"] == "https"
        assert seen["x-forwarded-for"] == "127.0.0.1"  # the edge filter ran for the stream
    finally:
        c.close()
    if CURL is not None:  # curl --http2 over TLS negotiates h2 by ALPN
        host, port = p.listener_address("main")
        r = _curl("--http2", "--cacert", str(ca), "-o", "/dev/null", "-w", "%{http_version}",
                  "--resolve", f"shop.example.com:{port}:{host}",
                  f"https://shop.example.com:{port}/curl")
        assert r.stdout == "2", r.stderr
        r = _curl("--http1.1", "--cacert", str(ca), "-o", "/dev/null", "-w", "%{http_version}",
                  "--resolve", f"shop.example.com:{port}:{host}",
                  f"https://shop.example.com:{port}/curl")
        assert r.stdout == "1.1", r.stderr


def test_mtls_inbound_speaks_h2_by_alpn_and_istio_h2(harness: Harness) -> None:
    """The inbound of a sidecar under STRICT mTLS: a mesh peer offering `h2` (or Istio's
    `istio-h2`) gets HTTP/2, one offering Istio's HTTP/1.1 names keeps HTTP/1.1."""
    ca = CertificateAuthority.create()

    def creds(spiffe: str) -> tls.Credentials:
        key, csr = tls.new_key_and_csr(spiffe)
        return tls.Credentials.from_pem(ca.sign_csr(csr, spiffe, 3600.0), key, ca.root_pem)

    up = harness.upstream("app")
    node = types.Node(name="srv", workload="srv", namespace="ns", service_account="srv",
                      labels={"app": "srv"})
    listener = types.Listener(name="main", kind="inbound", address="127.0.0.1", port=0,
                              app_address="127.0.0.1", app_port=up.port, service_port=8080)
    cfg = types.ProxyConfig(version="v1", node=node, listeners=(listener,),
                            peer_authn=types.PeerAuthn(mode="STRICT"))
    p = harness.proxy(cfg, tls_state=tls.TlsState(creds("spiffe://cluster.local/ns/ns/sa/srv")))
    client = creds("spiffe://cluster.local/ns/ns/sa/caller")
    for offer, expect in ((["h2"], "h2"), (["istio-h2", "istio"], "istio-h2")):
        ctx = tls.client_mtls_context(client)
        ctx.set_alpn_protocols(offer)
        c = H2Client(p.listener_address("main"), ctx=ctx)
        try:
            assert c.sock.selected_alpn_protocol() == expect
            reply = c.get("/grpc.health.v1.Health/Check", method="POST", headers=[
                ("content-type", "application/grpc")], body=b"\0\0\0\0\0")
            assert reply.status == 200
            seen = json.loads(reply.body)["headers"]
            assert "URI=spiffe://cluster.local/ns/ns/sa/caller" in seen["x-forwarded-client-cert"]
        finally:
            c.close()
    with harness_tls_http1(p, tls.client_mtls_context(client)) as alpn:
        assert alpn == "istio-http/1.1"


class harness_tls_http1:
    """An HTTP/1.1 request over mTLS with our own client ALPN list; yields the ALPN."""

    def __init__(self, p, ctx: ssl.SSLContext) -> None:  # type: ignore[no-untyped-def]
        import socket

        raw = socket.create_connection(p.listener_address("main"), timeout=20)
        self.sock = ctx.wrap_socket(raw)

    def __enter__(self) -> str | None:
        self.sock.sendall(get("/h1", extra="Connection: close\r\n"))
        data = b""
        while piece := self.sock.recv(65536):
            data += piece
        assert data.startswith(b"HTTP/1.1 200")
        return self.sock.selected_alpn_protocol()

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
