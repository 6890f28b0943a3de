"""Lease: one try's hold on an upstream cluster, and the only code that gives it back.

`LiveCluster.acquire` (cluster.py) picks an endpoint and takes what a try needs - a
request slot, the endpoint's active-request count, and either an idle connection, a
connection being opened for it, or a place in the pending queue - and returns a `Lease`,
or a `Refusal` (status, response flag, body) when it cannot: no healthy host (503 UH) or
a circuit breaker full (503 UO). `Lease.release(outcome, now)` is the one place that
gives all of it back and feeds the try's outcome to outlier detection, exactly once
whatever happened (response, reset, timeout, abort, upgrade): Envoy's upstream request
and httpcore's pool, where state decisions live apart from the IO carrying them out.

A lease is what a try *is* on the upstream side, so the router's per-try `Attempt`
(chain/attempt.py) subclasses it: one object per try on the hot path instead of two, and
no lease <-> holder reference cycle. The subclass supplies the two hooks a lease calls
when the connection it waited for is ready or failed to open (`send_on`,
`connect_failed`) and never touches the counters itself.

Seams (kept explicit for HTTP/2):
- The channel a lease carries its request on (`Channel`) is today a whole HTTP/1.1
  `UpstreamConnection`, held exclusively from send to response end. An HTTP/2 upstream
  connection is another kind of channel: a stream on a shared connection, with the same
  `send / write / set_reading / detach` calls, its own stream limits, and the same lease
  accounting around it.
- Connection slots (`tcp.maxConnections`) belong to connections, not leases: the pool
  takes one before a connect and frees it once, when that connection closes (pool.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, NamedTuple, Protocol

from tollway.proxy.core import exchange as rf
from tollway.proxy.core.exchange import Outcome

if TYPE_CHECKING:
    from tollway.proxy.upstream.cluster import LiveCluster


class Refusal(NamedTuple):
    """Why a try could not start: answer the client locally with this."""

    status: int
    flag: str
    body: str


OVERFLOW_BODY: Final = (
    "upstream connect error or disconnect/reset before headers. reset reason: overflow"
)
NO_HEALTHY: Final = Refusal(503, rf.UH, "no healthy upstream")
OVERFLOW: Final = Refusal(503, rf.UO, OVERFLOW_BODY)


class Channel(Protocol):
    """What a lease carries its request on (an HTTP/1.1 connection; an HTTP/2 stream)."""

    def send(self, sink: Any, data: bytes, head_request: bool) -> None: ...

    def write(self, data: bytes) -> None: ...

    def set_reading(self, on: bool) -> None: ...

    def detach(self) -> None: ...

    def close(self) -> None: ...


class Lease:
    """One try's slot on a cluster (see module doc).

    Unbound until `LiveCluster.acquire` grants it (which sets every field below).
    `conn` is the connection the request travels on (None while it is being opened or
    the lease waits for one); the subclass clears it once the connection is back in the
    pool. `index` is the endpoint, which can change once while waiting: a queued request
    takes whichever endpoint's connection frees up first."""

    __slots__ = ("cluster", "conn", "index", "released", "waiting")

    cluster: LiveCluster
    conn: Any
    index: int
    released: bool
    waiting: bool

    # ------------------------------------------------------------ the subclass's hooks
    def send_on(self, conn: Any) -> None:
        """The connection this lease waited for is ready: send the request on it."""
        raise NotImplementedError

    def connect_failed(self, reason: str) -> None:
        """The connection opened for this lease failed (`reason` as Envoy words it)."""
        raise NotImplementedError

    def release(self, outcome: Outcome | None, now: float) -> None:
        """Give back everything this lease holds; `outcome` (None: nothing to tell the
        detector, e.g. the client went away) feeds outlier detection. Idempotent.

        A connection still carrying this lease's request is closed: its response, if
        any, would belong to nobody."""
        if self.released:
            return
        self.released = True
        cluster = self.cluster
        if self.waiting:
            self.waiting = False
            cluster.drop_waiter(self)
            cluster.limits.pending -= 1
        conn = self.conn
        if conn is not None:
            self.conn = None
            if conn.sink is not None:  # mid-request: the connection cannot be reused
                conn.detach()
        index = self.index
        cluster.active[index] -= 1
        cluster.limits.requests -= 1
        od = cluster.outlier
        if od is not None and outcome is not None:
            status = outcome.status
            if status is not None:  # the upstream answered
                od.observe_status(index, status, now)
            else:
                od.observe(index, outcome, now)

    # ------------------------------------------------------------ as a pool waiter
    def on_connected(self, conn: Any) -> bool:
        """A connection for this lease: newly opened, or handed over by another request
        when the lease waited. False: the lease is gone, the pool keeps the connection."""
        if self.released or self.conn is not None:
            return False
        if self.waiting:
            self.waiting = False
            self.cluster.limits.pending -= 1
        pool = conn.pool
        index = pool.index
        # a waiter may get another endpoint's connection; a connection opened for a lease
        # whose cluster was since replaced comes from a pool the new cluster adopted
        # (LiveCluster.adopt): the lease's accounting stays with its own cluster
        if index != self.index and pool.cluster is self.cluster:
            active = self.cluster.active
            active[self.index] -= 1
            active[index] += 1
            self.index = index
        self.send_on(conn)
        return True

    def on_connect_failed(self, reason: str) -> None:
        if not self.released and self.conn is None:
            self.connect_failed(reason)

    def open_for_waiter(self) -> None:
        """A connection slot freed up while this lease waited (the cluster took the slot
        for it): open a connection to its endpoint."""
        if self.waiting:
            self.waiting = False
            self.cluster.limits.pending -= 1
        self.cluster.pools[self.index].connect(self)
