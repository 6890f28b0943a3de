"""Python cost of one proxied request, without sockets: feed bytes, count microseconds.

Drives listener.Downstream and upstream.UpstreamConnection with fake transports under the
bench snapshot (90/10 split, outlier detection, Istio metrics), so the figure is the
proxy's own Python per request - what the kernel's share in bench/run.sh comes on top of.

  python bench/hot_path.py [--n 50000] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import uvloop
from tollway_snapshot import build

from tollway.proxy.chain.build import compile_snapshot
from tollway.proxy.chain.mirror import Mirrorer
from tollway.proxy.chain.telemetry import Metrics
from tollway.proxy.http1.parse import Limits
from tollway.proxy.listener import Downstream, ListenerRuntime
from tollway.proxy.upstream.connection import UpstreamConnection

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:18281\r\n\r\n"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sat, 28 Nov 2026 10:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 100\r\nConnection: keep-alive\r\n\r\n"
    + b"x" * 100
)


class FakeTransport:
    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += 1

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...
    def is_closing(self) -> bool:
        return False


def setup(mirror: bool = False) -> tuple[Downstream, list[UpstreamConnection]]:
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    cfg = build("127.0.0.1:1", 0, 1, 2, mirror)
    snap = compile_snapshot(cfg, loop=loop, metrics=Metrics(), mirrorer=Mirrorer(),
                            limits=Limits())
    plan = next(iter(snap.plans.values()))
    conns = []
    for cluster in snap.clusters.values():
        for pool in cluster.pools:
            conn = UpstreamConnection(pool)
            conn.connection_made(FakeTransport())  # type: ignore[arg-type]
            pool.open.add(conn)
            pool.idle.append(conn)
            cluster.limits.try_open_connection()
            conns.append(conn)
    down = Downstream(ListenerRuntime("bench", plan, Limits()))
    down.connection_made(FakeTransport())  # type: ignore[arg-type]
    return down, conns


def run(n: int) -> float:
    down, conns = setup()
    t0 = time.process_time()
    for _ in range(n):
        down.data_received(REQUEST)
        for conn in conns:
            if conn.sink is not None:
                conn.data_received(RESPONSE)
                break
        else:
            raise RuntimeError("no upstream connection got the request")
    return (time.process_time() - t0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    if a.profile:
        cProfile.runctx("run(n)", globals(), {"run": run, "n": a.n}, "/tmp/hot_path.prof")
        pstats.Stats("/tmp/hot_path.prof").sort_stats("tottime").print_stats(25)
        return
    run(2000)
    print(f"{min(run(a.n) for _ in range(3)):.1f} us of Python per proxied request")


if __name__ == "__main__":
    main()
