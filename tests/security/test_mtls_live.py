"""mTLS through live sidecars: seed 09 (STRICT) and seed 10 (RBAC) between two ProxyServers.

app → client sidecar (outbound, ISTIO_MUTUAL) → server sidecar (inbound, STRICT) → demo app.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.security.authz_cases import SEED_10
from tests.security.live_mesh import (
    SERVER_ID,
    SERVER_NODE,
    http_request,
    inbound_config,
    outbound_config,
    running_app,
    start_proxy,
)
from tests.security.sec_resources import FakeWorld, Issue, ap
from tollway.control.ca import CertificateAuthority
from tollway.control.translate import security
from tollway.proxy import tls

CLIENT_ID = "spiffe://cluster.local/ns/checkout/sa/checkout-service"
Run = Callable[[Any], Any]


@pytest.fixture(scope="module")
def app_port() -> Iterator[int]:
    with running_app() as port:
        yield port


def seed10() -> Any:
    return security.authz_for(FakeWorld(ap("payment-service-authz", SEED_10)), SERVER_NODE)


def test_seed_09_strict_refuses_plaintext_and_accepts_mtls(
    app_port: int, issue: Issue, run: Run, caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        server = await start_proxy(inbound_config(app_port, mode="STRICT"), issue(SERVER_ID))
        port = server.listener_address("inbound|8080")[1]
        try:
            assert await http_request(port) is None  # plaintext: closed, no HTTP status
            reply = await http_request(port, ctx=tls.client_mtls_context(issue(CLIENT_ID)))
            assert reply is not None and reply.status == 200
        finally:
            await server.close()
    with caplog.at_level(logging.WARNING, "tollway.proxy.authn"):
        run(main())
    assert "plaintext refused: PeerAuthentication is STRICT" in caplog.text


def test_sidecar_to_sidecar_mtls_with_seed_10_and_xfcc(app_port: int, issue: Issue,
                                                       run: Run) -> None:
    async def main() -> None:
        server = await start_proxy(inbound_config(app_port, mode="STRICT", authz=seed10()),
                                   issue(SERVER_ID))
        sport = server.listener_address("inbound|8080")[1]
        client = await start_proxy(outbound_config(sport), issue(CLIENT_ID))
        cport = client.listener_address("outbound")[1]
        try:
            ok = await http_request(cport, path="/api/v1/payments/9",
                                    headers={"x-forwarded-client-cert": "URI=spiffe://evil"})
            assert ok is not None and ok.status == 200, ok
            seen = json.loads(ok.body)["headers"]
            xfcc = {k.lower(): v for k, v in seen.items()}["x-forwarded-client-cert"]
            assert f"URI={CLIENT_ID}" in xfcc and f"By={SERVER_ID}" in xfcc
            assert "evil" not in xfcc
            denied = await http_request(cport, method="DELETE", path="/api/v1/payments/9")
            assert denied is not None and denied.status == 403
            assert denied.body == b"RBAC: access denied"
            other = await http_request(cport, path="/admin")
            assert other is not None and other.status == 403
        finally:
            await client.close()
            await server.close()
    run(main())


def test_client_sidecar_refuses_server_with_unexpected_identity(
    app_port: int, issue: Issue, run: Run,
) -> None:
    """ISTIO_MUTUAL verifies the server's SPIFFE ID against the endpoints' identities."""
    async def main() -> None:
        server = await start_proxy(inbound_config(app_port, mode="STRICT"), issue(SERVER_ID))
        sport = server.listener_address("inbound|8080")[1]
        wrong = ("spiffe://cluster.local/ns/payments/sa/someone-else",)
        client = await start_proxy(outbound_config(sport, expected=wrong), issue(CLIENT_ID))
        try:
            reply = await http_request(client.listener_address("outbound")[1], path="/x")
            assert reply is not None and reply.status == 503, reply
        finally:
            await client.close()
            await server.close()
    run(main())


def test_rotation_under_load_has_no_failures_and_no_handshake_burst(
    app_port: int, ca: CertificateAuthority, run: Run,
) -> None:
    """Short-lived certificates renewed by Rotator at half-life during a keep-alive stream."""
    ttl = 1.5

    async def sign(csr: str) -> tuple[str, str]:
        return ca.sign_csr(csr, None, ttl), ca.root_pem

    async def main() -> tuple[int, int, int, dict[str, int]]:
        s_creds = await tls.issue(SERVER_ID, sign)
        c_creds = await tls.issue(CLIENT_ID, sign)
        server = await start_proxy(inbound_config(app_port, mode="STRICT"), s_creds)
        sport = server.listener_address("inbound|8080")[1]
        client = await start_proxy(outbound_config(sport), c_creds)
        rotators = [tls.Rotator(p.tls_state, sign) for p in (server, client)]
        tasks = [asyncio.create_task(r.run()) for r in rotators]
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", client.listener_address("outbound")[1])
        ok = failed = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 4 * ttl
        try:
            while loop.time() < deadline:
                writer.write(b"GET /steady HTTP/1.1\r\nHost: payment-service\r\n\r\n")
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                if head.startswith(b"HTTP/1.1 200"):
                    ok += 1
                else:
                    failed += 1
                await asyncio.sleep(0.002)
        finally:
            writer.close()
            for t in tasks:
                t.cancel()
            gate_counts = next(iter(server.bound.values())).gate.statistics()
            rotations = min(p.tls_state.rotations for p in (server, client))
            await client.close()
            await server.close()
        return ok, failed, rotations, gate_counts

    ok, failed, rotations, counts = run(main())
    assert failed == 0 and ok > 50
    assert rotations >= 3
    # one pooled upstream connection carried the whole stream: rotation forced no handshakes
    assert counts.get("mtls", 0) <= 2, counts
