"""The AuthorizationPolicy `when` keys Tollway evaluates [pure].

`types.AuthzCondition.key` is part of the snapshot contract: the config layer must refuse
at validation exactly the keys the proxy cannot evaluate, and the proxy must evaluate
every key the config layer lets through. Keeping the vocabulary here, beside the snapshot
types both sides already import, makes that one list instead of two that drift apart
(and keeps config/ from importing proxy/, which the layering forbids).
"""

from __future__ import annotations

# `when.key` forms Istio documents that Tollway evaluates; `request.headers[..]` and
# `request.auth.claims[..]` take a bracketed argument.
PLAIN_CONDITIONS = frozenset(
    {
        "source.ip",
        "remote.ip",
        "source.namespace",
        "source.principal",
        "source.serviceAccount",
        "source.trustDomain",
        "request.auth.principal",
        "request.auth.audiences",
        "request.auth.presenter",
        "destination.ip",
        "destination.port",
        "connection.sni",
    }
)
BRACKET_CONDITIONS = ("request.headers[", "request.auth.claims[")


def known_condition(key: str) -> bool:
    """True when `when.key` is one Tollway evaluates; the config layer rejects the rest.

    Istio also accepts `experimental.envoy.filters.*`; Tollway cannot evaluate those, and
    an unevaluated condition silently widening or narrowing a policy is worse than a
    clear validation error, so they are unknown here.
    """
    if key in PLAIN_CONDITIONS:
        return True
    for prefix in BRACKET_CONDITIONS:
        if key.startswith(prefix) and key.endswith("]") and len(key) > len(prefix) + 1:
            return True
    return False


def known_condition_keys() -> str:
    """The known keys as a user reads them in an error message (sorted, brackets shown)."""
    return ", ".join([*sorted(PLAIN_CONDITIONS), *(p + "NAME]" for p in BRACKET_CONDITIONS)])
