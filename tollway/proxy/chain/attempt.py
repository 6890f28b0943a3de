"""Attempt: one try of a request upstream (Envoy's UpstreamRequest beside its router).

The per-request `Forward` (forward.py) creates one per try. An Attempt *is* the try's
`Lease` (upstream/lease.py: endpoint, request slot, connection - granted by
`LiveCluster.acquire`, given back only by `Lease.release`), plus its per-try timer and
when it started; it is the sink the upstream connection reports the response to, and it
relays that response to the `Downstream` (chain/downstream.py) as events. Every way a
try can end goes through `end(outcome)` or the response's end, which release the lease
exactly once; a new try gets a new Attempt, so a late event from an old connection or
timer finds a finished Attempt and does nothing.

What stays with the Forward: retries (decided by core/retry.py), the route timer, the
replay buffer and the request body, the end of the request.

Seam for HTTP/2: an HTTP/2 upstream stream reports to the same sink calls
(`on_response_head / body / end`, `on_upstream_lost`), with the head rendered as an
HTTP/1.1 block, so the Attempt and Forward stay as they are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tollway.proxy.core import exchange as rf
from tollway.proxy.core import grpc, retry
from tollway.proxy.core.exchange import OUTCOME_BY_STATUS, Outcome
from tollway.proxy.upstream.lease import Lease

if TYPE_CHECKING:
    import asyncio

    from tollway.proxy.chain.downstream import Downstream
    from tollway.proxy.chain.forward import Forward


class Attempt(Lease):
    """One try (see module doc). `status` is what outlier detection is told of the
    upstream's answer, 0 until its head arrives: its HTTP status, or for a gRPC call
    whose head carries grpc-status (a trailers-only answer: how gRPC servers send errors)
    that status mapped to HTTP as Envoy's router maps it (UNAVAILABLE -> 503), so
    consecutive5xx / consecutiveGatewayErrors see gRPC failures."""

    __slots__ = ("down", "fwd", "head_at", "on_response_body", "out", "started_at", "status",
                 "try_timer")  # fmt: skip

    def __init__(self, fwd: Forward, down: Downstream, now: float) -> None:
        # the Lease fields are set by LiveCluster.acquire, which grants this try
        self.fwd = fwd
        self.down = down
        self.out: Any = down.out  # the downstream's bytes awaiting flush (ResponseSink.out)
        # ResponseSink.on_response_body: body bytes go straight to the downstream, with no
        # call of ours per piece in between
        self.on_response_body = down.response_body
        self.try_timer: asyncio.TimerHandle | None = None
        self.started_at = now
        self.head_at = 0.0
        self.status = 0

    # ================================================================ the try's end
    def end(self, outcome: Outcome | None) -> None:
        """Close the books on this try: timer off, lease released (idempotent)."""
        t = self.try_timer
        if t is not None:
            t.cancel()
            self.try_timer = None
        if not self.released:
            self.release(outcome, self.fwd.loop.time())

    def seen(self) -> Outcome | None:
        """What the upstream said, if anything: its status once the head arrived."""
        return OUTCOME_BY_STATUS[self.status] if self.status else None

    def on_try_timeout(self) -> None:
        self.try_timer = None
        fwd = self.fwd
        if fwd.finished or fwd.attempt is not self or fwd.ex.response_started:
            return
        fwd.failed(self, rf.OUTCOME_TIMEOUT, 504, rf.UT, "upstream request timeout")

    # ================================================================ Lease hooks
    def send_on(self, conn: Any) -> None:
        """Send the head (and any body received so far) on this try's connection."""
        self.conn = conn
        fwd = self.fwd
        pending = fwd.pending
        if pending:
            data = fwd.head + b"".join(pending)
            fwd.pending = ()
            if fwd.pending_size > 65536:
                self.down.resume_reading()
            fwd.pending_size = 0
        else:
            data = fwd.head
        conn.send(self, data, fwd.ex.method == "HEAD")

    def connect_failed(self, reason: str) -> None:
        fwd = self.fwd
        if fwd.finished or fwd.attempt is not self:
            return
        fwd.failed(self, rf.OUTCOME_CONNECT_FAILURE, 503, rf.UF, CONNECT_FAILURE_BODY + reason)

    # ================================================================ as the response sink
    def on_response_head(
        self, conn: Any, status: int, block: bytes, names: list[bytes]
    ) -> None:
        fwd = self.fwd
        told = status
        if status >= 400:
            if fwd.policy.attempts and fwd.retry_response(self, status, block):
                return
        elif fwd.ex.grpc and b"grpc-status" in block:
            # a gRPC answer with no body (HTTP/2 only): its head has the grpc-status
            code = grpc.status_in_block(block)
            if code is not None:
                told = grpc.grpc_to_http(code)
            if fwd.policy.grpc_codes and fwd.retry_response(self, status, block, told):
                return
        t = self.try_timer
        if t is not None:
            t.cancel()
            self.try_timer = None
        if fwd.retry_held:  # the retried try answered: its budget slot goes back (Envoy)
            fwd.retry_held = retry.settle(fwd.cluster.limits, True)
        self.status = told
        self.head_at = now = fwd.loop.time()
        ex = fwd.ex
        cluster = fwd.cluster
        index = self.index
        ex.status = status
        ex.upstream_time = now - self.started_at
        ex.upstream_host = cluster.host_names[index]
        row = ex.plan.label_rows.get(cluster.name)  # labels_for, inlined once compiled
        ex.label_index = (
            row[index + 1] if row is not None else ex.plan.labels_for(cluster.name, index)
        )
        ex.response_started = True
        self.down.response_head(ex, status, block, fwd.response_ops)

    def on_response_trailers(self, fields: list[tuple[bytes, bytes]]) -> None:
        """An HTTP/2 upstream's trailers (gRPC's grpc-status): before the end."""
        self.down.response_trailers(fields)

    def flush(self) -> None:
        """End of one upstream read: the downstream writes what it produced in one go."""
        self.down.flush()

    def on_response_end(self, conn: Any) -> None:
        fwd = self.fwd
        if fwd.finished:
            return
        self.conn = None  # the pool has it back
        t = self.try_timer
        if t is not None:
            t.cancel()
            self.try_timer = None
        self.release(OUTCOME_BY_STATUS[self.status], self.head_at)
        fwd.finished = True  # Forward.finish, inlined: the per-request path
        rt = fwd.route_timer
        if rt is not None:
            rt.cancel()
            fwd.route_timer = None
        # (any retry budget slot went back when the head came; the replay buffer goes with
        # the Forward, freed by refcount as soon as the downstream drops the exchange)
        self.down.response_end(fwd.ex)

    def on_upstream_lost(self, conn: Any, received: bool) -> None:
        fwd = self.fwd
        if fwd.finished or conn is not self.conn:
            return
        self.conn = None
        down = self.down
        down.flush()
        ex = fwd.ex
        if ex.response_started:
            if down.ends_at_close(received):  # a body read until the upstream closes
                self.end(self.seen())
                fwd.finish()
                down.response_end(ex)
                return
            ex.add_flag(rf.UC)
            self.end(rf.OUTCOME_RESET)
            fwd.finish()
            down.reset(ex)
            return
        if conn.reused and not received and fwd.replay is not None and not fwd.stale_retried:
            # a pooled connection the upstream had already closed: once more, on a fresh one
            self.end(None)
            fwd.retry_stale()
            return
        fwd.failed(self, rf.OUTCOME_RESET, 503, rf.UC, RESET_BODY)

    def on_upgrade(self, conn: Any, rest: bytes) -> None:
        """The upstream switched protocols: from now on bytes flow both ways untouched.

        The connection leaves the pool with the tunnel and keeps its connection slot
        until it closes; the request slot goes back now."""
        fwd = self.fwd
        if fwd.finished:
            conn.close()
            return
        self.conn = None
        self.end(self.seen())
        fwd.finish()
        down = self.down
        down.flush()
        down.start_tunnel(fwd.ex, conn, rest)

    def on_upstream_pause(self, paused: bool) -> None:
        if paused:
            self.down.pause_reading()
        else:
            self.down.resume_reading()


CONNECT_FAILURE_BODY = (
    "upstream connect error or disconnect/reset before headers. reset reason: "
    "connection failure, transport failure reason: "
)
RESET_BODY = (
    "upstream connect error or disconnect/reset before headers. reset reason: "
    "connection termination"
)

