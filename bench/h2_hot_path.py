"""Python cost of one request through the HTTP/2 downstream, without sockets.

The HTTP/2 twin of bench/hot_path.py: one `H2Server` (tollway/proxy/h2/server.py) on a
fake transport, the same bench snapshot (90/10 split, outlier detection, Istio metrics)
and the same HTTP/1.1 upstream connections answering the same 100-byte response. A
client as h2load is one is simulated: its SETTINGS and 1 GiB windows first (h2load's
`-w 30 -W 30`), then per round `--batch` HEADERS frames (GET, END_STREAM, the fields
h2load sends, HPACK-indexed after the first request) in one read, every upstream
answering, and one event-loop iteration (what a saturated proxy does per epoll wake-up).
The figure is the proxy's own Python per request: the `h2` library's framing, HPACK and
state machine, our glue, the shared chain, the response's HEADERS and DATA.

  python bench/h2_hot_path.py [--n 50000] [--batch 10] [--runs 3] [--profile]
                              [--library stock|tollway|ours]

Same run shape as hot_path.py (2000-request warm-up, then --runs timed runs of --n), so
bench/instructions.sh counts its instructions per request: `SCRIPT=h2_hot_path.py bash
bench/instructions.sh`.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import struct
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hpack
import uvloop
from hot_path import METRICS, RESPONSE, FakeTransport, pooled
from tollway_snapshot import build

from tollway.proxy.chain.build import compile_snapshot
from tollway.proxy.chain.mirror import Mirrorer
from tollway.proxy.h2.preface import PREFACE
from tollway.proxy.h2.server import H2Server
from tollway.proxy.http1.parse import Limits
from tollway.proxy.listener import ListenerRuntime
from tollway.proxy.upstream.connection import UpstreamConnection

WINDOW = 2**30 - 1  # h2load's default stream and connection windows (-w 30 -W 30)
FIELDS = [(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"http"),
          (b":authority", b"127.0.0.1:18283"), (b"user-agent", b"h2load nghttp2/1.52.0")]


def frame(kind: int, flags: int, sid: int, payload: bytes) -> bytes:
    head = struct.pack(">I", len(payload))[1:] + bytes((kind, flags))
    return head + struct.pack(">I", sid) + payload


class Client:
    """The bytes an h2load connection sends: preface, SETTINGS, a connection
    WINDOW_UPDATE, the ACK of the server's SETTINGS, then HEADERS frames."""

    def __init__(self) -> None:
        enc = hpack.Encoder()
        self.first = enc.encode(FIELDS)
        self.rest = enc.encode(FIELDS)  # every later request: indexed fields only
        self.sid = 1

    def start(self) -> bytes:
        settings = struct.pack(">HI", 3, 100) + struct.pack(">HI", 4, WINDOW)
        return (PREFACE + frame(4, 0, 0, settings)
                + frame(8, 0, 0, struct.pack(">I", WINDOW - 65535)) + frame(4, 1, 0, b""))

    def requests(self, k: int) -> bytes:
        out = []
        for _ in range(k):
            out.append(frame(1, 0x5, self.sid, self.first if self.sid == 1 else self.rest))
            self.sid += 2
        return b"".join(out)


class H2Transport(FakeTransport):
    """The client side of the connection: counts writes, never backs up."""

    def __init__(self) -> None:
        super().__init__()
        self.nbytes = 0

    def write(self, data: bytes) -> None:
        self.written += 1
        self.nbytes += len(data)

    def get_write_buffer_size(self) -> int:
        return 0


def setup(batch: int) -> tuple[Any, H2Server, list[UpstreamConnection], H2Transport]:
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    cfg = build("127.0.0.1:1", 18283, 1, 2, False)
    snap = compile_snapshot(cfg, loop=loop, metrics=METRICS, mirrorer=Mirrorer(),
                            limits=Limits())
    plan = next(iter(snap.plans.values()))
    conns = []
    for cluster in snap.clusters.values():
        for pool in cluster.pools:
            # one idle HTTP/1.1 connection per stream in flight
            conns += [pooled(cluster, pool) for _ in range(batch)]
    out = H2Transport()
    server = H2Server(ListenerRuntime("bench", plan, Limits()), out, ("127.0.0.1", 40000),
                      None, "", False, "")
    return loop, server, conns, out


RESPONSE_FIELDS = [(b":status", b"200"), (b"server", b"nginx/1.22.1"),
                   (b"date", b"Sat, 28 Nov 2026 10:00:00 GMT"), (b"content-type", b"text/plain"),
                   (b"content-length", b"100")]


def library_only(n: int, batch: int, shape: str) -> float:
    """--library: the `h2` library alone, the same frames in and HEADERS + DATA out, no
    proxy: the floor of any design that keeps h2 for the state machine and framing.
    `stock`: h2 as the server configured it before (inbound validation, hpack);
    `tollway`: as configured with h2 (validation in headers.request_head, hpack_fast's
    coder); `ours`: Tollway's own connection (conn.py) in its place."""
    if shape == "ours":
        return connection_only(n, batch)
    import h2.config
    import h2.connection
    import h2.events

    from tollway.proxy.h2.hpack_fast import CachingDecoder, StaticEncoder
    stock = shape == "stock"
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(
        client_side=False, header_encoding=None, validate_inbound_headers=stock,
        normalize_inbound_headers=stock, validate_outbound_headers=False,
        normalize_outbound_headers=False))
    if not stock:
        conn.encoder = StaticEncoder()  # type: ignore[assignment]
        conn.decoder = CachingDecoder()  # type: ignore[assignment]
    conn.initiate_connection()
    client = Client()
    conn.receive_data(client.start())
    conn.data_to_send()
    body = RESPONSE[-100:]
    t0 = time.process_time()
    done = 0
    while done < n:
        k = min(batch, n - done)
        for ev in conn.receive_data(client.requests(k)):
            if type(ev) is h2.events.RequestReceived:
                conn.send_headers(ev.stream_id, RESPONSE_FIELDS)
                conn.send_data(ev.stream_id, body, end_stream=True)
        conn.data_to_send()
        done += k
    return (time.process_time() - t0) / n * 1e6


def connection_only(n: int, batch: int) -> float:
    """--library ours: tollway/proxy/h2/conn.py's ServerConnection alone, the same frames
    in and HEADERS + DATA out as the library shapes above."""
    from tollway.proxy.h2.conn import RequestReceived, ServerConnection
    conn = ServerConnection(100, 256 * 1024, 65536)
    conn.initiate_connection()
    client = Client()
    conn.receive_data(client.start())
    conn.data_to_send()
    body = RESPONSE[-100:]
    t0 = time.process_time()
    done = 0
    while done < n:
        k = min(batch, n - done)
        for ev in conn.receive_data(client.requests(k)):
            if type(ev) is RequestReceived:
                conn.send_headers(ev.stream_id, RESPONSE_FIELDS)
                conn.send_data(ev.stream_id, body, end_stream=True)
        conn.data_to_send()
        done += k
    return (time.process_time() - t0) / n * 1e6


def turn(loop: Any) -> None:
    loop.call_soon(loop.stop)
    loop.run_forever()


def run(n: int, batch: int) -> float:
    loop, server, conns, _ = setup(batch)
    client = Client()
    server.start(client.start())
    turn(loop)
    t0 = time.process_time()
    done = 0
    while done < n:
        k = min(batch, n - done)
        server.data_received(client.requests(k))
        answered = 0
        for conn in conns:
            if conn.sink is not None:
                conn.data_received(RESPONSE)
                answered += 1
        if answered != k:
            raise RuntimeError(f"{answered} upstream answers for {k} streams")
        turn(loop)
        done += k
    spent = time.process_time() - t0
    if server.streams:
        raise RuntimeError(f"{len(server.streams)} streams still open")
    return spent / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--library", choices=("stock", "tollway", "ours"), default=None)
    a = ap.parse_args()
    if a.library:
        if a.runs > 1:
            library_only(2000, a.batch, a.library)
        best = min(library_only(a.n, a.batch, a.library) for _ in range(a.runs))
        print(f"{best:.1f} us per HTTP/2 request in the h2 library alone ({a.library})")
        return
    if a.profile:
        cProfile.runctx("run(n, b)", globals(), {"run": run, "n": a.n, "b": a.batch},
                        "/tmp/h2_hot_path.prof")
        pstats.Stats("/tmp/h2_hot_path.prof").sort_stats("tottime").print_stats(40)
        return
    if a.runs > 1:
        run(2000, a.batch)
    best = min(run(a.n, a.batch) for _ in range(a.runs))
    print(f"{best:.1f} us of Python per HTTP/2 request (batch {a.batch})")


if __name__ == "__main__":
    main()
