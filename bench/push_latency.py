"""Push latency: from `POST /v1/apply` of a weight change to the last of N proxies enforcing it.

A real control plane (store, world, translate, push, HTTP) runs in this process; N real
ProxyServers follow it over the wire, spread over a few worker processes (proxies share
processes, as the issue allows). "Enforcing" means the proxy swapped the new snapshot in
and acknowledged it (ProxyServer.apply returns only once the snapshot is live).

    python bench/push_latency.py            # N = 10 and 100, 20 changes each
    python bench/push_latency.py --n 100 --changes 50 --workers 4

Prints p50 / p99 / max of the time to the last proxy, and the control plane's RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tollway.config import load
from tollway.control import auth, serve
from tollway.control.guard import Guard
from tollway.control.local.procs import PortAllocator
from tollway.control.plane import ControlPlane
from tollway.control.proxies import ProxyEntry
from tollway.control.registry import Replica
from tollway.control.store import ConfigStore
from tollway.snapshot import types

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "examples" / "canary"
VS = """apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: myapp
spec:
  hosts: [myapp]
  http:
  - route:
    - destination: {{host: myapp, subset: v1}}
      weight: {w1}
    - destination: {{host: myapp, subset: v2}}
      weight: {w2}
"""


def rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _replicas(ports: PortAllocator) -> list[Replica]:
    out = []
    for version, count in (("v1", 3), ("v2", 1)):
        for i in range(count):
            out.append(Replica(
                workload=f"myapp-{version}", kind="Deployment", namespace="default",
                labels={"app": "myapp", "version": version}, service_account="default",
                address="127.0.0.1", port=ports.allocate(), app_port=ports.allocate(),
                name=f"myapp-{version}-{i}.default"))
    return out


def _spawn_workers(url: str, names: list[str], workers: int, tokens: dict[str, Path]
                   ) -> list[subprocess.Popen[bytes]]:
    procs = []
    for w in range(workers):
        mine = names[w::workers]
        specs = [json.dumps({"node": {"name": n, "kind": "client"}, "admin_port": 0,
                             "token_file": str(tokens[n])}) for n in mine]
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "tollway.control.local.sidecar", "--control-plane", url,
             *specs], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


async def _wait(plane: ControlPlane, names: list[str], timeout: float) -> bool:
    return await plane.wait_current(names, timeout, since_gen=plane.generation)


async def _all_connected(plane: ControlPlane, n: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = plane.statistics()
        if stats.connected == n and stats.current == n:
            return True
        await asyncio.sleep(0.05)
    return False


async def run(n: int, changes: int, workers: int, debug: bool = False) -> dict[str, float]:
    result = load.load_paths([MANIFESTS])
    store = ConfigStore()
    assert store.apply(list(result.resources), actor="bench").ok
    plane = ControlPlane(store)  # the default debounce (10 ms quiet, 100 ms max), as `tollway up`
    ports = PortAllocator()
    for replica in _replicas(ports):
        plane.set_replica(replica)
    names = [f"bench-client-{i}.default" for i in range(n)]
    for name in names:
        plane.register(ProxyEntry(types.Node(name=name, workload="bench-client", kind="client"),
                                  ports={"outbound": ports.allocate()}))
    state = Path(tempfile.mkdtemp(prefix="tollway-bench-"))
    signer = auth.TokenSigner(auth.load_or_create_key(state))
    tokens = {n: auth.node_token_file(state, signer, time.time(), name=n, namespace="default",
                                      service_account="default") for n in names}
    admin = signer.admin(time.time())
    runner = await serve.serve(serve.make_app(plane, guard=Guard(signer)), "127.0.0.1", 0)
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    engine = asyncio.create_task(plane.run())
    procs = _spawn_workers(url, names, workers, tokens)
    samples: list[float] = []
    try:
        if not await _all_connected(plane, n, 60):
            raise SystemExit("proxies did not come up within 60 s")
        async with httpx.AsyncClient(base_url=url,
                                     headers={"Authorization": f"Bearer {admin}"}) as client:
            for i in range(changes):
                w2 = 10 + (i % 2) * 40
                text = VS.format(w1=100 - w2, w2=w2)
                start = time.perf_counter()
                r = await client.post("/v1/apply", json={"text": text, "filename": "vs.yaml"})
                assert r.status_code == 200, r.text
                if not await _wait(plane, names, 10):
                    raise SystemExit(f"change {i} did not reach every proxy within 10 s")
                samples.append(time.perf_counter() - start)
                if debug:
                    rows = [plane.ledger.row(nm) for nm in names]
                    t0 = time.monotonic() - (time.perf_counter() - start)
                    sent = [r.sent_at - t0 for r in rows if r.sent_at]
                    acked = [r.acked_at - t0 for r in rows if r.acked_at]
                    print(f"  first sent {min(sent)*1000:.1f} last sent {max(sent)*1000:.1f} "
                          f"first ack {min(acked)*1000:.1f} last ack {max(acked)*1000:.1f}")
                await asyncio.sleep(0.05)
        proxies_rss = sum(rss_mb(p.pid) for p in procs)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)
        engine.cancel()
        await runner.cleanup()
    samples.sort()
    return {
        "n": n,
        "p50_ms": statistics.median(samples) * 1000,
        "p99_ms": samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000,
        "max_ms": samples[-1] * 1000,
        "control_plane_rss_mb": rss_mb(),
        "proxies_rss_mb": proxies_rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, action="append", help="proxies (repeatable)")
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="proxy processes (one per core)")
    args = parser.parse_args()
    print(f"{'proxies':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'CP RSS MB':>10} {'proxies RSS MB':>15}")
    for n in args.n or [10, 100]:
        row = asyncio.run(run(n, args.changes, min(args.workers, n)))
        print(f"{row['n']:>8} {row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f} {row['max_ms']:>8.1f} "
              f"{row['control_plane_rss_mb']:>10.1f} {row['proxies_rss_mb']:>15.1f}")


if __name__ == "__main__":
    main()
