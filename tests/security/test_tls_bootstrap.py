"""proxy/tls.bootstrap and Rotator against a real HTTP `/v1/ca/sign` endpoint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from tollway.control.ca import CAError, CertificateAuthority
from tollway.proxy import tls

SID = "spiffe://cluster.local/ns/payments/sa/payment-service"


async def ca_server(ca: CertificateAuthority, ttl: float) -> tuple[web.AppRunner, str]:
    async def sign(request: web.Request) -> web.Response:
        try:
            return web.json_response(ca.sign_request(await request.json(), None, ttl))
        except CAError as exc:
            return web.Response(status=400, text=str(exc))

    app = web.Application()
    app.router.add_post("/v1/ca/sign", sign)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


def test_bootstrap_and_renewal_over_http(ca: CertificateAuthority,
                                         run: Callable[[Any], Any]) -> None:
    async def main() -> tuple[tls.TlsState, str]:
        runner, url = await ca_server(ca, 3600.0)
        try:
            state, rotator = await tls.bootstrap(url, SID, "payment-service-0")
            first = state.creds.cert_chain
            await rotator.renew_once()
            assert state.creds.cert_chain != first
            return state, url
        finally:
            await runner.cleanup()
    state, _ = run(main())
    assert state.creds.spiffe_id == SID and state.rotations == 1
    assert 0 < state.creds.not_after - state.creds.not_before <= 3600 + 60


def test_signer_reports_ca_refusal(ca: CertificateAuthority,
                                   run: Callable[[Any], Any]) -> None:
    async def main() -> str:
        runner, url = await ca_server(ca, 3600.0)
        try:
            await tls.issue("spiffe://elsewhere/ns/a/sa/b", tls.http_signer(url))
        except OSError as exc:
            return str(exc)
        finally:
            await runner.cleanup()
        return ""
    assert "CA answered 400" in run(main())
