"""Istio HTTPRetry compiled into a bitmask policy, and the per-try retry decision.

Compiled once per route: the retryOn tokens become bits, bare status codes join
retriable_status_codes (and switch that condition on, as istiod does), so a decision per
attempt is a few integer tests. Backoff is Envoy's fully jittered exponential one.

`decide` is Envoy's `RetryStateImpl::shouldRetry` in one pure function: does retryOn cover
the outcome (NO), are the route's attempts used up (LIMIT: flag URX), can the request
body still be replayed (NO), and is there room in the cluster's retry budget,
DestinationRule `connectionPool.http.maxRetries` (OVERFLOW: flag UO, the original answer
is returned). A RETRY takes one slot of the budget; the caller gives it back with
`settle` when the retried try has produced its outcome or the request ends - the budget
counts retries in flight across the cluster, as Envoy's `retries()` resource does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Protocol

from tollway.proxy.core.classify import GATEWAY_ERRORS, GRPC_CODES
from tollway.proxy.core.exchange import CONNECT_FAILURE, REFUSED_STREAM, Outcome
from tollway.snapshot import types

_5XX: Final = 1
_GATEWAY: Final = 2
_RESET: Final = 4
_CONNECT: Final = 8
_4XX: Final = 16
_REFUSED: Final = 32
_CODES: Final = 64
_HEADERS: Final = 128
_RATELIMITED: Final = 256
_GRPC: Final = 512
_BEFORE_REQUEST: Final = 1024

_BITS: Final[dict[str, int]] = {
    "5xx": _5XX,
    "gateway-error": _GATEWAY,
    "reset": _RESET,
    "connect-failure": _CONNECT,
    "retriable-4xx": _4XX,
    "refused-stream": _REFUSED,
    "retriable-status-codes": _CODES,
    "retriable-headers": _HEADERS,
    "envoy-ratelimited": _RATELIMITED,
    "reset-before-request": _BEFORE_REQUEST,
}
_ANY_RESET: Final = _5XX | _GATEWAY | _RESET

DEFAULT_BACKOFF: Final = 0.025  # Envoy's base interval


class RetryPolicy:
    """What to retry, how often, and how long each try may take."""

    __slots__ = ("_codes", "_grpc", "_headers", "_mask", "attempts", "backoff_base",
                 "grpc_codes", "per_try_timeout", "retry_on")  # fmt: skip

    def __init__(
        self,
        attempts: int,
        retry_on: tuple[str, ...],
        retriable_status_codes: tuple[int, ...] = (),
        per_try_timeout: float | None = None,
        retriable_headers: tuple[str, ...] = (),
        backoff_base: float = DEFAULT_BACKOFF,
    ) -> None:
        self.attempts = max(0, attempts)
        self.per_try_timeout = per_try_timeout
        self.retry_on = retry_on
        self.backoff_base = backoff_base
        mask = 0
        codes = set(retriable_status_codes)
        grpc: set[str] = set()
        for raw in retry_on:
            token = raw.strip().lower()
            if token.isdigit():
                codes.add(int(token))
                mask |= _CODES
            elif token in GRPC_CODES:
                grpc.add(str(GRPC_CODES[token]))
                mask |= _GRPC
            else:
                mask |= _BITS.get(token, 0)  # unknown tokens (e.g. http3-*) never match
        self._mask = mask
        self._codes = frozenset(codes)
        self._grpc = frozenset(grpc)
        self.grpc_codes = bool(grpc)  # retryOn names gRPC statuses: read the head's grpc-status
        self._headers = tuple(h.lower() for h in retriable_headers)

    @classmethod
    def from_spec(cls, spec: types.Retry | None) -> RetryPolicy:
        """None (retries explicitly off) gives a policy with 0 attempts."""
        if spec is None:
            return NO_RETRY
        shared = _BY_SPEC.get(spec)
        if shared is None:
            if len(_BY_SPEC) >= _BY_SPEC_MAX:
                _BY_SPEC.clear()
            shared = _BY_SPEC[spec] = cls(
                spec.attempts,
                spec.retry_on,
                spec.retriable_status_codes,
                spec.per_try_timeout,
                backoff_base=spec.backoff,
            )
        return shared

    def should_retry(self, outcome: Outcome, headers: Mapping[str, str] | None = None) -> bool:
        """Whether retryOn covers this outcome (the caller counts attempts and the budget).

        `headers` are the upstream response headers (for retriable-headers, gRPC codes and
        envoy-ratelimited)."""
        if self.attempts == 0:
            return False
        mask = self._mask
        local = outcome.local_failure
        if local is not None:
            if mask & _ANY_RESET:
                return True
            if local == CONNECT_FAILURE:
                return bool(mask & (_CONNECT | _BEFORE_REQUEST))
            if local == REFUSED_STREAM:
                return bool(mask & (_REFUSED | _BEFORE_REQUEST))
            return False
        status = outcome.status
        if status is None:
            return False
        if status >= 500:
            if mask & _5XX and status <= 599:
                return True
            if mask & _GATEWAY and status in GATEWAY_ERRORS:
                return True
        if mask & _4XX and status == 409:
            return True
        if mask & _CODES and status in self._codes:
            return True
        if headers is not None:
            return self._retry_on_headers(mask, headers)
        return False

    def _retry_on_headers(self, mask: int, headers: Mapping[str, str]) -> bool:
        if mask & _GRPC and headers.get("grpc-status") in self._grpc:
            return True
        if mask & _RATELIMITED and "x-envoy-ratelimited" in headers:
            return True
        return bool(mask & _HEADERS) and any(h in headers for h in self._headers)

    def backoff(self, retry_number: int, r: float) -> float:
        """Seconds to wait before retry number `retry_number` (1-based): uniform in
        [0, (2^n - 1) * base), capped at 10 * base (Envoy)."""
        n = max(1, retry_number)
        ceiling = min(float((1 << n) - 1) * self.backoff_base, 10 * self.backoff_base)
        return r * ceiling


NO_RETRY: Final = RetryPolicy(0, ())
# Retry spec -> its policy: a policy is read-only once built, and most routes carry the
# same spec (the mesh default), so thousands of routes share a few policies instead of
# holding one each (~0.5 kB a route). Bounded: cleared whole when full.
_BY_SPEC: dict[types.Retry, RetryPolicy] = {}
_BY_SPEC_MAX = 1024


# ---------------------------------------------------------------- the decision per try

RETRY: Final = 0  # retry now (after `policy.backoff`); one budget slot taken
NO: Final = 1  # not retriable (retryOn does not cover it, or the body cannot be replayed)
LIMIT: Final = 2  # retriable, but the route's attempts are used up: flag URX
OVERFLOW: Final = 3  # retriable, but the cluster's maxRetries budget is full: flag UO


class Budget(Protocol):
    """The cluster-wide count of retries in flight (core.limits.PoolLimits)."""

    def try_start_retry(self) -> bool: ...

    def end_retry(self) -> None: ...


def decide(
    policy: RetryPolicy,
    retries_done: int,
    outcome: Outcome,
    headers: Mapping[str, str] | None,
    replayable: bool,
    budget: Budget,
) -> int:
    """RETRY, NO, LIMIT or OVERFLOW for a try that ended with `outcome` (see module doc).

    On RETRY one budget slot is taken: pass it back with `settle`."""
    if not policy.should_retry(outcome, headers):
        return NO
    if retries_done >= policy.attempts:
        return LIMIT
    if not replayable:
        return NO
    if not budget.try_start_retry():
        return OVERFLOW
    return RETRY


def settle(budget: Budget, holding: bool) -> bool:
    """Give back the budget slot a RETRY took, if `holding`; returns the new holding (False)."""
    if holding:
        budget.end_retry()
    return False
