"""Vocabulary shared by the proxy's decision modules: response flags and attempt outcomes.

Response flags are Envoy's short names, because Istio's `response_flags` metric label and
the access log use them verbatim; keeping the same strings lets users reuse dashboards.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, NamedTuple

# ---------------------------------------------------------------- response flags (Envoy)

NR: Final = "NR"  # no route configured (404)
UO: Final = "UO"  # upstream overflow: circuit breaker (503)
UT: Final = "UT"  # upstream request timeout (504)
URX: Final = "URX"  # retry limit reached
UF: Final = "UF"  # upstream connection failure
UH: Final = "UH"  # no healthy upstream host
UC: Final = "UC"  # upstream connection termination
UR: Final = "UR"  # upstream remote reset
DC: Final = "DC"  # downstream connection termination
DI: Final = "DI"  # request delayed by fault injection
FI: Final = "FI"  # request aborted by fault injection
UPE: Final = "UPE"  # upstream protocol error
RL: Final = "RL"  # rate limited locally
UAEX: Final = "UAEX"  # unauthorized by external authorization
LR: Final = "LR"  # connection local reset
DPE: Final = "DPE"  # downstream protocol error
NC: Final = "NC"  # no cluster found (503)
SI: Final = "SI"  # stream idle timeout (408)
IH: Final = "IH"  # invalid header value

NO_FLAGS: Final = "-"

# ---------------------------------------------------------------- local failure kinds

CONNECT_FAILURE: Final = "connect-failure"
RESET: Final = "reset"
TIMEOUT: Final = "timeout"
REFUSED_STREAM: Final = "refused-stream"
LOCAL_FAILURES: Final = frozenset({CONNECT_FAILURE, RESET, TIMEOUT, REFUSED_STREAM})


class Outcome(NamedTuple):
    """What one upstream attempt produced.

    Exactly one of the two is set: `status` is a status the upstream itself returned;
    `local_failure` says the proxy got no response (connect failure, reset, per-try
    timeout, refused stream). Istio's rule that a status code in retryOn means "returned
    by the upstream" depends on keeping the two apart: a reset is never "503".
    """

    status: int | None = None
    local_failure: str | None = None


# Preallocated outcomes for the common local failures: no allocation on the error path.
OUTCOME_CONNECT_FAILURE: Final = Outcome(None, CONNECT_FAILURE)
OUTCOME_RESET: Final = Outcome(None, RESET)
OUTCOME_TIMEOUT: Final = Outcome(None, TIMEOUT)
OUTCOME_REFUSED_STREAM: Final = Outcome(None, REFUSED_STREAM)

# One Outcome per status an upstream can send (llhttp accepts 100-999), built once: the
# per-response path tells outlier detection a status without allocating.
OUTCOME_BY_STATUS: Final = tuple(Outcome(s, None) for s in range(1000))

# Status and flag a client sees when an attempt produced no response (Envoy's local replies).
LOCAL_FAILURE_REPLY: Final[dict[str, tuple[int, str]]] = {
    CONNECT_FAILURE: (503, UF),
    RESET: (503, UR),
    TIMEOUT: (504, UT),
    REFUSED_STREAM: (503, UR),
}


def join_flags(flags: Iterable[str]) -> str:
    """Render flags as the metric label / access-log field: comma list, or "-" when none."""
    text = ",".join(flags)
    return text or NO_FLAGS
