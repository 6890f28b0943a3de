"""Upstream fields Tollway knows of and deliberately does not implement, with the reason.

Without this table such a field reads as a typo ("unknown field 'ecdhCurves'"), which
sends the user hunting for a spelling mistake in a manifest Istio, Argo or Flagger
accept. Each entry is refused (never silently ignored: every one of them would change
behaviour, some of them security) with a sentence saying what to do instead. Keyed by
the kind's top-level model name, then the field's upstream spelling, wherever it nests.
"""

from __future__ import annotations

UPSTREAM_ONLY: dict[str, dict[str, str]] = {
    "DestinationRuleSpec": {
        "backendUtilization": "utilization-based (ORCA) load balancing is not implemented "
        "by Tollway's proxy; use simple: LEAST_REQUEST",
    },
    "GatewaySpec": {
        "ecdhCurves": "Tollway's gateway TLS cannot restrict ECDH curves; remove it (it "
        "uses OpenSSL's default curves)",
    },
    "VirtualServiceSpec": {
        "mirror_percent": "it is the proto spelling Istio also reads; write mirrorPercent "
        "(or mirrorPercentage: {value: N})",
    },
    "RequestAuthenticationSpec": {
        "jwks_uri": "it is the proto spelling Istio also reads; write jwksUri",
    },
    "TelemetrySpec": {
        "disableContextPropagation": "Tollway's proxy always propagates trace context; "
        "remove it",
    },
    "CanarySpec": {
        "suffix": "with Istio routing Flagger has no suffix match (it is for App Mesh and "
        "Contour); use regex: '.*VALUE$'",
    },
}


def upstream_only(model_name: str, field: str) -> str | None:
    """The reason Tollway refuses this upstream field, or None for a plain unknown one."""
    return UPSTREAM_ONLY.get(model_name, {}).get(field)
