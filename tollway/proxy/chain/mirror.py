"""Mirroring: a fire-and-forget copy of a request to a shadow cluster (Host + "-shadow").

The copy is collected while the real request's body streams (up to a small limit), then
queued; a bounded number of copies is in flight at once and what overflows the queue is
dropped and counted. Nothing here can slow, fail or block the real request: copies never
wait on the real request's connection, their answers are read and thrown away, their
failures only count. Copies travel pipelined on one connection per shadow endpoint
(upstream/pipeline.py), those of one loop iteration in one write, so that at saturation a
copy costs its share of a syscall instead of a write and a read of its own.
"""

from __future__ import annotations

import random
from collections import deque
from typing import TYPE_CHECKING, Any

from tollway.proxy.core import split
from tollway.proxy.upstream import pipeline
from tollway.snapshot import types

if TYPE_CHECKING:
    from tollway.proxy.chain.build import ListenerPlan
    from tollway.proxy.upstream.cluster import LiveCluster
    from tollway.proxy.upstream.connection import UpstreamConnection
    from tollway.proxy.upstream.pool import EndpointPool

_rand = random.random
BODY_LIMIT = 64 * 1024


def shadow_host(authority: str) -> str:
    """`host` -> `host-shadow`, `host:port` -> `host-shadow:port` (Envoy)."""
    host, sep, port = authority.rpartition(":")
    if sep and port.isdigit() and "]" not in port:
        return f"{host}-shadow:{port}"
    return authority + "-shadow"


class Mirrorer:
    """The proxy-wide mirror queue and its counters.

    A copy whose response frames itself goes on the endpoint's pipelined connection
    (upstream/pipeline.py: the copies of one loop iteration share one write); a copy of
    a HEAD or upgrade request takes a pooled connection of its own, as a request does.
    `in_flight` counts copies either way, so the bounds are the same for both."""

    def __init__(self, max_in_flight: int = 64, max_queue: int = 1024) -> None:
        self.max_in_flight = max_in_flight
        self.max_queue = max_queue
        self.queue: deque[tuple[LiveCluster, bytes, bool]] = deque()
        self.in_flight = 0
        self.sent = 0
        self.dropped = 0
        self.failed = 0
        self.completed = 0

    def submit(self, cluster: LiveCluster, data: bytes, pipelined: bool = True) -> None:
        if self.in_flight < self.max_in_flight:
            self._send(cluster, data, pipelined)
        elif len(self.queue) < self.max_queue:
            self.queue.append((cluster, data, pipelined))
        else:
            self.dropped += 1

    def _send(self, cluster: LiveCluster, data: bytes, pipelined: bool) -> None:
        # no outlier detection: the healthy endpoints, without asking the clock
        usable = cluster.healthy if cluster.outlier is None else cluster.usable(cluster.loop.time())
        if not usable or cluster.closed:
            self.failed += 1
            return
        index = usable[0] if len(usable) == 1 else usable[int(_rand() * len(usable))]
        self.in_flight += 1
        self.sent += 1
        pool = cluster.pools[index]
        if pipelined:
            # typed, so that the calls below are native ones (pool.pipe is Any)
            pipe: pipeline.PipelinedConnection | None = pool.pipe
            if pipe is None or not pipe.accepting:
                pipe = pipeline.pipe_for(pool, self)
                if pipe is None:
                    self.dropped += 1
                    self.done(False)
                    return
            pipe.send(data)
            return
        sink = _Sink(self, data)
        conn = pool.take_idle()
        if conn is not None:
            sink.on_connected(conn)
        elif cluster.limits.try_open_connection():
            pool.connect(sink)
        else:
            self.dropped += 1
            self.done(False)

    def pipe_resend(self, pool: EndpointPool, data: bytes) -> None:
        """A copy the upstream closed on before reading it: once more (still in flight)."""
        cluster = pool.cluster
        pipe = None if cluster.closed else pipeline.pipe_for(pool, self)
        if pipe is None:
            self.done(False)
            return
        pipe.send(data)

    def done(self, ok: bool) -> None:
        self.pipe_done(ok, 1)

    def pipe_done(self, ok: bool, n: int = 1) -> None:
        """PipeOwner (upstream/pipeline.py): `n` copies answered (or failed). A pipeline
        reports the copies one read answered at once: one call per read, not per copy."""
        self.in_flight -= n
        if ok:
            self.completed += n
        else:
            self.failed += n
        while self.queue and self.in_flight < self.max_in_flight:
            cluster, data, pipelined = self.queue.popleft()
            self._send(cluster, data, pipelined)

    def statistics(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "completed": self.completed,
            "failed": self.failed,
            "dropped": self.dropped,
            "queued": len(self.queue),
            "in_flight": self.in_flight,
        }


class _Sink:
    """Receives and discards a mirrored request's response."""

    __slots__ = ("data", "mirrorer", "settled")
    out = ()  # nothing ever to flush (see UpstreamConnection.data_received)

    def __init__(self, mirrorer: Mirrorer, data: bytes) -> None:
        self.mirrorer = mirrorer
        self.data = data
        self.settled = False

    def on_connected(self, conn: UpstreamConnection) -> bool:
        # a HEAD copy's answer has no body whatever its Content-Length says
        conn.send(self, self.data, self.data.startswith(b"HEAD "))
        self.data = b""
        return True

    def on_connect_failed(self, reason: str) -> None:
        self._settle(False)

    def open_for_waiter(self) -> None:  # never queued as a waiter
        self._settle(False)

    def on_response_head(self, conn: Any, status: int, block: bytes, names: list[bytes]) -> None:
        pass

    def on_response_body(self, data: bytes) -> None:
        pass

    def on_response_end(self, conn: Any) -> None:
        self._settle(True)

    def on_upstream_lost(self, conn: Any, received: bool) -> None:
        self._settle(False)

    def on_upgrade(self, conn: Any, rest: bytes) -> None:
        conn.close()
        self._settle(False)

    def on_upstream_pause(self, paused: bool) -> None:
        pass

    def flush(self) -> None:
        pass

    def _settle(self, ok: bool) -> None:
        if not self.settled:
            self.settled = True
            self.mirrorer.done(ok)


class Tap:
    """Collects the (framed) request body, then submits one copy per mirror."""

    __slots__ = ("chunks", "heads", "mirrorer", "pipelined", "size")

    def __init__(
        self, mirrorer: Mirrorer, heads: list[tuple[LiveCluster, bytes]], pipelined: bool = True
    ) -> None:
        self.mirrorer = mirrorer
        self.heads = heads
        self.pipelined = pipelined
        self.chunks: list[bytes] | None = []
        self.size = 0

    def body(self, data: bytes) -> None:
        chunks = self.chunks
        if chunks is not None:
            self.size += len(data)
            if self.size > BODY_LIMIT:
                self.chunks = None
            else:
                chunks.append(data)

    def send(self) -> None:
        if self.chunks is None:  # too large to copy: counted as dropped
            self.mirrorer.dropped += len(self.heads)
            return
        body = b"".join(self.chunks)
        for cluster, head in self.heads:
            self.mirrorer.submit(cluster, head + body, self.pipelined)


# authority -> (its Host line in the upstream head, the shadow's): bounded memo, since a
# mirrored route sees few distinct authorities (cleared whole when full)
_HOST_LINES: dict[str, tuple[bytes, bytes]] = {}
_HOST_LINES_MAX = 256


def _host_lines(authority: str) -> tuple[bytes, bytes]:
    lines = _HOST_LINES.get(authority)
    if lines is not None:
        return lines
    lines = (
        b"\r\nhost: %s\r\n" % authority.encode("latin-1"),
        b"\r\nhost: %s\r\n" % shadow_host(authority).encode("latin-1"),
    )
    if len(_HOST_LINES) >= _HOST_LINES_MAX:
        _HOST_LINES.clear()
    _HOST_LINES[authority] = lines
    return lines


def _copy_to(plan: ListenerPlan, m: types.Mirror) -> LiveCluster | None:
    """The cluster mirror `m` copies this request to, or None: not picked by its
    mirrorPercentage, or its cluster is not in the snapshot (counted as a failed copy)."""
    if m.percent < 100.0 and not split.percent_hit(m.percent, _rand()):
        return None
    cluster = plan.clusters.get(m.cluster)
    if cluster is None:
        plan.mirrorer.failed += 1
    return cluster


def plan_copies(
    plan: ListenerPlan,
    mirrors: tuple[types.Mirror, ...],
    head: bytes,
    authority: str,
    pipelined: bool = True,
) -> Tap | None:
    """Decide which mirrors copy this request (mirrorPercentage) and prepare their heads.

    `pipelined`: the response to this request frames itself (not HEAD, not an upgrade),
    so its copies may share the endpoint's pipelined connection."""
    heads = _heads(plan, mirrors, head, authority)
    if not heads:
        return None
    return Tap(plan.mirrorer, heads, pipelined)


def send_copies(
    plan: ListenerPlan,
    mirrors: tuple[types.Mirror, ...],
    head: bytes,
    authority: str,
    pipelined: bool = True,
) -> None:
    """`plan_copies` then `Tap.send` for a request without a body: no Tap to collect.
    (The loop of `_heads` without its list of pairs per request, and `submit` called as
    a method, which the compiled build makes a native call.)"""
    mirrorer: Mirrorer = plan.mirrorer
    old, new = _host_lines(authority)
    for m in mirrors:
        cluster = _copy_to(plan, m)
        if cluster is not None:
            mirrorer.submit(cluster, head.replace(old, new, 1), pipelined)


def _heads(
    plan: ListenerPlan, mirrors: tuple[types.Mirror, ...], head: bytes, authority: str
) -> list[tuple[LiveCluster, bytes]]:
    """(cluster, head with the shadow Host) per mirror that copies this request."""
    heads: list[tuple[LiveCluster, bytes]] = []
    old, new = _host_lines(authority)
    for m in mirrors:
        cluster = _copy_to(plan, m)
        if cluster is not None:
            heads.append((cluster, head.replace(old, new, 1)))
    return heads
