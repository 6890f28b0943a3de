"""retryOn, condition by condition (Envoy's meaning of each token, Istio's compilation)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tollway.proxy.core import retry
from tollway.proxy.core.classify import should_retry_on
from tollway.proxy.core.exchange import (
    OUTCOME_CONNECT_FAILURE,
    OUTCOME_REFUSED_STREAM,
    OUTCOME_RESET,
    OUTCOME_TIMEOUT,
    Outcome,
)
from tollway.proxy.core.limits import PoolLimits
from tollway.proxy.core.retry import RetryPolicy
from tollway.snapshot import types

SEED = Path(__file__).resolve().parents[2] / "data" / "seed" / "12-retries-timeouts.yaml"

CF, RS, TO, RF = OUTCOME_CONNECT_FAILURE, OUTCOME_RESET, OUTCOME_TIMEOUT, OUTCOME_REFUSED_STREAM


def s(code: int) -> Outcome:
    return Outcome(status=code)


def policy(retry_on: str, codes: tuple[int, ...] = (), **kw: object) -> RetryPolicy:
    return RetryPolicy(2, tuple(retry_on.split(",")), codes, **kw)  # type: ignore[arg-type]


TABLE = [
    # (retryOn, outcome, expected)
    ("5xx", s(500), True), ("5xx", s(503), True), ("5xx", s(599), True), ("5xx", s(404), False),
    ("5xx", CF, True), ("5xx", RS, True), ("5xx", TO, True), ("5xx", RF, True),
    ("gateway-error", s(502), True), ("gateway-error", s(503), True),
    ("gateway-error", s(504), True), ("gateway-error", s(500), False),
    ("gateway-error", CF, True), ("gateway-error", TO, True),
    ("reset", RS, True), ("reset", CF, True), ("reset", TO, True), ("reset", s(503), False),
    ("connect-failure", CF, True), ("connect-failure", RS, False),
    ("connect-failure", s(503), False),
    ("reset-before-request", CF, True), ("reset-before-request", RS, False),
    ("refused-stream", RF, True), ("refused-stream", RS, False),
    ("refused-stream", s(503), False),
    ("retriable-4xx", s(409), True), ("retriable-4xx", s(404), False),
    ("retriable-4xx", s(429), False), ("retriable-4xx", CF, False),
    ("retriable-status-codes", s(503), False),  # no codes attached: nothing retried
    ("503", s(503), True), ("503", s(502), False),
    ("503", RS, False),  # a reset is a local 503, not an upstream one
    ("429,connect-failure", s(429), True),
]


@pytest.mark.parametrize(("retry_on", "outcome", "expected"), TABLE)
def test_retry_on_condition(retry_on: str, outcome: Outcome, expected: bool) -> None:
    assert policy(retry_on).should_retry(outcome) is expected


@pytest.mark.parametrize(("retry_on", "outcome", "expected"), TABLE)
def test_classify_agrees_with_compiled_policy(retry_on: str, outcome: Outcome,
                                              expected: bool) -> None:
    tokens = retry_on.split(",")
    codes = frozenset(int(t) for t in tokens if t.isdigit())
    conds = [t for t in tokens if not t.isdigit()] + (["retriable-status-codes"] if codes else [])
    assert any(should_retry_on(c, outcome, None, codes) for c in conds) is expected


def test_retriable_status_codes_with_codes() -> None:
    p = policy("retriable-status-codes", (503, 429))
    assert p.should_retry(s(503)) and p.should_retry(s(429))
    assert not p.should_retry(s(500))


def test_istio_default_policy_retries_no_status_but_connect_failure() -> None:
    p = RetryPolicy.from_spec(types.Retry(retriable_status_codes=()))
    assert p.attempts == 2
    assert p.should_retry(CF) and p.should_retry(RF)
    assert not p.should_retry(s(503)) and not p.should_retry(RS)


def test_retriable_headers_grpc_and_ratelimited() -> None:
    p = policy("retriable-headers", retriable_headers=("X-Retry-Me",))
    assert p.should_retry(s(500), {"x-retry-me": "1"})
    assert not p.should_retry(s(500), {"other": "1"})
    assert not p.should_retry(s(500))
    g = policy("unavailable,cancelled")
    assert g.should_retry(s(200), {"grpc-status": "14"})
    assert g.should_retry(s(200), {"grpc-status": "1"})
    assert not g.should_retry(s(200), {"grpc-status": "13"})
    assert policy("envoy-ratelimited").should_retry(s(429), {"x-envoy-ratelimited": "true"})


def test_zero_attempts_or_none_spec_never_retries() -> None:
    assert not RetryPolicy(0, ("5xx",)).should_retry(s(503))
    assert not RetryPolicy.from_spec(None).should_retry(CF)


def test_seed_12_retry_on() -> None:
    docs = list(YAML(typ="safe").load_all(SEED.read_text()))
    retries = docs[0]["spec"]["http"][0]["retries"]
    spec = types.Retry(attempts=retries["attempts"], per_try_timeout=2.0,
                       retry_on=tuple(retries["retryOn"].split(",")), retriable_status_codes=())
    p = RetryPolicy.from_spec(spec)
    assert p.attempts == 3 and p.per_try_timeout == 2.0
    assert p.should_retry(s(503))
    assert p.should_retry(s(409))
    assert not p.should_retry(s(500))
    assert p.should_retry(CF)


def test_backoff_is_fully_jittered_and_capped() -> None:
    p = policy("5xx")
    assert p.backoff(1, 0.0) == 0.0
    assert p.backoff(1, 0.999) < 0.025
    assert p.backoff(3, 0.999) < 7 * 0.025
    assert p.backoff(3, 0.999) > 6 * 0.025
    assert p.backoff(10, 0.999) <= 0.25
    slow = RetryPolicy.from_spec(types.Retry(backoff=0.1))
    assert slow.backoff(10, 0.999) > 0.9


# ------------------------------------------------------------------ decide: the verdict per try


def _budget(max_retries: int) -> PoolLimits:
    return PoolLimits(types.ConnectionPool(max_retries=max_retries))


@pytest.mark.parametrize(
    ("outcome", "done", "replayable", "in_flight", "verdict"),
    [
        (s(503), 0, True, 0, retry.RETRY),
        (s(200), 0, True, 0, retry.NO),  # retryOn does not cover it
        (s(503), 2, True, 0, retry.LIMIT),  # attempts used up: URX
        (s(503), 0, False, 0, retry.NO),  # the body outgrew the replay buffer
        (s(503), 0, True, 1, retry.OVERFLOW),  # maxRetries in flight: UO
        (s(503), 2, True, 1, retry.LIMIT),  # the route's limit is told before the budget
        (CF, 1, True, 0, retry.RETRY),
    ],
)
def test_decide_follows_envoys_order(
    outcome: Outcome, done: int, replayable: bool, in_flight: int, verdict: int
) -> None:
    budget = _budget(1)
    for _ in range(in_flight):
        assert budget.try_start_retry()
    p = policy("5xx,connect-failure")  # two attempts
    assert retry.decide(p, done, outcome, None, replayable, budget) == verdict
    taken = 1 if verdict == retry.RETRY else 0
    assert budget.statistics().retries == in_flight + taken
    assert budget.statistics().retry_overflow == (1 if verdict == retry.OVERFLOW else 0)


def test_settle_gives_the_slot_back_once() -> None:
    budget = _budget(1)
    p = policy("5xx")
    assert retry.decide(p, 0, s(503), None, True, budget) == retry.RETRY
    assert retry.decide(p, 1, s(503), None, True, budget) == retry.OVERFLOW  # still held
    holding = retry.settle(budget, True)
    assert not holding and budget.statistics().retries == 0
    assert not retry.settle(budget, holding) and budget.statistics().retries == 0
