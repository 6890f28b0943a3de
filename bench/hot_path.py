"""Python cost of one proxied request, without sockets: feed bytes, count microseconds.

Drives listener.Downstream and upstream.UpstreamConnection with fake transports under the
bench snapshot (90/10 split, outlier detection, Istio metrics), so the figure is the
proxy's own Python per request - what the kernel's share in bench/run.sh comes on top of.

  python bench/hot_path.py [--n 50000] [--profile] [--mirror]

--mirror adds a 100% mirror (the bench's T-mir shape): copies go to the shadow endpoint's
pipelined connection, one loop iteration and one batched response per 16 requests (what
a saturated proxy sees per epoll wake-up), so the figure includes a copy's Python.
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
from tollway.proxy.upstream.pipeline import PipelinedConnection

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


def setup(mirror: bool = False) -> tuple[Any, Downstream, list[UpstreamConnection], Any]:
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    cfg = build("127.0.0.1:1", 0, 1, 2, mirror)
    mirrorer = Mirrorer()
    snap = compile_snapshot(cfg, loop=loop, metrics=Metrics(), mirrorer=mirrorer,
                            limits=Limits())
    plan = next(iter(snap.plans.values()))
    conns = []
    pipe = None
    for name, cluster in snap.clusters.items():
        for pool in cluster.pools:
            if "shadow" in name:  # the mirror's pipelined connection, already open
                pipe = PipelinedConnection(pool, mirrorer)
                pipe.connection_made(FakeTransport())  # type: ignore[arg-type]
                pool.pipe = pipe
                pool.open.add(pipe)  # type: ignore[arg-type]
                cluster.limits.try_open_connection()
                continue
            conn = UpstreamConnection(pool)
            conn.connection_made(FakeTransport())  # type: ignore[arg-type]
            pool.open.add(conn)
            pool.idle.append(conn)
            cluster.limits.try_open_connection()
            conns.append(conn)
    down = Downstream(ListenerRuntime("bench", plan, Limits()))
    down.connection_made(FakeTransport())  # type: ignore[arg-type]
    return loop, down, conns, pipe


def run(n: int, mirror: bool = False) -> float:
    loop, down, conns, pipe = setup(mirror)
    t0 = time.process_time()
    for i in range(n):
        down.data_received(REQUEST)
        for conn in conns:
            if conn.sink is not None:
                conn.data_received(RESPONSE)
                break
        else:
            raise RuntimeError("no upstream connection got the request")
        if pipe is not None and i % 16 == 15:
            loop.call_soon(loop.stop)
            loop.run_forever()  # one iteration: the batched copies are written
            pipe.data_received(RESPONSE * len(pipe.unanswered))
    return (time.process_time() - t0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--mirror", action="store_true")
    a = ap.parse_args()
    if a.profile:
        cProfile.runctx("run(n, m)", globals(), {"run": run, "n": a.n, "m": a.mirror},
                        "/tmp/hot_path.prof")
        pstats.Stats("/tmp/hot_path.prof").sort_stats("tottime").print_stats(25)
        return
    run(2000, a.mirror)
    print(f"{min(run(a.n, a.mirror) for _ in range(3)):.1f} us of Python per proxied request")


if __name__ == "__main__":
    main()
