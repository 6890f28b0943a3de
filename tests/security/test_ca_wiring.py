"""The CA as the control plane mounts it: identities, the pushed trust bundle, revocation.

`serve.ca_routes(plane, authority)` over real HTTP, with a real ControlPlane: only proxies
in the plane's book get a certificate, and only for their own namespace and service
account; every snapshot carries the root and the revoked serials; a revocation reaches
every proxy as a new version, survives a restart, and cuts a revoked peer's established
connections at the sidecar.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from cryptography import x509
from typer.testing import CliRunner

from tests import creds
from tests.security.live_mesh import inbound_config, start_app, start_proxy
from tests.security.sec_resources import Issue
from tollway.cli.main import app as cli_app
from tollway.control import ca as camod
from tollway.control import serve
from tollway.control.ca import CertificateAuthority
from tollway.control.plane import ControlPlane
from tollway.control.proxies import ProxyEntry
from tollway.control.store import ConfigStore
from tollway.proxy import tls
from tollway.snapshot import types

Run = Callable[[Any], Any]
PAY = types.Node(name="payment-service-0.payments", workload="payment-service",
                 namespace="payments", service_account="payment-service")
PAY_ID = "spiffe://cluster.local/ns/payments/sa/payment-service"


def plane_with(*nodes: types.Node) -> ControlPlane:
    plane = ControlPlane(ConfigStore())
    for node in nodes:
        plane.register(ProxyEntry(node, ports={"outbound": 15001}))
    return plane


async def serving(plane: ControlPlane, authority: CertificateAuthority, ttl: float = 3600.0
                  ) -> tuple[web.AppRunner, str]:
    runner = await serve.serve(
        serve.make_app(plane, guard=creds.guard(),
                       routes=serve.ca_routes(plane, authority, ttl=ttl)),
        "127.0.0.1", 0)
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


def serial_of(creds: tls.Credentials) -> str:
    return format(x509.load_pem_x509_certificate(creds.cert_chain.encode()).serial_number, "x")


# ------------------------------------------------------------------ identities


def test_identity_for_knows_only_registered_proxies() -> None:
    plane = plane_with(PAY)
    assert plane.identity_for(PAY.name) == PAY_ID
    assert plane.identity_for("stranger.default") is None
    plane.unregister(PAY.name)
    assert plane.identity_for(PAY.name) is None


def test_registered_proxy_gets_its_own_identity_and_nothing_else(run: Run) -> None:
    async def main() -> None:
        plane = plane_with(PAY)
        runner, url = await serving(plane, CertificateAuthority.create(), ttl=600.0)
        try:
            got = await tls.obtain(url, PAY, token=creds.for_node(PAY))
            assert got is not None
            state, _rotator = got
            assert state.creds.spiffe_id == PAY_ID
            assert 0 < state.creds.not_after - state.creds.not_before <= 600 + 60
            with pytest.raises(tls.SignRefused) as unknown:  # not in the book: 403
                await tls.issue(PAY_ID, tls.http_signer(url, "stranger.default",
                                                        token=creds.for_node(PAY)))
            assert unknown.value.status == 403
            with pytest.raises(tls.SignRefused) as impostor:  # in the book, asks for more
                await tls.issue("spiffe://cluster.local/ns/checkout/sa/checkout-service",
                                tls.http_signer(url, PAY.name, token=creds.for_node(PAY)))
            assert impostor.value.status == 400
            with pytest.raises(tls.SignRefused) as anonymous:  # no credential: 401
                await tls.issue(PAY_ID, tls.http_signer(url, PAY.name))
            assert anonymous.value.status == 401
            other = types.Node(name="x.checkout", namespace="checkout",
                               service_account="checkout-service")
            with pytest.raises(tls.SignRefused) as stolen:  # another identity's token: 403
                await tls.issue(PAY_ID, tls.http_signer(url, PAY.name,
                                                        token=creds.for_node(other)))
            assert stolen.value.status == 403
        finally:
            await runner.cleanup()
    run(main())


def test_control_plane_without_ca_leaves_the_proxy_without_certificate(run: Run) -> None:
    async def main() -> object:
        plane = plane_with(PAY)
        runner = await serve.serve(serve.make_app(plane, guard=creds.guard()), "127.0.0.1", 0)
        try:
            return await tls.obtain(f"http://127.0.0.1:{runner.addresses[0][1]}", PAY,
                                    token=creds.for_node(PAY))
        finally:
            await runner.cleanup()
    assert run(main()) is None


def test_obtain_waits_for_registration(run: Run) -> None:
    """A VM proxy's CSR may arrive before its registration: retried, then signed."""
    from tollway.kit.backoff import Backoff

    async def main() -> str:
        plane = plane_with()
        runner, url = await serving(plane, CertificateAuthority.create())
        try:
            task = asyncio.create_task(
                tls.obtain(url, PAY, backoff=Backoff(base=0.01, cap=0.05),
                           token=creds.for_node(PAY)))
            await asyncio.sleep(0.2)
            assert not task.done()  # 403 so far: waiting, not giving up
            plane.register(ProxyEntry(PAY))
            got = await asyncio.wait_for(task, 5)
            assert got is not None
            return got[0].creds.spiffe_id
        finally:
            await runner.cleanup()
    assert run(main()) == PAY_ID


# ------------------------------------------------------------------ the pushed trust bundle


def test_every_snapshot_carries_the_root_and_a_revocation_changes_the_version(
        run: Run, tmp_path: Path) -> None:
    async def main() -> None:
        authority = CertificateAuthority.load_or_create(tmp_path)
        plane = plane_with(PAY)
        runner, url = await serving(plane, authority)
        try:
            plane.recompute()
            first = plane.configs[PAY.name]
            assert first.trust.root_certificates == authority.root_pem
            assert first.trust.revoked_serials == ()
            plane.recompute()  # nothing changed: same version, nothing to push
            assert plane.configs[PAY.name].version == first.version
            async with httpx.AsyncClient(headers=creds.admin_headers()) as client:
                r = await client.post(url + "/v1/ca/revoke", json={"serial": "0xAB:CD"})
                assert r.status_code == 200, r.text
                assert r.json()["revoked_serials"] == ["abcd"]
                bad = await client.post(url + "/v1/ca/revoke", json={"serial": "xyz"})
                assert bad.status_code == 400 and "not a hexadecimal number" in bad.text
            plane.recompute()
            second = plane.configs[PAY.name]
            assert second.trust.revoked_serials == ("abcd",)
            assert second.version != first.version
        finally:
            await runner.cleanup()
    run(main())
    # a restarted control plane still refuses the revoked certificate
    assert CertificateAuthority.load_or_create(tmp_path).revoked_serials() == ("abcd",)


def test_revocation_by_certificate(ca: CertificateAuthority, issue: Issue) -> None:
    creds = issue(PAY_ID)
    serial = ca.revoke(creds.cert_chain)
    assert format(serial, "x") == serial_of(creds)
    with pytest.raises(camod.CAError, match="not a PEM certificate"):
        ca.revoke("garbage")


@pytest.mark.parametrize("ttl", [0.5, 91 * 24 * 3600.0])
def test_ttl_outside_the_cas_range_is_refused_up_front(ttl: float) -> None:
    with pytest.raises(camod.CAError, match="outside"):
        camod.routes(CertificateAuthority.create(), lambda _n, _c: None, ttl)


@pytest.mark.parametrize(("value", "said"), [("0.5s", "outside 1s..90 days"),
                                             ("soon", "is not a duration")])
def test_up_cert_ttl_flag_is_checked_in_one_sentence(tmp_path: Path, value: str,
                                                     said: str) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    result = CliRunner().invoke(cli_app, ["up", str(tmp_path), "--api-port", str(free),
                                          "--cert-ttl", value])
    assert result.exit_code == 2
    assert "--cert-ttl: " in result.output and said in result.output
    assert "Traceback" not in result.output


# ------------------------------------------------------------------ revocation at the sidecar


async def _keepalive_get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
    writer.write(b"GET /x HTTP/1.1\r\nHost: payment-service\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    await reader.readexactly(length)
    return int(head.split()[1])


def test_revocation_pushed_to_a_sidecar_cuts_and_refuses_the_peer(
        run: Run, issue: Issue, ca: CertificateAuthority) -> None:
    port, app = start_app()
    client_creds = issue("spiffe://cluster.local/ns/checkout/sa/checkout-service")
    bystander = tls.client_mtls_context(issue("spiffe://cluster.local/ns/web/sa/web"))

    async def main() -> None:
        config = inbound_config(port, mode="STRICT")
        server = await start_proxy(config, issue(PAY_ID))
        inbound = server.listener_address("inbound|8080")[1]
        ctx: ssl.SSLContext = tls.client_mtls_context(client_creds)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", inbound, ssl=ctx)
            assert await _keepalive_get(reader, writer) == 200
            trust = types.Trust(root_certificates=ca.root_pem,
                                revoked_serials=(serial_of(client_creds),))
            server.apply(types.ProxyConfig(**{**{f: getattr(config, f) for f in
                                                 config.__struct_fields__},
                                              "version": "v2", "trust": trust}))
            assert await asyncio.wait_for(reader.read(), 5) == b""  # cut, not served on
            writer.close()
            try:  # a new handshake is refused right after it
                r2, w2 = await asyncio.open_connection("127.0.0.1", inbound, ssl=ctx)
                w2.write(b"GET /x HTTP/1.1\r\nHost: p\r\n\r\n")
                assert await asyncio.wait_for(r2.read(), 5) == b""
                w2.close()
            except (ConnectionError, ssl.SSLError):
                pass
            r3, w3 = await asyncio.open_connection("127.0.0.1", inbound, ssl=bystander)
            assert await _keepalive_get(r3, w3) == 200  # everyone else is unaffected
            w3.close()
        finally:
            await server.close()
    try:
        run(main())
    finally:
        app.terminate()
        app.wait(10)
