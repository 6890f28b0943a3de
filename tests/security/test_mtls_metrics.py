"""Istio's peer labels through live sidecars over real mTLS, read from the scraped metrics.

app -> client sidecar (outbound, ISTIO_MUTUAL) -> server sidecar (inbound, PERMISSIVE) ->
demo app; plus a plaintext client and an HTTP/2 mTLS client with another identity straight
to the server sidecar. The server (reporter="destination") must name each connection's
peer: `connection_security_policy="mutual_tls"` and `source_principal` the client
certificate's URI SAN over mTLS, `none` / `unknown` in plaintext; the client
(reporter="source") names the server's identity in `destination_principal`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.security.live_mesh import (
    CLIENT_NODE,
    SERVER_ID,
    http_request,
    inbound_config,
    outbound_config,
    running_app,
)
from tollway.proxy import tls
from tollway.proxy.main import ProxyServer
from tollway.snapshot import types

CLIENT_ID = "spiffe://cluster.local/ns/checkout/sa/checkout-service"
OTHER_ID = "spiffe://cluster.local/ns/batch/sa/nightly-report"
Run = Callable[[Any], Any]
Issue = Callable[..., tls.Credentials]


@pytest.fixture(scope="module")
def app_port() -> Iterator[int]:
    with running_app() as port:
        yield port


def _server_config(app_port: int) -> types.ProxyConfig:
    """The server sidecar, whose snapshot also knows the checkout workload's endpoint (a
    cluster it could call): that is where the peer's workload labels come from."""
    checkout = types.Endpoint(address="127.0.0.9", port=8080, namespace="checkout",
                              service_account="checkout-service", workload="checkout-service",
                              labels={"app": "checkout-service", "version": "v2"})
    cluster = types.Cluster(name="outbound|8080||checkout.checkout.svc.cluster.local",
                            service="checkout.checkout.svc.cluster.local", port=8080,
                            endpoints=(checkout,))
    return msgspec.structs.replace(inbound_config(app_port), clusters=(cluster,))


async def start_proxy(config: types.ProxyConfig, creds: tls.Credentials) -> ProxyServer:
    """A sidecar with its admin port (ephemeral), which serves /stats/prometheus."""
    server = ProxyServer(config, tls_state=tls.TlsState(creds))
    await server.start()
    return server


async def _scrape(proxy: ProxyServer) -> list[dict[str, str]]:
    """The label sets of istio_requests_total on the proxy's admin /stats/prometheus."""
    host, port = proxy.admin_address
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://{host}:{port}/stats/prometheus")).text
    return [dict(s.labels) for f in text_string_to_metric_families(text)
            for s in f.samples if s.name == "istio_requests_total"]


async def _until(proxy: ProxyServer, want: int) -> list[dict[str, str]]:
    """Scrape until `want` request series are there (a request is counted as it ends)."""
    rows: list[dict[str, str]] = []
    for _ in range(100):
        rows = await _scrape(proxy)
        if len(rows) >= want:
            break
        await asyncio.sleep(0.05)
    return rows


def _one(rows: list[dict[str, str]], **match: str) -> dict[str, str]:
    found = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (match, rows)
    return found[0]


def test_peer_labels_name_the_mtls_peer_and_plaintext_stays_none(
    app_port: int, issue: Issue, run: Run,
) -> None:
    async def main() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        server = await start_proxy(_server_config(app_port), issue(SERVER_ID))
        server_rows: list[dict[str, str]] = []
        client_rows: list[dict[str, str]] = []
        try:
            sport = server.listener_address("inbound|8080")[1]
            client = await start_proxy(outbound_config(sport), issue(CLIENT_ID))
            try:
                # 1. sidecar to sidecar over mTLS (HTTP/1.1 both legs)
                via = await http_request(client.listener_address("outbound")[1], path="/a")
                assert via is not None and via.status == 200, via
                # 2. plaintext straight to the server sidecar (PERMISSIVE takes it)
                plain = await http_request(sport, path="/b")
                assert plain is not None and plain.status == 200, plain
                # 3. HTTP/2 over mTLS with another identity, two streams on one connection
                ctx = tls.client_mtls_context(issue(OTHER_ID))
                async with httpx.AsyncClient(http2=True, verify=ctx) as h2c:
                    for path in ("/c", "/d"):
                        r = await h2c.get(f"https://127.0.0.1:{sport}{path}",
                                          headers={"host": "payment-service"})
                        assert r.status_code == 200 and r.http_version == "HTTP/2"
                server_rows = await _until(server, 3)
                client_rows = await _until(client, 1)
            finally:
                await client.close()
        finally:
            await server.close()
        return server_rows, client_rows

    server_rows, client_rows = run(main())
    assert {r["reporter"] for r in server_rows} == {"destination"}
    mtls = _one(server_rows, source_principal=CLIENT_ID)
    assert mtls["connection_security_policy"] == "mutual_tls"
    assert (mtls["source_workload"], mtls["source_workload_namespace"], mtls["source_app"],
            mtls["source_version"], mtls["source_canonical_service"],
            mtls["source_canonical_revision"], mtls["source_cluster"]) == (
        CLIENT_NODE.workload, "checkout", "checkout-service", "v2", "checkout-service", "v2",
        "Kubernetes")
    other = _one(server_rows, source_principal=OTHER_ID)
    assert other["connection_security_policy"] == "mutual_tls"
    assert other["source_workload"] == "unknown"  # no endpoint of the snapshot runs as it
    assert other["response_code"] == "200"
    plain = _one(server_rows, connection_security_policy="none")
    assert plain["source_principal"] == "unknown" and plain["source_workload"] == "unknown"
    for row in (mtls, other, plain):  # the destination side is the server either way
        assert row["destination_principal"] == SERVER_ID
        assert row["destination_workload"] == "payment-service"
    out = _one(client_rows, reporter="source")
    assert out["destination_principal"] == SERVER_ID
    assert out["connection_security_policy"] == "unknown"  # Istio: always, for the source
    assert out["source_workload"] == CLIENT_NODE.workload
