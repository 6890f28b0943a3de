"""Forward: one request sent upstream, across its tries (Envoy's router filter, per request).

The router creates it once a route and cluster are chosen. It owns what outlives a single
try: the request head and body (streamed as it arrives, kept in a replay buffer up to a
limit so a retry can send it again), the route timer, the retry bookkeeping, and the end
of the request. Each try is an `Attempt` (attempt.py), the `Lease` the cluster grants
(upstream/lease.py); a failed try asks the pure `core.retry.decide` whether to try again
- retryOn, the route's attempts, the cluster's maxRetries budget - and a new Attempt goes,
on another host when there is one. Everything is driven by Protocol callbacks and loop
timers; no task per request. The client side is any `Downstream` (chain/downstream.py).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from tollway.proxy.chain.attempt import Attempt
from tollway.proxy.core import exchange as rf
from tollway.proxy.core import retry
from tollway.proxy.core.exchange import OUTCOME_BY_STATUS, Outcome
from tollway.proxy.http1 import response, write
from tollway.proxy.upstream.lease import Refusal

if TYPE_CHECKING:
    import asyncio

    from tollway.proxy.chain.downstream import Downstream
    from tollway.proxy.chain.stream import Exchange
    from tollway.proxy.core.headerops import ResponseOps
    from tollway.proxy.core.retry import RetryPolicy
    from tollway.proxy.upstream.cluster import LiveCluster

_rand = random.random
_span_rng = random.Random()  # span ids of retried tries (core/trace.py draws the first)


class Forward:
    """The upstream side of one exchange (see module doc)."""

    __slots__ = (
        "attempt",
        "body_chunked",
        "body_done",
        "cluster",
        "down",
        "ex",
        "finished",
        "hash_key",
        "head",
        "loop",
        "pending",
        "pending_size",
        "policy",
        "replay",
        "replay_limit",
        "response_ops",
        "retries_done",
        "retry_held",
        "route_timer",
        "stale_retried",
        "tap",
        "tried",
    )

    def __init__(
        self,
        ex: Exchange,
        down: Downstream,
        cluster: LiveCluster,
        head: bytes,
        policy: RetryPolicy,
        hash_key: str | None,
        response_ops: ResponseOps | None,
        replay_limit: int,
    ) -> None:
        self.ex = ex
        self.down = down
        self.cluster = cluster
        self.loop: asyncio.AbstractEventLoop = cluster.loop
        self.head = head
        self.policy = policy
        self.hash_key = hash_key
        self.response_ops = response_ops
        self.replay_limit = replay_limit
        self.body_chunked = ex.chunked
        self.body_done = False
        # Body bytes not yet written on the current try, and every body byte so far (for a
        # retry; None once it outgrew the limit). An empty tuple until a body arrives: most
        # requests have none, and a list each would be two allocations per request.
        self.pending: list[bytes] | tuple[bytes, ...] = ()
        self.pending_size = 0
        self.replay: list[bytes] | tuple[bytes, ...] | None = ()
        self.attempt: Attempt | None = None
        self.tried: tuple[int, ...] = ()  # hosts of failed tries, for the retries' pick
        self.retries_done = 0
        self.retry_held = False  # a slot of the cluster's retry budget (core/retry.py)
        self.finished = False
        self.route_timer: asyncio.TimerHandle | None = None
        self.stale_retried = False
        self.tap: Any = None  # mirror copies collecting the body

    # ================================================================ request side
    def start(self, timeout: float | None) -> None:
        if timeout:
            self.route_timer = self.loop.call_later(timeout, self._route_timeout)
        ex = self.ex
        body = ex.body_buffer
        ex.body_buffer = None
        if body:
            for piece in body:
                self.body(piece)
        if ex.body_done:
            self.body_end()
        self._try()

    def body(self, data: bytes) -> None:
        """A piece of the request body from downstream (decoded; framed here)."""
        if self.finished:
            return
        if self.body_chunked:
            data = write.chunk(data)
        if self.tap is not None:
            self.tap.body(data)
        replay = self.replay
        if replay is not None:
            if not isinstance(replay, list):
                replay = self.replay = []
            replay.append(data)
            self.replay_limit -= len(data)
            if self.replay_limit < 0:
                self.replay = None
        att = self.attempt
        conn = att.conn if att is not None else None
        if conn is not None:
            conn.write(data)
        else:
            pending = self.pending
            if not isinstance(pending, list):
                pending = self.pending = []
            pending.append(data)
            self.pending_size += len(data)
            if self.pending_size > 65536:
                self.down.pause_reading()

    def body_end(self) -> None:
        if self.finished or self.body_done:
            return
        if self.body_chunked:
            self.body_chunked = False
            self.body(write.LAST_CHUNK)
        self.body_done = True
        if self.tap is not None:
            tap, self.tap = self.tap, None
            tap.send()

    def abort(self) -> None:
        """The downstream went away: stop everything, the upstream connection is lost."""
        if self.finished:
            return
        self.ex.add_flag(rf.DC)
        att = self.attempt
        if att is not None:
            att.end(att.seen())
        self.finish()

    def pause_upstream(self, paused: bool) -> None:
        """The downstream cannot take more response bytes: stop reading the upstream."""
        att = self.attempt
        conn = att.conn if att is not None else None
        if conn is not None:
            conn.set_reading(not paused)

    # ================================================================ tries
    def _try(self, fresh: bool = False) -> None:
        now = self.loop.time()
        att = self.cluster.acquire(Attempt(self, self.down, now), now, _rand(), self.hash_key,
                                   self.tried, fresh)
        if isinstance(att, Refusal):
            self._local(att.status, att.flag, att.body)
            return
        self.attempt = att
        per_try = self.policy.per_try_timeout
        if per_try:
            att.try_timer = self.loop.call_later(per_try, att.on_try_timeout)
        conn = att.conn
        if conn is not None:
            if self.pending:
                att.send_on(conn)
            else:  # send_on inlined: nothing of the body to join
                conn.send(att, self.head, self.ex.method == "HEAD")

    def failed(self, att: Attempt, outcome: Outcome, status: int, flag: str, body: str) -> None:
        """A try produced no usable response: retry if allowed, else answer locally."""
        att.end(outcome)
        if self._decide(outcome, None) == retry.RETRY:
            self.tried += (att.index,)  # the retry prefers another host
            self._retry(outcome)
            return
        self._local(status, flag, body)

    def retry_response(self, att: Attempt, status: int, block: bytes, told: int = 0) -> bool:
        """The upstream answered an error status: True if it is retried (the response is
        dropped), False if it is relayed. `told`: the status outlier detection is told
        when it is not `status` (a gRPC answer's grpc-status mapped, see Attempt)."""
        outcome = OUTCOME_BY_STATUS[status]
        if self._decide(outcome, response.header_view(block)) != retry.RETRY:
            return False
        att.end(OUTCOME_BY_STATUS[told] if told else outcome)
        self.tried += (att.index,)
        self._retry(outcome)
        return True

    def _decide(self, outcome: Outcome, headers: Any) -> int:
        """core.retry.decide for this request, and the flags its verdict sets."""
        limits = self.cluster.limits
        if self.retry_held:  # the previous retry's slot goes back first (Envoy)
            self.retry_held = retry.settle(limits, True)
        ex = self.ex
        if ex.response_started or ex.upgrade:
            return retry.NO
        verdict = retry.decide(
            self.policy, self.retries_done, outcome, headers, self.replay is not None, limits
        )
        if verdict == retry.RETRY:
            self.retries_done += 1
            self.retry_held = True
        elif verdict == retry.LIMIT:
            ex.add_flag(rf.URX)
        elif verdict == retry.OVERFLOW:
            ex.add_flag(rf.UO)
        return verdict

    def _retry(self, outcome: Outcome) -> None:
        assert self.replay is not None  # decide() said the body can be replayed
        if self.ex.span is not None:  # a sampled request whose spans are reported
            self._next_try_span(outcome)
        self.pending = list(self.replay)
        self.pending_size = sum(len(p) for p in self.pending)
        delay = self.policy.backoff(self.retries_done, _rand())
        if delay > 0.0005:
            self.loop.call_later(delay, self._retry_now)
        else:
            self._try()

    def _next_try_span(self, outcome: Outcome) -> None:
        """Envoy reports one upstream (CLIENT) span per try: keep the ended try's for the
        tracer (chain/tracing.py) and send the next try under a span id of its own."""
        ex = self.ex
        trace_id, server, parent, client = ex.span
        att = self.attempt
        started = att.started_at if att is not None else self.loop.time()
        host = self.cluster.host_names[self.tried[-1]] if self.tried else ""
        status = outcome.status if outcome.status is not None else 0
        tries = ex.attrs.setdefault("tries", [])
        tries.append((client, started, self.loop.time(), host, status,
                      outcome.local_failure or ""))
        fresh = f"{_span_rng.getrandbits(64) or 1:016x}"
        self.head = self.head.replace(client.encode(), fresh.encode())
        ex.span = (trace_id, server, parent, fresh)

    def _retry_now(self) -> None:
        if not self.finished:
            self._try()

    def retry_stale(self) -> None:
        """The pooled connection was dead before the upstream read anything: send again
        on a fresh one, to the same host, without counting a retry.

        Fresh means newly dialled, never another idle connection of the pool: what closed
        one idle connection (an upstream restart, its keep-alive timeout) has usually
        closed its siblings too, and this resend is the only one (httpcore and Envoy
        resend on a new connection too)."""
        assert self.replay is not None
        self.stale_retried = True
        self.pending = list(self.replay)
        self.pending_size = sum(len(p) for p in self.pending)
        self._try(True)  # `tried` left as it was: the same host may be picked again

    def _route_timeout(self) -> None:
        self.route_timer = None
        if self.finished:
            return
        ex = self.ex
        ex.add_flag(rf.UT)
        att = self.attempt
        if ex.response_started:
            if att is not None:
                att.end(att.seen())
            self.finish()
            self.down.reset(ex)
            return
        if att is not None:
            att.end(rf.OUTCOME_TIMEOUT)
        self._local(504, "", "upstream request timeout")

    # ================================================================ endings
    def _local(self, status: int, flag: str, body: str) -> None:
        self.ex.label_index = self.ex.plan.labels_for(self.cluster.name, -1)
        self.finish()
        self.down.local_reply(self.ex, status, flag, body)

    def finish(self) -> None:
        """The request is over: timers off, buffers dropped, the retry slot given back."""
        self.finished = True
        if self.route_timer is not None:
            self.route_timer.cancel()
            self.route_timer = None
        att = self.attempt
        if att is not None and not att.released:  # every path ends its try first
            att.end(None)
        if self.retry_held:
            self.retry_held = retry.settle(self.cluster.limits, True)
        self.pending = ()
        self.replay = None
