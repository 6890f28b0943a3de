"""Outcome classes shared by retries and outlier detection (Envoy's definitions).

One place says what "5xx", "gateway error" and "retriable 4xx" mean, so the retry policy
and the outlier detector cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from tollway.proxy.core.exchange import (
    CONNECT_FAILURE,
    REFUSED_STREAM,
    RESET,
    TIMEOUT,
    Outcome,
)

GATEWAY_ERRORS: Final = frozenset({502, 503, 504})
RETRIABLE_4XX: Final = frozenset({409})

# gRPC status names in retryOn -> numeric grpc-status (checked on response headers).
GRPC_CODES: Final[dict[str, int]] = {
    "cancelled": 1,
    "deadline-exceeded": 4,
    "resource-exhausted": 8,
    "internal": 13,
    "unavailable": 14,
}


def is_5xx(status: int | None) -> bool:
    return status is not None and 500 <= status <= 599


def is_gateway_error(status: int | None) -> bool:
    return status in GATEWAY_ERRORS


def is_retriable_4xx(status: int | None) -> bool:
    """Envoy's retriable-4xx is 409 only."""
    return status in RETRIABLE_4XX


def is_failure(outcome: Outcome) -> bool:
    """No response at all, or a 5xx: what the outlier detector counts as an error."""
    return outcome.local_failure is not None or is_5xx(outcome.status)


def should_retry_on(
    condition: str,
    outcome: Outcome,
    headers: Mapping[str, str] | None = None,
    retriable_status_codes: frozenset[int] = frozenset(),
    retriable_headers: tuple[str, ...] = (),
) -> bool:
    """Does one retryOn token ask for a retry of this outcome? (Envoy router semantics.)

    Resets of any kind (no response) are retried by 5xx, gateway-error and reset;
    connect-failure and refused-stream only retry their own kind. Status conditions look
    only at a status the upstream returned.
    """
    local = outcome.local_failure
    status = outcome.status
    if condition in ("5xx", "gateway-error", "reset"):
        if local is not None:
            return True
        if condition == "5xx":
            return is_5xx(status)
        return condition == "gateway-error" and is_gateway_error(status)
    if condition == "connect-failure":
        return local == CONNECT_FAILURE
    if condition == "reset-before-request":
        return local in (CONNECT_FAILURE, REFUSED_STREAM)
    if condition == "refused-stream":
        return local == REFUSED_STREAM
    if local is not None:
        return False
    if condition == "retriable-4xx":
        return is_retriable_4xx(status)
    if condition == "retriable-status-codes":
        return status in retriable_status_codes
    if headers is None:
        return False
    if condition == "retriable-headers":
        return any(h in headers for h in retriable_headers)
    if condition == "envoy-ratelimited":
        return "x-envoy-ratelimited" in headers
    code = GRPC_CODES.get(condition)
    return code is not None and headers.get("grpc-status") == str(code)


__all__ = [
    "CONNECT_FAILURE",
    "GATEWAY_ERRORS",
    "GRPC_CODES",
    "REFUSED_STREAM",
    "RESET",
    "TIMEOUT",
    "is_5xx",
    "is_failure",
    "is_gateway_error",
    "is_retriable_4xx",
    "should_retry_on",
]
