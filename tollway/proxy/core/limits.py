"""Connection-pool circuit breakers for one upstream cluster (Envoy / Istio semantics).

Counters only: the IO layer asks before opening a connection, queueing a request for a
connection, starting a request or a retry, and tells when each ends. A refused ask means
"answer 503 with flag UO now" (never queue beyond the limits). Limits are per client proxy
per cluster, as Envoy enforces them.

Who moves which counter (one owner each, so every counter returns to zero when traffic
stops; the property test in tests/proxy/test_lease_accounting.py checks it):
`requests` and `pending` only through an upstream `Lease` (acquire takes, release gives
back), `connections` only through the endpoint pool's connection lifecycle (a slot is
taken before a connect and freed once, when that connection closes or fails to open),
`retries` only through `core.retry.decide` / `settle`. Nothing is clamped at zero: a
count that goes negative is a bookkeeping bug the tests must see.
"""

from __future__ import annotations

from typing import NamedTuple

from tollway.snapshot import types


class PoolStatistics(NamedTuple):
    connections: int
    pending: int
    requests: int
    retries: int
    cx_overflow: int
    pending_overflow: int
    rq_overflow: int
    retry_overflow: int


class PoolLimits:
    """tcp.maxConnections, http1MaxPendingRequests, http2MaxRequests, maxRetries."""

    __slots__ = ("_cx_overflow", "_pending_overflow", "_retry_overflow", "_rq_overflow",
                 "connections", "max_connections", "max_pending", "max_requests",
                 "max_requests_per_connection", "max_retries", "pending", "requests",
                 "retries")  # fmt: skip

    def __init__(self, spec: types.ConnectionPool) -> None:
        # Istio: 0 means "use the default" (unlimited), since unset and 0 look alike.
        unlimited = 4294967295
        self.max_connections = spec.max_connections or unlimited
        self.max_pending = spec.http1_max_pending_requests or unlimited
        self.max_requests = spec.http2_max_requests or unlimited
        self.max_retries = spec.max_retries or unlimited
        self.max_requests_per_connection = spec.max_requests_per_connection  # 0: unlimited
        self.connections = self.pending = self.requests = self.retries = 0
        self._cx_overflow = self._pending_overflow = 0
        self._rq_overflow = self._retry_overflow = 0

    def try_open_connection(self) -> bool:
        if self.connections >= self.max_connections:
            self._cx_overflow += 1
            return False
        self.connections += 1
        return True

    def close_connection(self) -> None:
        self.connections -= 1

    def try_enqueue_pending(self) -> bool:
        if self.pending >= self.max_pending:
            self._pending_overflow += 1
            return False
        self.pending += 1
        return True

    def dequeue_pending(self) -> None:
        self.pending -= 1

    def try_start_request(self) -> bool:
        if self.requests >= self.max_requests:
            self._rq_overflow += 1
            return False
        self.requests += 1
        return True

    def end_request(self) -> None:
        self.requests -= 1

    def try_start_retry(self) -> bool:
        """On refusal the retry is skipped and the original error returned (Envoy)."""
        if self.retries >= self.max_retries:
            self._retry_overflow += 1
            return False
        self.retries += 1
        return True

    def end_retry(self) -> None:
        self.retries -= 1

    def connection_exhausted(self, requests_served: int) -> bool:
        """True when a connection has served maxRequestsPerConnection and must close."""
        limit = self.max_requests_per_connection
        return limit > 0 and requests_served >= limit

    def statistics(self) -> PoolStatistics:
        return PoolStatistics(
            self.connections, self.pending, self.requests, self.retries,
            self._cx_overflow, self._pending_overflow, self._rq_overflow,
            self._retry_overflow,
        )  # fmt: skip
