"""Forward: one request sent upstream, with its attempts, timers and streamed bodies.

The router creates it once a route and cluster are chosen. It picks an endpoint (core's
balancer over the outlier detector's usable hosts), takes a pooled connection or opens one
within the cluster's limits (overflow: 503 UO at once), writes the request head and
streams the body, relays the response to the downstream connection, and on failure asks
core's RetryPolicy whether to try again - on another host when there is one. Everything is
driven by Protocol callbacks and loop timers; no task per request.
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING, Any

from tollway.proxy.core import exchange as rf
from tollway.proxy.core.exchange import Outcome
from tollway.proxy.http1 import response, write

if TYPE_CHECKING:
    from tollway.proxy.chain.stream import Exchange
    from tollway.proxy.core.retry import RetryPolicy
    from tollway.proxy.upstream.cluster import LiveCluster
    from tollway.proxy.upstream.connection import UpstreamConnection

_rand = random.random

CONNECT_FAILURE_BODY = (
    "upstream connect error or disconnect/reset before headers. reset reason: "
    "connection failure, transport failure reason: "
)
RESET_BODY = (
    "upstream connect error or disconnect/reset before headers. reset reason: "
    "connection termination"
)

_OK = Outcome(200, None)

# response modes (see http1/response.py)
_PASS = response.PASS
_CHUNK = response.CHUNK
_RAW_CLOSE = response.RAW_CLOSE
_NONE = response.NONE
_NO_BODY_STATUS = response.NO_BODY_STATUS


class Forward:
    """The upstream side of one exchange (see module doc)."""

    __slots__ = (
        "attempt",
        "body_chunked",
        "body_done",
        "cluster",
        "conn",
        "down",
        "ex",
        "finished",
        "hash_key",
        "head",
        "index",
        "loop",
        "mode",
        "out",
        "pending",
        "pending_size",
        "policy",
        "replay",
        "replay_limit",
        "response_ops",
        "retries_done",
        "route_timer",
        "stale_retried",
        "started_at",
        "tap",
        "tried",
        "try_timer",
        "waiting",
    )

    def __init__(
        self,
        ex: Exchange,
        down: Any,
        cluster: LiveCluster,
        head: bytes,
        policy: RetryPolicy,
        hash_key: str | None,
        response_ops: Any,
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
        self.pending: list[bytes] = []  # body bytes not yet written on the current try
        self.pending_size = 0
        self.replay: list[bytes] | None = []  # every body byte so far, for a retry
        self.conn: UpstreamConnection | None = None
        self.index = -1
        self.tried: tuple[int, ...] = ()
        self.attempt = 0
        self.retries_done = 0
        self.waiting = False
        self.finished = False
        self.try_timer: asyncio.TimerHandle | None = None
        self.route_timer: asyncio.TimerHandle | None = None
        self.mode = _PASS
        self.out: list[bytes] = []  # response bytes of the current upstream read
        self.started_at = 0.0
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
            replay.append(data)
            self.replay_limit -= len(data)
            if self.replay_limit < 0:
                self.replay = None
        conn = self.conn
        if conn is not None:
            conn.write(data)
        else:
            self.pending.append(data)
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
        self._end_try(None)
        self._finish()

    # ================================================================ attempts
    def _try(self) -> None:
        cluster = self.cluster
        now = self.loop.time()
        index = cluster.pick(now, _rand(), self.hash_key, self.tried)
        if index is None:
            self._local(503, rf.UH, "no healthy upstream")
            return
        if not cluster.limits.try_start_request():
            cluster.overflows += 1
            self._local(503, rf.UO, "upstream connect error or disconnect/reset before headers. "
                        "reset reason: overflow")
            return
        self.attempt += 1
        self.index = index
        self.tried += (index,)
        cluster.active[index] += 1
        self.started_at = now
        per_try = self.policy.per_try_timeout
        if per_try:
            self.try_timer = self.loop.call_later(per_try, self._try_timeout)
        pool = cluster.pools[index]
        conn = pool.take_idle()
        if conn is not None:
            if self.pending:
                self._send(conn)
            else:  # _send inlined: nothing of the body to join
                self.conn = conn
                conn.send(self, self.head, self.ex.method == "HEAD")
        elif self.ex.upgrade or cluster.limits.try_open_connection():
            pool.connect(self)
        elif cluster.limits.try_enqueue_pending():
            self.waiting = True
            cluster.waiters.append(self)
        else:
            cluster.overflows += 1
            self._end_try(None)
            self._local(503, rf.UO, "upstream connect error or disconnect/reset before headers. "
                        "reset reason: overflow")

    def open_for_waiter(self) -> None:
        """A connection slot freed up while this request waited: open one."""
        self.waiting = False
        self.cluster.pools[self.index].connect(self)

    def on_connected(self, conn: UpstreamConnection) -> bool:
        """A connection for this try (new, or handed over by another request)."""
        if self.finished or self.conn is not None:
            return False
        if self.waiting:
            self.waiting = False
        index = conn.pool.index
        if index != self.index:  # a waiter may get another endpoint's connection
            self.cluster.active[self.index] -= 1
            self.cluster.active[index] += 1
            self.index = index
        self._send(conn)
        return True

    def on_connect_failed(self, reason: str) -> None:
        if self.finished or self.conn is not None:
            return
        self._failed(rf.OUTCOME_CONNECT_FAILURE, 503, rf.UF, CONNECT_FAILURE_BODY + reason)

    def _send(self, conn: UpstreamConnection) -> None:
        self.conn = conn
        pending = self.pending
        if pending:
            data = self.head + b"".join(pending)
            self.pending = []
            if self.pending_size > 65536:
                self.down.resume_reading()
            self.pending_size = 0
        else:
            data = self.head
        conn.send(self, data, self.ex.method == "HEAD")

    def _end_try(self, outcome: Outcome | None) -> None:
        """Close the books on the current try (outcome None: do not tell the detector)."""
        if self.try_timer is not None:
            self.try_timer.cancel()
            self.try_timer = None
        cluster = self.cluster
        if self.waiting:
            self.waiting = False
            cluster.drop_waiter(self)
        conn = self.conn
        if conn is not None:
            self.conn = None
            if conn.sink is self:
                conn.detach()
        if self.index >= 0:
            cluster.active[self.index] -= 1
            cluster.limits.end_request()
            if outcome is not None:
                cluster.observe(self.index, outcome, self.loop.time())
            self.index = -1

    def _failed(self, outcome: Outcome, status: int, flag: str, body: str) -> None:
        """A try produced no usable response: retry if allowed, else answer locally."""
        self._end_try(outcome)
        if self._may_retry(outcome, None):
            return
        self._local(status, flag, body)

    def _may_retry(self, outcome: Outcome, headers: Any) -> bool:
        if self.ex.response_started or self.ex.upgrade:
            return False
        if self.retries_done >= self.policy.attempts:
            if self.retries_done and self.policy.should_retry(outcome, headers):
                self.ex.add_flag(rf.URX)
            return False
        if self.replay is None:  # the body outgrew the retry buffer
            return False
        if not self.policy.should_retry(outcome, headers):
            return False
        self.retries_done += 1
        self.pending = list(self.replay)
        self.pending_size = sum(len(p) for p in self.pending)
        delay = self.policy.backoff(self.retries_done, _rand())
        if delay > 0.0005:
            self.loop.call_later(delay, self._retry_now)
        else:
            self._try()
        return True

    def _retry_now(self) -> None:
        if not self.finished:
            self._try()

    def _try_timeout(self) -> None:
        self.try_timer = None
        if self.finished or self.ex.response_started:
            return
        self._failed(rf.OUTCOME_TIMEOUT, 504, rf.UT, "upstream request timeout")

    def _route_timeout(self) -> None:
        self.route_timer = None
        if self.finished:
            return
        self.ex.add_flag(rf.UT)
        if self.ex.response_started:
            self._end_try(None)
            self._finish()
            self.down.reset(self.ex)
            return
        self._end_try(rf.OUTCOME_TIMEOUT)
        self._local(504, "", "upstream request timeout")

    # ================================================================ response side
    def on_response_head(
        self, conn: UpstreamConnection, status: int, block: bytes, names: list[bytes]
    ) -> None:
        ex = self.ex
        if status >= 400 and self.policy.attempts and self._retry_response(
            Outcome(status, None), block
        ):
            return
        if self.try_timer is not None:
            self.try_timer.cancel()
            self.try_timer = None
        now = self.loop.time()
        cluster = self.cluster
        index = self.index
        if cluster.outlier is not None:
            cluster.outlier.observe_status(index, status, now)
        ex.status = status
        ex.upstream_time = now - self.started_at
        ex.upstream_host = cluster.host_names[index]
        row = ex.plan.label_rows.get(cluster.name)  # labels_for, inlined once compiled
        ex.label_index = (
            row[index + 1] if row is not None else ex.plan.labels_for(cluster.name, index)
        )
        ex.response_started = True
        head = self._response_head(status, block)
        ex.bytes_out += len(head)
        self.out.append(head)  # written with the body bytes of the same read: one syscall

    def _retry_response(self, outcome: Outcome, block: bytes) -> bool:
        headers = response.header_view(block) if self.policy.attempts else None
        if self.retries_done >= self.policy.attempts or self.replay is None:
            if self.retries_done and self.policy.should_retry(outcome, headers):
                self.ex.add_flag(rf.URX)
            return False
        if not self.policy.should_retry(outcome, headers):
            return False
        self._end_try(outcome)
        return self._may_retry(outcome, headers)

    def _response_head(self, status: int, block: bytes) -> bytes:
        ex = self.ex
        if status == 101:
            self.mode = _NONE
            return block + b"\r\n"
        found, cut, length_framed = response.analyse(block)
        # response.mode_for, inlined
        if ex.method == "HEAD" or status in _NO_BODY_STATUS or status < 200:
            mode = _NONE
        elif length_framed:
            mode = _PASS
        else:
            mode = _CHUNK if ex.http11 else _RAW_CLOSE
        self.mode = mode
        if mode == _RAW_CLOSE or ex.upgrade:  # a refused upgrade ends the connection
            ex.keep_alive = False
        tail = b"\r\n" if ex.keep_alive else b"connection: close\r\n\r\n"
        if self.response_ops is None and mode in (_PASS, _NONE):
            return cut + tail  # what head_bytes gives here: the upstream's head, hop cut
        return response.head_bytes(status, block, found, mode, tail, self.response_ops, cut)

    def on_response_body(self, data: bytes) -> None:
        if self.mode == _CHUNK:
            if not data:
                return
            data = write.chunk(data)
        self.ex.bytes_out += len(data)
        self.out.append(data)

    def flush(self) -> None:
        """End of one upstream read: write what it produced downstream in one go."""
        out = self.out
        if out:
            self.down.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()

    def on_response_end(self, conn: UpstreamConnection) -> None:
        if self.finished:
            return
        if self.mode == _CHUNK:
            self.ex.bytes_out += 5
            self.out.append(write.LAST_CHUNK)
        out = self.out
        if out:
            tr = self.down.transport  # Downstream.write, inlined
            if tr is not None:
                tr.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()
        self.conn = None  # the pool has it back
        if self.try_timer is not None:
            self.try_timer.cancel()
            self.try_timer = None
        cluster = self.cluster
        cluster.active[self.index] -= 1
        cluster.limits.end_request()
        self.index = -1
        self.finished = True
        if self.route_timer is not None:
            self.route_timer.cancel()
            self.route_timer = None
        self.replay = None
        self.down.response_done(self.ex)

    def on_upstream_lost(self, conn: UpstreamConnection, received: bool) -> None:
        if self.finished or conn is not self.conn:
            return
        self.conn = None
        self.flush()
        if self.ex.response_started:
            if self.mode == _RAW_CLOSE or (self.mode == _CHUNK and not received):
                self._end_try(None)
                self._finish()
                self.down.response_done(self.ex)
                return
            self.ex.add_flag(rf.UC)
            self._end_try(rf.OUTCOME_RESET)
            self._finish()
            self.down.reset(self.ex)
            return
        if conn.reused and not received and self.replay is not None and not self.stale_retried:
            # a pooled connection the upstream had already closed: once more, on a fresh one
            self.stale_retried = True
            self._end_try(None)
            self.pending = list(self.replay)
            self.pending_size = sum(len(p) for p in self.pending)
            self.tried = self.tried[:-1]
            self._try()
            return
        self._failed(rf.OUTCOME_RESET, 503, rf.UC, RESET_BODY)

    def on_upgrade(self, conn: UpstreamConnection, rest: bytes) -> None:
        """The upstream switched protocols: from now on bytes flow both ways untouched."""
        if self.finished:
            conn.close()
            return
        self.conn = None
        if self.try_timer is not None:
            self.try_timer.cancel()
            self.try_timer = None
        if self.route_timer is not None:
            self.route_timer.cancel()
            self.route_timer = None
        self.cluster.active[self.index] -= 1
        self.cluster.limits.end_request()
        self.index = -1
        self.finished = True
        self.flush()
        self.down.start_tunnel(self.ex, conn, rest)

    def on_upstream_pause(self, paused: bool) -> None:
        if paused:
            self.down.pause_reading()
        else:
            self.down.resume_reading()

    def pause_upstream(self, paused: bool) -> None:
        """The downstream cannot take more response bytes: stop reading the upstream."""
        conn = self.conn
        if conn is not None:
            conn.set_reading(not paused)

    # ================================================================ endings
    def _local(self, status: int, flag: str, body: str) -> None:
        self.ex.label_index = self.ex.plan.labels_for(self.cluster.name, -1)
        self._finish()
        self.down.local_reply(self.ex, status, flag, body)

    def _finish(self) -> None:
        self.finished = True
        if self.route_timer is not None:
            self.route_timer.cancel()
            self.route_timer = None
        self.pending = []
        self.replay = None
