"""Python cost of one proxied request, without sockets: feed bytes, count microseconds.

Drives listener.Downstream and upstream.UpstreamConnection with fake transports under the
bench snapshot (90/10 split, outlier detection, Istio metrics), so the figure is the
proxy's own Python per request - what the kernel's share in bench/run.sh comes on top of.

  python bench/hot_path.py [--n 50000] [--profile] [--mirror] [--tracing PCT [--otlp]]
                           [--access-log] [--route-tag]

--mirror adds a 100% mirror (the bench's T-mir shape): copies go to the shadow endpoint's
pipelined connection, one loop iteration and one batched response per 16 requests (what
a saturated proxy sees per epoll wake-up), so the figure includes a copy's Python.

--tracing PCT reports spans for PCT% of requests (new traces sampled at that rate) to a
collector in a child process (Zipkin JSON, or OTLP/protobuf with --otlp) through the real
exporter thread. The figure is process CPU, so it includes the exporter thread's encoding
and POSTs: the run waits for the queue to drain before the clock stops, and the queue is
sized so that nothing is dropped (the line says how many spans were exported). Batches
go when full (256 spans), as under load: the 1 s timer is off here, because under
callgrind (~50x slower) it would POST 50x more often per request than a real proxy does.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))

import uvloop
from tollway_snapshot import build

from tollway.proxy.chain.build import compile_snapshot
from tollway.proxy.chain.mirror import Mirrorer
from tollway.proxy.chain.telemetry import Metrics
from tollway.proxy.chain.tracing import service_name
from tollway.proxy.export import SpanSink
from tollway.proxy.http1.parse import Limits
from tollway.proxy.listener import Downstream, ListenerRuntime
from tollway.proxy.upstream.connection import UpstreamConnection
from tollway.proxy.upstream.pipeline import PipelinedConnection
from tollway.snapshot import types

# A collector that accepts anything: reads the body, answers 202 (Zipkin) / 200 (OTLP).
COLLECTOR = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(202); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""

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


class Tracing:
    """--tracing: the collector child and the provider pointing at it."""

    def __init__(self, percent: float, otlp: bool) -> None:
        self.percent = percent
        self.proc = subprocess.Popen([sys.executable, "-c", COLLECTOR], stdout=subprocess.PIPE,
                                     text=True)
        assert self.proc.stdout is not None
        port = int(self.proc.stdout.readline())
        path = "/v1/traces" if otlp else "/api/v2/spans"
        self.provider = types.TracingProvider(
            name="bench", kind="opentelemetry" if otlp else "zipkin",
            endpoint=f"http://127.0.0.1:{port}{path}")
        self.sink: SpanSink | None = None
        self.exported = 0

    def config(self, cfg: types.ProxyConfig, n: int) -> types.ProxyConfig:
        cfg = msgspec.structs.replace(
            cfg, tracing=types.Tracing(provider=self.provider, sampling=self.percent))
        self.sink = SpanSink(max_queue=2 * n + 1024, interval=3600.0)
        self.sink.configure(self.provider, service_name(cfg))
        return cfg

    def drain(self) -> None:
        assert self.sink is not None
        self.sink.close(flush_timeout=600)
        stats = self.sink.statistics()
        assert not any(stats["dropped"].values()), stats
        self.exported += stats["exported"]

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def telemetry(access_log: bool, route_tag: bool) -> types.Telemetry:
    """--access-log: Istio's default text line per request to /dev/null, written by the log
    thread (its CPU counts: process time); --route-tag: a Telemetry's route_name tag."""
    logs = (types.AccessLog(path="/dev/null"),) if access_log else ()
    tags = (types.MetricOverride(metric="REQUEST_COUNT", tags=(
        types.TagOverride(name="route_name", value="xds.route_name"),)),) if route_tag else ()
    return types.Telemetry(access_logs=logs, client_metrics=tags, server_metrics=tags)


METRICS = Metrics()


def pooled(cluster: Any, pool: Any) -> UpstreamConnection:
    """An open, idle upstream connection on a fake transport, in `pool`'s books."""
    conn = UpstreamConnection(pool)
    conn.connection_made(FakeTransport())  # type: ignore[arg-type]
    pool.open.add(conn)
    pool.idle.append(conn)
    cluster.limits.try_open_connection()
    return conn


def setup(mirror: bool = False, tracing: Tracing | None = None, n: int = 0,
          tel: types.Telemetry | None = None,
          ) -> tuple[Any, Downstream, list[UpstreamConnection], Any]:
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    cfg = build("127.0.0.1:1", 0, 1, 2, mirror)
    if tracing is not None:
        cfg = tracing.config(cfg, n)
    if tel is not None:
        cfg = msgspec.structs.replace(cfg, telemetry=tel)
    mirrorer = Mirrorer()
    snap = compile_snapshot(cfg, loop=loop, metrics=METRICS, mirrorer=mirrorer,
                            limits=Limits(), spans=tracing.sink if tracing else None)
    plan = next(iter(snap.plans.values()))
    conns = []
    pipe = None
    for name, cluster in snap.clusters.items():
        for pool in cluster.pools:
            if "shadow" in name:  # the mirror's pipelined connection, already open
                pipe = PipelinedConnection(pool, mirrorer)
                pipe.connection_made(FakeTransport())  # type: ignore[arg-type]
                pool.pipe = pipe
                pool.open.add(pipe)
                cluster.limits.try_open_connection()
                continue
            conns.append(pooled(cluster, pool))
    down = Downstream(ListenerRuntime("bench", plan, Limits()))
    down.connection_made(FakeTransport())  # type: ignore[arg-type]
    return loop, down, conns, pipe


def run(n: int, mirror: bool = False, tracing: Tracing | None = None,
        tel: types.Telemetry | None = None) -> float:
    loop, down, conns, pipe = setup(mirror, tracing, n, tel)
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
    if tracing is not None:
        tracing.drain()  # the exporter's work is part of the cost
    if tel is not None and tel.access_logs:
        METRICS.logs.flush()  # the log lines not yet written are part of the cost too
    return (time.process_time() - t0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--mirror", action="store_true")
    ap.add_argument("--tracing", type=float, default=None, metavar="PCT")
    ap.add_argument("--otlp", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--access-log", action="store_true")
    ap.add_argument("--route-tag", action="store_true")
    a = ap.parse_args()
    tr = Tracing(a.tracing, a.otlp) if a.tracing is not None else None
    tel = telemetry(a.access_log, a.route_tag) if a.access_log or a.route_tag else None
    try:
        if a.profile:
            cProfile.runctx("run(n, m, t, x)", globals(),
                            {"run": run, "n": a.n, "m": a.mirror, "t": tr, "x": tel},
                            "/tmp/hot_path.prof")
            pstats.Stats("/tmp/hot_path.prof").sort_stats("tottime").print_stats(25)
            return
        if a.runs > 1:
            run(2000, a.mirror, tr, tel)
        best = min(run(a.n, a.mirror, tr, tel) for _ in range(a.runs))
        note = ""
        if tr is not None:
            note = (f" (tracing {a.tracing:g}% {'OTLP' if a.otlp else 'Zipkin'}: "
                    f"{tr.exported} spans exported, none dropped)")
        print(f"{best:.1f} us of Python per proxied request{note}")
    finally:
        if tr is not None:
            tr.stop()


if __name__ == "__main__":
    main()
