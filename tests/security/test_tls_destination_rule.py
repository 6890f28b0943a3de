"""DestinationRule tls on the client side: SIMPLE and MUTUAL against a TLS server."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tests.security.sec_resources import Issue
from tollway.control import ca as camod
from tollway.control.ca import CertificateAuthority
from tollway.proxy import tls
from tollway.snapshot import types

DNS = "pay.example.com"


def dns_cert(ca: CertificateAuthority, name: str) -> tuple[str, str]:
    key = camod.new_key()
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([]))
            .issuer_name(ca.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=True)
            .sign(ca.key, hashes.SHA256()))
    return camod.cert_pem(cert), camod.key_pem(key)


def cluster(**tls_fields: Any) -> types.Cluster:
    return types.Cluster(name="outbound|443||pay.example.com", service=DNS, port=443,
                         tls=types.UpstreamTls(**tls_fields))


async def handshake(port: int, ctx: ssl.SSLContext, sni: str) -> bool:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname=sni), 5)
        writer.write(b"x")
        await writer.drain()
        ok = await asyncio.wait_for(reader.read(1), 5) == b"x"
        writer.close()
        return ok
    except (OSError, ssl.SSLError):
        return False


class Echo(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.t = transport

    def data_received(self, data: bytes) -> None:
        self.t.write(data)


@pytest.mark.parametrize(("fields", "sni", "ok"), [
    ({"mode": "SIMPLE"}, DNS, True),
    ({"mode": "SIMPLE"}, "other.example.com", False),
    ({"mode": "SIMPLE", "subject_alt_names": (DNS,)}, "ignored.example.com", True),
    ({"mode": "SIMPLE", "subject_alt_names": ("nope.example.com",)}, DNS, False),
    ({"mode": "SIMPLE", "ca_certificates": None}, DNS, False),  # system roots: unknown CA
    ({"mode": "SIMPLE", "ca_certificates": None, "insecure_skip_verify": True}, DNS, True),
])
def test_destination_rule_simple(ca: CertificateAuthority, run: Callable[[Any], Any],
                                 fields: dict[str, Any], sni: str, ok: bool) -> None:
    chain, key = dns_cert(ca, DNS)
    server = tls.gateway_context(types.DownstreamTls(
        mode="SIMPLE", credential=types.TlsCredential(cert_chain=chain, private_key=key)))
    fields = {"ca_certificates": ca.root_pem, **fields}
    ctx = tls.client_context(cluster(**fields), None)
    assert server is not None and ctx is not None

    async def main() -> bool:
        srv = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", 0, ssl=server)
        try:
            return await handshake(srv.sockets[0].getsockname()[1], ctx, sni)
        finally:
            srv.close()
    assert run(main()) is ok


@pytest.mark.parametrize("with_client_cert", [True, False])
def test_destination_rule_mutual(ca: CertificateAuthority, issue: Issue,
                                 run: Callable[[Any], Any], with_client_cert: bool) -> None:
    chain, key = dns_cert(ca, DNS)
    server = tls.gateway_context(types.DownstreamTls(mode="MUTUAL", credential=types.TlsCredential(
        cert_chain=chain, private_key=key, ca_certificates=ca.root_pem)))
    client = issue("spiffe://cluster.local/ns/web/sa/web")
    extra = ({"client_certificate": client.cert_chain, "private_key": client.private_key}
             if with_client_cert else {})
    ctx = tls.client_context(cluster(mode="MUTUAL", ca_certificates=ca.root_pem, **extra), None)
    assert server is not None and ctx is not None

    async def main() -> bool:
        srv = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", 0, ssl=server)
        try:
            return await handshake(srv.sockets[0].getsockname()[1], ctx, DNS)
        finally:
            srv.close()
    assert run(main()) is with_client_cert


def test_destination_rule_disable_is_plaintext() -> None:
    assert tls.client_context(cluster(mode="DISABLE"), None) is None


def test_istio_mutual_without_credentials_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no workload certificate"):
        tls.client_context(cluster(mode="ISTIO_MUTUAL"), None)
