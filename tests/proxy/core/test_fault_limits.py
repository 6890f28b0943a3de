"""Fault injection decisions and connection-pool overflow (503 UO)."""

from __future__ import annotations

from tollway.proxy.core.fault import NO_FAULT, decide
from tollway.proxy.core.limits import PoolLimits
from tollway.snapshot import types


def test_fault_fires_for_the_configured_share_of_draws() -> None:
    f = types.Fault(delay=2.0, delay_percent=30.0, abort_status=503, abort_percent=10.0)
    n = 1000
    grid = [(k + 0.5) / n for k in range(n)]
    assert sum(decide(f, r, 0.99).delay == 2.0 for r in grid) == 300
    assert sum(decide(f, 0.99, r).abort_status == 503 for r in grid) == 100
    both = decide(f, 0.0, 0.0)
    assert both.delay == 2.0 and both.abort_status == 503


def test_no_fault_when_absent_or_zero_percent() -> None:
    assert decide(None, 0.0, 0.0) is NO_FAULT
    assert decide(types.Fault(delay=1.0, abort_status=500), 0.0, 0.0) is NO_FAULT


def test_pool_limits_overflow_and_release() -> None:
    p = PoolLimits(types.ConnectionPool(max_connections=1, http1_max_pending_requests=1,
                                        http2_max_requests=2, max_retries=1))
    assert p.try_open_connection() and not p.try_open_connection()
    assert p.try_enqueue_pending() and not p.try_enqueue_pending()
    p.dequeue_pending()
    assert p.try_enqueue_pending()
    assert p.try_start_request() and p.try_start_request() and not p.try_start_request()
    p.end_request()
    assert p.try_start_request()
    assert p.try_start_retry() and not p.try_start_retry()
    p.close_connection()
    assert p.try_open_connection()
    st = p.statistics()
    assert (st.cx_overflow, st.pending_overflow, st.rq_overflow, st.retry_overflow) == (1, 1, 1, 1)


def test_pool_defaults_are_unlimited_and_zero_means_default() -> None:
    p = PoolLimits(types.ConnectionPool(max_connections=0, max_requests_per_connection=2))
    assert all(p.try_open_connection() for _ in range(10_000))
    assert not p.connection_exhausted(1) and p.connection_exhausted(2)
    assert not PoolLimits(types.ConnectionPool()).connection_exhausted(10**6)
