"""retryOn, condition by condition (Envoy's meaning of each token, Istio's compilation)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tollway.proxy.core.classify import should_retry_on
from tollway.proxy.core.exchange import (
    OUTCOME_CONNECT_FAILURE,
    OUTCOME_REFUSED_STREAM,
    OUTCOME_RESET,
    OUTCOME_TIMEOUT,
    Outcome,
)
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
