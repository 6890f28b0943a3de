"""mTLS between two sidecars against plaintext: CPU per request, throughput, handshakes.

Topology (every box its own process, loopback):
    load (this process, C keep-alive connections)
      → client sidecar (outbound listener)  → server sidecar (inbound)  → upstream
The upstream is a minimal uvloop responder so the sidecars' cost dominates. Modes:
    off   plaintext between the sidecars (DISABLE / PERMISSIVE)
    on    ISTIO_MUTUAL client, STRICT server, SPIFFE certificates from the real CA
CPU per request = (utime + stime of both sidecars) / requests, read from /proc, so the load
generator's own cost is excluded. Handshakes: the server sidecar's gate counts every mTLS
handshake; "requests per handshake" shows pooling. Then a separate run opens a new mTLS
connection per request to measure full handshakes per second and CPU per handshake.

    python bench/mtls.py [--seconds 5] [--conns 8] [--rounds 3] [--rate R]

--rate R paces the load at R requests/s in total (0, the default: each connection sends
its next request as soon as the answer is in, as fast as the sidecars go). Closed-loop
load compares two modes at different request rates: the slower mTLS mode then gets fewer
requests per loop wake-up and pays more wake-ups and context switches per request, which
is not TLS work. At an equal paced rate both modes wake up per request alike, so the
ratio is what TLS adds to one request on a kept-alive connection.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TICK = os.sysconf("SC_CLK_TCK")
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-type: text/plain\r\n\r\nok"


# ------------------------------------------------------------------ child roles


def run_upstream(port: int) -> None:
    import uvloop

    class Responder(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.t = transport

        def data_received(self, data: bytes) -> None:
            self.t.write(RESPONSE * data.count(b"\r\n\r\n"))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_server(Responder, "127.0.0.1", port, backlog=1024)
        print(json.dumps({"port": port}), flush=True)
        await asyncio.Event().wait()

    uvloop.run(main())


def run_sidecar(config_file: str, cred_dir: str | None) -> None:
    import uvloop

    from tollway.proxy import tls
    from tollway.proxy.main import ProxyServer
    from tollway.proxy.run import tune_malloc
    from tollway.snapshot import codec

    tune_malloc()  # as `python -m tollway.proxy` does first

    config = codec.decode(Path(config_file).read_bytes())
    state = None
    if cred_dir:
        d = Path(cred_dir)
        state = tls.TlsState(tls.Credentials.from_pem(
            (d / "chain.pem").read_text(), (d / "key.pem").read_text(),
            (d / "root.pem").read_text()))

    async def main() -> None:
        server = ProxyServer(config, tls_state=state, serve_admin=False)
        await server.start()
        ports = {name: server.listener_address(name)[1] for name in server.bound}
        print(json.dumps({"ports": ports}), flush=True)
        def report() -> None:
            gates = {n: b.gate.statistics() for n, b in server.bound.items()
                     if b.gate is not None}
            print(json.dumps({"gates": gates}), flush=True)

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, report)
        await stop.wait()
        await server.close()

    uvloop.run(main())


# ------------------------------------------------------------------ orchestration


def spawn(*args: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE,
                            text=True, cwd=ROOT)
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_creds(folder: Path, ca: Any, spiffe_id: str) -> str:
    from tollway.proxy import tls

    key, csr = tls.new_key_and_csr(spiffe_id)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "chain.pem").write_text(ca.sign_csr(csr, spiffe_id))
    (folder / "key.pem").write_text(key)
    (folder / "root.pem").write_text(ca.root_pem)
    return str(folder)


def configs(upstream: int, server_port: int | None, mtls: bool) -> tuple[Any, Any]:
    from tollway.snapshot import types

    server_node = types.Node(name="pay-0", workload="pay", namespace="payments",
                             service_account="pay", labels={"app": "pay"})
    inbound = types.ProxyConfig(
        version="s", node=server_node,
        listeners=(types.Listener(name="inbound", kind="inbound", port=0,
                                  app_address="127.0.0.1", app_port=upstream,
                                  service_port=8080),),
        peer_authn=types.PeerAuthn(mode="STRICT" if mtls else "PERMISSIVE"))
    if server_port is None:
        return inbound, None
    host = "pay.payments.svc.cluster.local"
    cname = f"outbound|8080||{host}"
    tls_spec = types.UpstreamTls(mode="ISTIO_MUTUAL",
                                 expected_identities=("spiffe://cluster.local/ns/payments/sa/pay",)
                                 ) if mtls else types.UpstreamTls()
    outbound = types.ProxyConfig(
        version="c", node=types.Node(name="web-0", namespace="web", service_account="web"),
        listeners=(types.Listener(name="outbound", kind="outbound", port=0,
                                  route_table="out"),),
        route_tables=(types.RouteTable(name="out", virtual_hosts=(types.VirtualHost(
            name="pay", domains=("*",), routes=(types.Route(
                clusters=(types.WeightedCluster(cluster=cname, host=host),)),)),)),),
        clusters=(types.Cluster(name=cname, service=host, port=8080, tls=tls_spec,
                                endpoints=(types.Endpoint(address="127.0.0.1", port=server_port,
                                                          namespace="payments",
                                                          service_account="pay"),)),))
    return inbound, outbound


async def load(port: int, conns: int, seconds: float, rate: float = 0.0) -> int:
    request = b"GET /bench HTTP/1.1\r\nHost: pay\r\n\r\n"
    done = 0
    start = time.monotonic()
    stop = start + seconds
    gap = conns / rate if rate > 0 else 0.0  # per connection, paced

    async def one(k: int) -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        due = start + gap * k / conns  # connections staggered over one gap
        while time.monotonic() < stop:
            if gap:
                due += gap
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            writer.write(request)
            await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(2)
            done += 1
        writer.close()

    await asyncio.gather(*(one(k) for k in range(conns)))
    return done


def gate_handshakes(server: subprocess.Popen[str]) -> int:
    """mTLS handshakes the server sidecar's gate has accepted so far (asks via SIGUSR1)."""
    server.send_signal(signal.SIGUSR1)
    assert server.stdout is not None
    gates = json.loads(server.stdout.readline()).get("gates", {})
    return sum(int(g.get("mtls", 0)) for g in gates.values())


def measure(mode: str, conns: int, seconds: float, tmp: Path, ca: Any, rate: float = 0.0
            ) -> dict[str, float]:
    from tollway.snapshot import codec

    mtls = mode == "on"
    upstream_proc, _ = spawn("--role", "upstream", "--port", str(up := free_port()))
    procs = [upstream_proc]
    try:
        inbound, _ = configs(up, None, mtls)
        (tmp / f"in-{mode}.json").write_bytes(codec.encode(inbound))
        s_args = ["--role", "sidecar", "--config", str(tmp / f"in-{mode}.json")]
        if mtls:
            s_args += ["--creds", write_creds(tmp / "server", ca,
                                              "spiffe://cluster.local/ns/payments/sa/pay")]
        server, info = spawn(*s_args)
        procs.append(server)
        _, outbound = configs(up, info["ports"]["inbound"], mtls)
        (tmp / f"out-{mode}.json").write_bytes(codec.encode(outbound))
        c_args = ["--role", "sidecar", "--config", str(tmp / f"out-{mode}.json")]
        if mtls:
            c_args += ["--creds", write_creds(tmp / "client", ca,
                                              "spiffe://cluster.local/ns/web/sa/web")]
        client, cinfo = spawn(*c_args)
        procs.append(client)
        port = cinfo["ports"]["outbound"]
        asyncio.run(load(port, conns, 0.5))  # warm up: pools filled, handshakes done
        before = gate_handshakes(server)
        s0, c0 = cpu_seconds(server.pid), cpu_seconds(client.pid)
        t0 = time.monotonic()
        n = asyncio.run(load(port, conns, seconds, rate))
        wall = time.monotonic() - t0
        s_cpu, c_cpu = cpu_seconds(server.pid) - s0, cpu_seconds(client.pid) - c0
        cpu = s_cpu + c_cpu
        handshakes = gate_handshakes(server) - before
        return {"rps": n / wall, "cpu_us": cpu / max(n, 1) * 1e6, "requests": n,
                "handshakes": handshakes, "server_us": s_cpu / max(n, 1) * 1e6,
                "client_us": c_cpu / max(n, 1) * 1e6}
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
            p.wait()


def handshakes(seconds: float, tmp: Path, ca: Any) -> dict[str, float]:
    """New mTLS connection per request to a STRICT server sidecar: handshakes per second."""
    import ssl

    from tollway.proxy import tls
    from tollway.snapshot import codec

    upstream_proc, _ = spawn("--role", "upstream", "--port", str(up := free_port()))
    procs = [upstream_proc]
    try:
        inbound, _ = configs(up, None, True)
        (tmp / "hs.json").write_bytes(codec.encode(inbound))
        server, info = spawn("--role", "sidecar", "--config", str(tmp / "hs.json"), "--creds",
                             write_creds(tmp / "hs-server", ca,
                                         "spiffe://cluster.local/ns/payments/sa/pay"))
        procs.append(server)
        d = Path(write_creds(tmp / "hs-client", ca, "spiffe://cluster.local/ns/web/sa/web"))
        ctx = tls.client_mtls_context(tls.Credentials.from_pem(
            (d / "chain.pem").read_text(), (d / "key.pem").read_text(),
            (d / "root.pem").read_text()))
        port = info["ports"]["inbound"]

        async def run() -> int:
            n = 0
            stop = time.monotonic() + seconds
            while time.monotonic() < stop:
                reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
                writer.write(b"GET / HTTP/1.1\r\nHost: pay\r\nConnection: close\r\n\r\n")
                await reader.read()
                writer.close()
                n += 1
            return n

        cpu0 = cpu_seconds(server.pid)
        t0 = time.monotonic()
        n = asyncio.run(run())
        wall = time.monotonic() - t0
        cpu = cpu_seconds(server.pid) - cpu0
        del ssl
        return {"per_s": n / wall, "cpu_ms": cpu / max(n, 1) * 1e3, "n": n}
    finally:
        for p in procs:
            p.terminate()
            p.wait()


def median_row(rows: list[dict[str, float]]) -> dict[str, float]:
    import statistics

    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", default="bench")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--config", default="")
    parser.add_argument("--creds", default=None)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--conns", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=0.0,
                        help="paced req/s in total (0: closed loop)")
    args = parser.parse_args()
    if args.role == "upstream":
        return run_upstream(args.port)
    if args.role == "sidecar":
        return run_sidecar(args.config, args.creds)
    from tollway.control.ca import CertificateAuthority

    ca = CertificateAuthority.create()
    runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):  # interleaved, medians: this machine's steal swings
            for m in ("off", "on"):
                runs[m].append(measure(m, args.conns, args.seconds, Path(tmp), ca, args.rate))
        hs = handshakes(min(args.seconds, 3.0), Path(tmp), ca)
    rows = {m: median_row(r) for m, r in runs.items()}
    ratios = sorted(on["cpu_us"] / off["cpu_us"] for off, on in zip(runs["off"], runs["on"],
                                                                        strict=True))
    print(f"per-round mTLS/plaintext CPU ratios: {', '.join(f'{x:.2f}' for x in ratios)}")
    off, on = rows["off"], rows["on"]
    print(f"{'mode':<6}{'req/s':>10}{'CPU µs/req (2 sidecars)':>26}{'client':>8}"
          f"{'server':>8}{'requests':>10}{'handshakes':>12}")
    for m, r in rows.items():
        print(f"{m:<6}{r['rps']:>10.0f}{r['cpu_us']:>26.1f}{r['client_us']:>8.1f}"
              f"{r['server_us']:>8.1f}{r['requests']:>10.0f}{r['handshakes']:>12.0f}")
    import statistics

    print(f"mTLS/plaintext CPU per request (median of round ratios): "
          f"{statistics.median(ratios):.2f}x (+{on['cpu_us'] - off['cpu_us']:.1f} µs); "
          "target <= 1.3x")
    print(f"mTLS handshakes during {on['requests']:.0f} steady keep-alive requests: "
          f"{on['handshakes']:.0f} (target: at most 1 per 1000)")
    print(f"full mTLS handshakes: {hs['per_s']:.0f}/s from one client, server sidecar CPU "
          f"{hs['cpu_ms']:.2f} ms per handshake (incl. one request)")


if __name__ == "__main__":
    main()
