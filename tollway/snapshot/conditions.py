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
# Istio's keys for Envoy's network filters (mysql, mongo, ...): valid, but no Tollway
# filter produces that metadata, so such an attribute is always absent (as on an Envoy
# without the filter): `values` never match, `notValues` always pass.
ABSENT_PREFIX = "experimental.envoy.filters."


def known_condition(key: str) -> bool:
    """True when `when.key` is one Tollway evaluates; the config layer rejects the rest.

    `experimental.envoy.filters.*` keys are known and always absent (see ABSENT_PREFIX);
    config validation warns where one is used.
    """
    if key in PLAIN_CONDITIONS:
        return True
    if key.startswith(ABSENT_PREFIX) and len(key) > len(ABSENT_PREFIX):
        return True
    for prefix in BRACKET_CONDITIONS:
        if key.startswith(prefix) and key.endswith("]") and len(key) > len(prefix) + 1:
            return True
    return False


def known_condition_keys() -> str:
    """The known keys as a user reads them in an error message (sorted, brackets shown)."""
    return ", ".join([*sorted(PLAIN_CONDITIONS), *(p + "NAME]" for p in BRACKET_CONDITIONS)])
