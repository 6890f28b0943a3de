"""The proxy as a process: CLI errors, SIGTERM drain, SO_REUSEPORT workers, gateway TLS."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import msgspec
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from proxy_harness import Harness, RawClient, cluster, config, free_port, get, route

from tollway.snapshot import codec, types


def _run_proxy(snapshot: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tollway.proxy",
            "--config",
            str(snapshot),
            "--admin-port",
            "0",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline()


def _snapshot(tmp_path: Path, cfg: types.ProxyConfig) -> Path:
    path = tmp_path / "snap.json"
    path.write_bytes(codec.encode(cfg))
    return path


def _fixed_port(cfg: types.ProxyConfig, port: int) -> types.ProxyConfig:
    lst = cfg.listeners[0]
    moved = types.Listener(
        name=lst.name, kind=lst.kind, address=lst.address, port=port, route_table=lst.route_table
    )
    return types.ProxyConfig(
        version=cfg.version,
        node=cfg.node,
        listeners=(moved,),
        route_tables=cfg.route_tables,
        clusters=cfg.clusters,
    )


def test_cli_refuses_bad_config_with_one_sentence(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 1}')
    r = subprocess.run(
        [sys.executable, "-m", "tollway", "proxy", "--config", str(bad)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
    assert "bad.json" in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run([sys.executable, "-m", "tollway", "proxy"], capture_output=True, text=True)
    assert r.returncode == 2


def test_sigterm_drains_in_flight_requests(tmp_path: Path, harness: Harness) -> None:
    up = harness.upstream()
    port = free_port()
    cfg = _fixed_port(config([route(("c", 100))], [cluster("c", up)]), port)
    proc, line = _run_proxy(_snapshot(tmp_path, cfg))
    assert f"main=127.0.0.1:{port}" in line
    c = RawClient(("127.0.0.1", port))
    c.send(get("/delay/400"))
    time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert c.read_response().status == 200
    assert proc.wait(10) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)


def test_sigterm_with_drain_seconds_keeps_serving_with_keep_alive_off(
    tmp_path: Path, harness: Harness
) -> None:
    """--drain-seconds (Istio's terminationDrainDuration; the injected sidecar's is 5): after
    SIGTERM the proxy is not ready but still accepts and serves, since other proxies keep
    routing here until the control plane tells them the pod is gone. Its inbound/gateway
    listeners answer with `connection: close`, and an idle keep-alive connection is not cut:
    cutting it crossed a request its client was sending (a 503 "connection termination" on
    the cluster when a rollout replaced the pod). Outbound stays keep-alive: the app may
    still call out while it stops. Then the listeners close and the process exits 0."""
    up = harness.upstream()
    gw_port, out_port = free_port(), free_port()
    cfg = msgspec.structs.replace(
        config([route(("c", 100))], [cluster("c", up)]),
        listeners=(
            types.Listener(name="main", kind="gateway", address="127.0.0.1", port=gw_port,
                           route_table="rt"),
            types.Listener(name="out", kind="outbound", address="127.0.0.1", port=out_port,
                           route_table="rt"),
        ),
    )
    proc, line = _run_proxy(_snapshot(tmp_path, cfg), "--drain-seconds", "4")
    try:
        admin = line.split("admin=")[1].split()[0]
        idle = RawClient(("127.0.0.1", gw_port))
        idle.send(get("/"))
        assert idle.read_response().status == 200  # kept alive: idle now
        outbound = RawClient(("127.0.0.1", out_port))
        outbound.send(get("/"))
        assert outbound.read_response().status == 200
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 3
        while httpx.get(f"http://{admin}/ready").status_code == 200:
            assert time.monotonic() < deadline, "still ready 3 s after SIGTERM"
            time.sleep(0.05)
        idle.send(get("/"))  # the idle connection still serves, and closes after
        r = idle.read_response()
        assert (r.status, r.header("connection")) == (200, "close")
        assert idle.sock.recv(1) == b""
        fresh = httpx.get(f"http://127.0.0.1:{gw_port}/")  # new connections are accepted
        assert (fresh.status_code, fresh.headers.get("connection")) == (200, "close")
        outbound.send(get("/"))
        r = outbound.read_response()
        assert (r.status, r.header("connection")) == (200, None)
        assert proc.wait(15) == 0
        for port in (gw_port, out_port):
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_workers_share_the_port(tmp_path: Path, harness: Harness) -> None:
    up = harness.upstream()
    port = free_port()
    cfg = _fixed_port(config([route(("c", 100))], [cluster("c", up)]), port)
    proc, line = _run_proxy(_snapshot(tmp_path, cfg), "--workers", "2")
    try:
        assert "ready" in line
        deadline = time.monotonic() + 10
        while len(_children(proc.pid)) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # the worker binds after its own start
        for _ in range(20):
            assert (
                httpx.get(f"http://127.0.0.1:{port}/", headers={"connection": "close"}).status_code
                == 200
            )
        assert len(_children(proc.pid)) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def _self_signed(host: str) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), pem_key


def test_gateway_terminates_tls_simple(harness: Harness, tmp_path: Path) -> None:
    up = harness.upstream()
    cert, key = _self_signed("bookinfo.example.com")
    base = config([route(("c", 100))], [cluster("c", up)])
    gw = types.Listener(
        name="main",
        kind="gateway",
        address="127.0.0.1",
        route_table="rt",
        tls=types.DownstreamTls(
            mode="SIMPLE", credential=types.TlsCredential(cert_chain=cert, private_key=key)
        ),
    )
    cfg = types.ProxyConfig(
        version="g",
        node=base.node,
        listeners=(gw,),
        route_tables=base.route_tables,
        clusters=base.clusters,
    )
    p = harness.proxy(cfg)
    ca = tmp_path / "ca.pem"
    ca.write_text(cert)
    ctx = ssl.create_default_context(cafile=str(ca))
    host, port = p.listener_address("main")
    with (
        socket.create_connection((host, port)) as raw,
        ctx.wrap_socket(raw, server_hostname="bookinfo.example.com") as s,
    ):
            s.sendall(get("/tls", host="bookinfo.example.com", extra="Connection: close\r\n"))
            data = b""
            while True:
                piece = s.recv(65536)
                if not piece:
                    break
                data += piece
    assert data.startswith(b"HTTP/1.1 200")
    assert b'"path": "/tls"' in data
    assert b"x-forwarded-proto" in data  # the upstream saw https
