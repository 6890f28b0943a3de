"""chain/authn.InboundGate on real loopback sockets with real TLS: who gets in, and the log.

A tiny echo protocol stands in for the listener: it records the principal it saw and
echoes bytes, so each test can tell whether a connection reached "the app" at all.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

import pytest

from tests.security.sec_resources import Issue
from tollway.proxy import tls
from tollway.proxy.chain import authn as gate_mod
from tollway.snapshot import types

SERVER = "spiffe://cluster.local/ns/payments/sa/payment-service"
CLIENT = "spiffe://cluster.local/ns/checkout/sa/checkout-service"


class Echo(asyncio.Protocol):
    seen: list[str | None]

    def __init__(self, seen: list[str | None]) -> None:
        self.seen = seen
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.seen.append(tls.peer_principal(transport.get_extra_info("ssl_object")))

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class Server:
    def __init__(self, gate: gate_mod.InboundGate) -> None:
        self.gate = gate
        self.seen: list[str | None] = []
        self.listen = socket.socket()
        self.listen.bind(("127.0.0.1", 0))
        self.listen.listen(64)
        self.port = self.listen.getsockname()[1]
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Server:
        self.task = asyncio.get_running_loop().create_task(
            gate_mod.serve(self.listen, self.gate, lambda: Echo(self.seen)))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        self.listen.close()


def gate(mode: str, creds: tls.Credentials | None, **kw: Any) -> gate_mod.InboundGate:
    state = tls.TlsState(creds) if creds else None
    return gate_mod.InboundGate(types.PeerAuthn(mode=mode), state,  # type: ignore[arg-type]
                                **kw)


async def roundtrip(port: int, ctx: ssl.SSLContext | None, payload: bytes = b"ping"
                    ) -> bytes:
    """Send, read the echo; b"" (or an error) when the server refused us."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=ctx), 5)
        writer.write(payload)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(100), 5)
        writer.close()
        return data
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
        return b""


async def raw_send(port: int, payload: bytes, wait: float = 5) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(100), wait)
    except OSError:
        return b""
    finally:
        writer.close()


def client_ctx(creds: tls.Credentials) -> ssl.SSLContext:
    return tls.client_mtls_context(creds)


def no_cert_ctx(roots: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cadata=roots)
    return ctx


Runner = Callable[[Any], Any]


def test_gate_strict_accepts_mtls_and_learns_the_caller(run: Runner, issue: Issue) -> None:
    async def main() -> None:
        async with Server(gate("STRICT", issue(SERVER))) as srv:
            assert await roundtrip(srv.port, client_ctx(issue(CLIENT))) == b"ping"
            assert srv.seen == [CLIENT.removeprefix("spiffe://")]
    run(main())


def test_gate_strict_refuses_plaintext(run: Runner, issue: Issue,
                                       caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with Server(gate("STRICT", issue(SERVER))) as srv:
            assert await raw_send(srv.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == b""
            assert srv.seen == []
    with caplog.at_level(logging.WARNING, "tollway.proxy.authn"):
        run(main())
    assert "plaintext refused: PeerAuthentication is STRICT" in caplog.text


@pytest.mark.parametrize(("case", "reason"), [
    ("no-cert", "client presented no certificate"),
    ("other-ca", "not signed by the mesh CA"),
    ("expired", "client certificate has expired"),
])
def test_gate_refuses_bad_client_certificates(
    run: Runner, issue: Issue, expired: Callable[[str], tls.Credentials], other_ca: Any,
    caplog: pytest.LogCaptureFixture, case: str, reason: str,
) -> None:
    server = issue(SERVER)
    ctx = {
        "no-cert": lambda: no_cert_ctx(server.roots),
        "other-ca": lambda: client_ctx(_with_roots(issue(CLIENT, by=other_ca), server.roots)),
        "expired": lambda: client_ctx(expired(CLIENT)),
    }[case]()

    async def main() -> None:
        async with Server(gate("STRICT", server)) as srv:
            assert await roundtrip(srv.port, ctx) == b""
            await asyncio.sleep(0.05)
            assert srv.seen == []
    with caplog.at_level(logging.WARNING, "tollway.proxy.authn"):
        run(main())
    assert reason in caplog.text, caplog.text


def _with_roots(creds: tls.Credentials, roots: str) -> tls.Credentials:
    """The client trusts our root (so only the server's check can fail)."""
    return tls.Credentials(creds.cert_chain, creds.private_key, roots, creds.spiffe_id,
                           creds.not_before, creds.not_after)


@pytest.mark.parametrize(("payload", "reason"), [
    (b"\x16\x03\x01\x00\x05hello-garbage-garbage", "not a TLS ClientHello"),
    (b"\x16\x03\x01", "stalled peer"),
])
def test_gate_survives_garbage_and_stalls(run: Runner, issue: Issue, payload: bytes,
                                          reason: str, caplog: pytest.LogCaptureFixture
                                          ) -> None:
    async def main() -> None:
        async with Server(gate("STRICT", issue(SERVER), handshake_timeout=1.0)) as srv:
            assert await raw_send(srv.port, payload) == b""
            # and the gate still serves good peers afterwards
            assert await roundtrip(srv.port, client_ctx(issue(CLIENT))) == b"ping"
    with caplog.at_level(logging.WARNING, "tollway.proxy.authn"):
        run(main())
    assert reason in caplog.text, caplog.text


def test_gate_permissive_takes_both_on_one_port(run: Runner, issue: Issue) -> None:
    async def main() -> None:
        async with Server(gate("PERMISSIVE", issue(SERVER))) as srv:
            assert await raw_send(srv.port, b"plain") == b"plain"
            assert await roundtrip(srv.port, client_ctx(issue(CLIENT))) == b"ping"
            assert srv.seen == [None, CLIENT.removeprefix("spiffe://")]
    run(main())


def test_gate_disable_refuses_tls(run: Runner, issue: Issue,
                                  caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with Server(gate("DISABLE", issue(SERVER))) as srv:
            assert await roundtrip(srv.port, client_ctx(issue(CLIENT))) == b""
            assert await raw_send(srv.port, b"plain") == b"plain"
    with caplog.at_level(logging.WARNING, "tollway.proxy.authn"):
        run(main())
    assert "TLS refused: PeerAuthentication is DISABLE" in caplog.text


def test_gate_port_level_mode_overrides(run: Runner, issue: Issue) -> None:
    pa = types.PeerAuthn(mode="STRICT", port_modes={9000: "PERMISSIVE"})

    async def main() -> None:
        g = gate_mod.InboundGate(pa, tls.TlsState(issue(SERVER)), workload_port=9000)
        async with Server(g) as srv:
            assert await raw_send(srv.port, b"plain") == b"plain"
    run(main())


def test_gate_refuses_revoked_certificate(run: Runner, issue: Issue, ca: Any,
                                          caplog: pytest.LogCaptureFixture) -> None:
    client = issue(CLIENT)
    serial = format(ca.revoke(client.cert_chain), "x")

    async def main() -> None:
        async with Server(gate("STRICT", issue(SERVER), revoked=[serial])) as srv:
            assert await roundtrip(srv.port, client_ctx(client)) == b""
    with caplog.at_level(logging.WARNING, "tollway.proxy.authn"):
        run(main())
    assert "is revoked" in caplog.text


def test_client_checks_server_spiffe_id(run: Runner, issue: Issue) -> None:
    """ISTIO_MUTUAL: the client refuses a server that is not the identity it expects."""
    async def main() -> tuple[str | None, str | None]:
        async with Server(gate("STRICT", issue(SERVER))) as srv:
            _, writer = await asyncio.open_connection("127.0.0.1", srv.port,
                                                      ssl=client_ctx(issue(CLIENT)))
            obj = writer.get_extra_info("ssl_object")
            good = tls.check_peer(obj, (SERVER,))
            bad = tls.check_peer(obj, ("spiffe://cluster.local/ns/x/sa/impostor",))
            writer.close()
            return good, bad
    good, bad = run(main())
    assert good is None
    assert bad is not None and "is not one of" in bad and SERVER in bad


def test_rotation_keeps_old_connections_and_new_ones_get_the_new_cert(
    run: Runner, issue: Issue,
) -> None:
    state = tls.TlsState(issue(SERVER, 60.0))
    g = gate_mod.InboundGate(types.PeerAuthn(mode="STRICT"), state)

    async def serial_of(writer: asyncio.StreamWriter) -> str:
        return str(writer.get_extra_info("ssl_object").getpeercert()["serialNumber"])

    async def main() -> None:
        async with Server(g) as srv:
            ctx = client_ctx(issue(CLIENT))
            r1, w1 = await asyncio.open_connection("127.0.0.1", srv.port, ssl=ctx)
            before = await serial_of(w1)
            state.rotate(issue(SERVER, 60.0))
            w1.write(b"still")
            assert await r1.read(10) == b"still"  # the old connection lives on
            _, w2 = await asyncio.open_connection("127.0.0.1", srv.port, ssl=ctx)
            assert await serial_of(w2) != before
            w1.close()
            w2.close()
    run(main())
    assert state.rotations == 1


def test_client_for_refuses_unexpected_server_in_the_handshake(run: Runner,
                                                               issue: Issue) -> None:
    state = tls.TlsState(issue(CLIENT))

    async def main() -> tuple[bytes, bytes]:
        async with Server(gate("STRICT", issue(SERVER))) as srv:
            good = await roundtrip(srv.port, state.client_for((SERVER,)))
            bad = await roundtrip(srv.port,
                                  state.client_for(("spiffe://cluster.local/ns/x/sa/y",)))
            return good, bad
    assert run(main()) == (b"ping", b"")


@pytest.mark.parametrize("mode", ["SIMPLE", "MUTUAL"])
def test_gateway_context_terminates_tls_from_a_secret(run: Runner, issue: Issue, mode: str
                                                      ) -> None:
    """Gateway SIMPLE serves its certificate; MUTUAL also requires a client certificate."""
    server = issue(SERVER)
    cred = types.TlsCredential(cert_chain=server.cert_chain, private_key=server.private_key,
                               ca_certificates=server.roots if mode == "MUTUAL" else None)
    ctx = tls.gateway_context(types.DownstreamTls(mode=mode, credential=cred))  # type: ignore[arg-type]
    assert ctx is not None

    async def main() -> tuple[bytes, bytes]:
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(lambda: Echo([]), "127.0.0.1", 0, ssl=ctx)
        port = srv.sockets[0].getsockname()[1]
        try:
            anonymous = await roundtrip(port, no_cert_ctx(server.roots))
            with_cert = await roundtrip(port, client_ctx(issue(CLIENT)))
        finally:
            srv.close()
        return anonymous, with_cert
    anonymous, with_cert = run(main())
    assert with_cert == b"ping"
    assert anonymous == (b"ping" if mode == "SIMPLE" else b"")


def test_gate_survives_random_handshake_garbage(run: Runner, issue: Issue,
                                                caplog: pytest.LogCaptureFixture) -> None:
    import random

    rng = random.Random(10)
    payloads = [b"\x16\x03" + bytes([rng.randrange(5)]) + rng.randbytes(rng.randrange(1, 600))
                for _ in range(25)]

    async def main() -> bytes:
        async with Server(gate("STRICT", issue(SERVER), handshake_timeout=1.5)) as srv:
            await asyncio.gather(*(raw_send(srv.port, p, wait=4) for p in payloads))
            return await roundtrip(srv.port, client_ctx(issue(CLIENT)))
    with caplog.at_level(logging.WARNING, "tollway.proxy.authn"):
        assert run(main()) == b"ping"
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == len(payloads)
