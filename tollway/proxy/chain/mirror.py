"""Mirroring: a fire-and-forget copy of a request to a shadow cluster (Host + "-shadow").

The copy is collected while the real request's body streams (up to a small limit), then
queued; a bounded number of copies is in flight at once and what overflows the queue is
dropped and counted. Nothing here can slow, fail or block the real request: copies never
wait on the real request's connection, their answers are read and thrown away, their
failures only count.
"""

from __future__ import annotations

import random
from collections import deque
from typing import TYPE_CHECKING, Any

from tollway.proxy.core import split
from tollway.snapshot import types

if TYPE_CHECKING:
    from tollway.proxy.chain.build import ListenerPlan
    from tollway.proxy.upstream.cluster import LiveCluster
    from tollway.proxy.upstream.connection import UpstreamConnection

_rand = random.random
BODY_LIMIT = 64 * 1024


def shadow_host(authority: str) -> str:
    """`host` -> `host-shadow`, `host:port` -> `host-shadow:port` (Envoy)."""
    host, sep, port = authority.rpartition(":")
    if sep and port.isdigit() and "]" not in port:
        return f"{host}-shadow:{port}"
    return authority + "-shadow"


class Mirrorer:
    """The proxy-wide mirror queue and its counters."""

    def __init__(self, max_in_flight: int = 64, max_queue: int = 1024) -> None:
        self.max_in_flight = max_in_flight
        self.max_queue = max_queue
        self.queue: deque[tuple[LiveCluster, bytes]] = deque()
        self.in_flight = 0
        self.sent = 0
        self.dropped = 0
        self.failed = 0
        self.completed = 0

    def submit(self, cluster: LiveCluster, data: bytes) -> None:
        if self.in_flight < self.max_in_flight:
            self._send(cluster, data)
        elif len(self.queue) < self.max_queue:
            self.queue.append((cluster, data))
        else:
            self.dropped += 1

    def _send(self, cluster: LiveCluster, data: bytes) -> None:
        usable = cluster.usable(cluster.loop.time())
        if not usable or cluster.closed:
            self.failed += 1
            return
        index = usable[0] if len(usable) == 1 else usable[int(_rand() * len(usable))]
        self.in_flight += 1
        self.sent += 1
        sink = _Sink(self, data)
        pool = cluster.pools[index]
        conn = pool.take_idle()
        if conn is not None:
            sink.on_connected(conn)
        elif cluster.limits.try_open_connection():
            pool.connect(sink)
        else:
            self.dropped += 1
            self.done(False)

    def done(self, ok: bool) -> None:
        self.in_flight -= 1
        if ok:
            self.completed += 1
        else:
            self.failed += 1
        while self.queue and self.in_flight < self.max_in_flight:
            cluster, data = self.queue.popleft()
            self._send(cluster, data)

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

    def __init__(self, mirrorer: Mirrorer, data: bytes) -> None:
        self.mirrorer = mirrorer
        self.data = data
        self.settled = False

    def on_connected(self, conn: UpstreamConnection) -> bool:
        conn.send(self, self.data, False)
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

    __slots__ = ("chunks", "heads", "mirrorer", "size")

    def __init__(self, mirrorer: Mirrorer, heads: list[tuple[LiveCluster, bytes]]) -> None:
        self.mirrorer = mirrorer
        self.heads = heads
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
            self.mirrorer.submit(cluster, head + body)


def plan_copies(
    plan: ListenerPlan, mirrors: tuple[types.Mirror, ...], head: bytes, authority: str
) -> Tap | None:
    """Decide which mirrors copy this request (mirrorPercentage) and prepare their heads."""
    heads: list[tuple[LiveCluster, bytes]] = []
    old = b"\r\nhost: %s\r\n" % authority.encode("latin-1")
    new = b"\r\nhost: %s\r\n" % shadow_host(authority).encode("latin-1")
    for m in mirrors:
        if m.percent < 100.0 and not split.percent_hit(m.percent, _rand()):
            continue
        cluster = plan.clusters.get(m.cluster)
        if cluster is None:
            plan.mirrorer.failed += 1
            continue
        heads.append((cluster, head.replace(old, new, 1)))
    if not heads:
        return None
    return Tap(plan.mirrorer, heads)
