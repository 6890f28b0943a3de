"""A live sidecar (tollway.proxy.main.ProxyServer) in front of the demo app, and a client.

Snapshots are written by hand here (not through `translate.build`) so these tests judge
the zero-trust parts through PROXY-IO's real listener, chain and upstream, with real TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

from tollway.proxy import tls
from tollway.proxy.main import ProxyServer
from tollway.snapshot import types

SERVER_SA = "payment-service"
SERVER_ID = f"spiffe://cluster.local/ns/payments/sa/{SERVER_SA}"
SERVER_NODE = types.Node(name="payment-service-0.payments", workload="payment-service",
                         namespace="payments", service_account=SERVER_SA,
                         labels={"app": "payment-service", "version": "v1"})
CLIENT_NODE = types.Node(name="checkout-0.checkout", workload="checkout-service",
                         namespace="checkout", service_account="checkout-service",
                         labels={"app": "checkout-service"})
SERVICE_PORT = 8080
PAY_HOST = "payment-service.payments.svc.cluster.local"
PAY_CLUSTER = f"outbound|{SERVICE_PORT}||{PAY_HOST}"


def start_app(attempts: int = 3) -> tuple[int, subprocess.Popen[bytes]]:
    """The demo app on a free port; retried if another process took the port first."""
    import socket

    for _ in range(attempts):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        proc = subprocess.Popen([sys.executable, "-m", "tollway.demo.app"],
                                env=dict(os.environ, PORT=str(port)),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60  # a loaded 2-core machine imports aiohttp slowly
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return port, proc
            except OSError:
                time.sleep(0.05)
        proc.kill()
        proc.wait()
    raise TimeoutError("demo app did not start")


@contextlib.contextmanager
def running_app() -> Iterator[int]:
    """The test app for a module's live tests: its port while the block runs, then stopped."""
    port, proc = start_app()
    try:
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


def inbound_config(app_port: int, *, mode: str = "PERMISSIVE",
                   authz: types.Authz = types.Authz(), version: str = "v1"
                   ) -> types.ProxyConfig:
    listener = types.Listener(name="inbound|8080", kind="inbound", address="127.0.0.1", port=0,
                              app_address="127.0.0.1", app_port=app_port,
                              service_port=SERVICE_PORT)
    return types.ProxyConfig(version=version, node=SERVER_NODE, listeners=(listener,),
                             peer_authn=types.PeerAuthn(mode=mode),  # type: ignore[arg-type]
                             authz=authz)


def outbound_config(server_port: int, *, expected: tuple[str, ...] = (SERVER_ID,),
                    tls_mode: str = "ISTIO_MUTUAL") -> types.ProxyConfig:
    """A client sidecar: outbound listener routing everything to the server sidecar."""
    route = types.Route(name="pay", clusters=(types.WeightedCluster(cluster=PAY_CLUSTER,
                                                                    host=PAY_HOST),))
    table = types.RouteTable(name="outbound", virtual_hosts=(
        types.VirtualHost(name="pay", domains=("*",), routes=(route,)),))
    endpoint = types.Endpoint(address="127.0.0.1", port=server_port, namespace="payments",
                              service_account=SERVER_SA, labels=dict(SERVER_NODE.labels))
    cluster = types.Cluster(
        name=PAY_CLUSTER, service=PAY_HOST, port=SERVICE_PORT, endpoints=(endpoint,),
        tls=types.UpstreamTls(mode=tls_mode, expected_identities=expected),  # type: ignore[arg-type]
        service_name="payment-service", service_namespace="payments")
    listener = types.Listener(name="outbound", kind="outbound", address="127.0.0.1", port=0,
                              route_table="outbound")
    return types.ProxyConfig(version="c1", node=CLIENT_NODE, listeners=(listener,),
                             route_tables=(table,), clusters=(cluster,))


async def start_proxy(config: types.ProxyConfig, creds: tls.Credentials | None
                      ) -> ProxyServer:
    state = tls.TlsState(creds) if creds is not None else None
    server = ProxyServer(config, tls_state=state, serve_admin=False)
    await server.start()
    return server


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]


async def http_request(port: int, *, ctx: ssl.SSLContext | None = None, method: str = "GET",
                       path: str = "/", host: str = PAY_HOST,
                       headers: dict[str, str] | None = None,
                       source_ip: str = "127.0.0.1") -> Reply | None:
    """One request on its own connection; None when the connection was refused/closed."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, local_addr=(source_ip, 0)), 5)
    except (OSError, ssl.SSLError):
        return None
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close",
             "Content-Length: 0"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
    except (OSError, ssl.SSLError):
        return None
    finally:
        writer.close()
    return parse_reply(raw)


def parse_reply(raw: bytes) -> Reply | None:
    if not raw:
        return None
    head, _, body = raw.partition(b"\r\n\r\n")
    first, *rest = head.decode("latin-1").split("\r\n")
    hdrs = {}
    for line in rest:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return Reply(int(first.split()[1]), body, hdrs)
