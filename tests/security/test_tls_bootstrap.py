"""proxy/tls.bootstrap and Rotator against a real HTTP `/v1/ca/sign` endpoint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests import creds
from tollway.control import ca as camod
from tollway.control.ca import CertificateAuthority
from tollway.proxy import tls
from tollway.snapshot import types

SID = "spiffe://cluster.local/ns/payments/sa/payment-service"


NODES = {"payment-service-0": SID}
TOKEN = creds.for_node(types.Node(name="payment-service-0", namespace="payments",
                                  service_account="payment-service"))


async def ca_server(ca: CertificateAuthority, ttl: float) -> tuple[web.AppRunner, str]:
    """The control plane's route, as CONTROL mounts it (`make_app(routes=...)`)."""
    app = web.Application(middlewares=[creds.guard().middleware])
    app.add_routes(camod.routes(ca, lambda node, _caller: NODES.get(node), ttl))
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
            state, rotator = await tls.bootstrap(url, SID, "payment-service-0", TOKEN)
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
            await tls.issue(SID, tls.http_signer(url, "stranger", token=TOKEN))
        except OSError as exc:
            unknown = str(exc)
        try:
            await tls.issue("spiffe://cluster.local/ns/a/sa/b",
                            tls.http_signer(url, "payment-service-0", token=TOKEN))
        except OSError as exc:
            impostor = str(exc)
        finally:
            await runner.cleanup()
        return unknown + "|" + impostor
    unknown, impostor = run(main()).split("|")
    assert "CA answered 403" in unknown and "not registered" in unknown
    assert "CA answered 400" in impostor and "asks for" in impostor


def test_rotator_keeps_current_certificate_while_the_ca_is_down(
    ca: CertificateAuthority, run: Callable[[Any], Any],
) -> None:
    from tollway.kit.backoff import Backoff

    calls = 0

    async def flaky(csr: str) -> tuple[str, str]:
        nonlocal calls
        calls += 1
        if calls <= 3:
            raise OSError("control plane unreachable")
        return ca.sign_csr(csr, None, 3600.0), ca.root_pem

    async def main() -> tls.Rotator:
        import asyncio

        key, csr = tls.new_key_and_csr(SID)
        state = tls.TlsState(tls.Credentials.from_pem(ca.sign_csr(csr, None, 3600.0), key,
                                                      ca.root_pem))
        rotator = tls.Rotator(state, flaky, ratio=0.0,
                              backoff=Backoff(base=0.01, cap=0.02, jitter=False))
        task = asyncio.create_task(rotator.run())
        while state.rotations == 0:
            await asyncio.sleep(0.01)
        task.cancel()
        return rotator
    rotator = run(main())
    assert rotator.failures == 3 and rotator.state.rotations >= 1
