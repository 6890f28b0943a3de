"""The RBAC filter: AuthorizationPolicy on inbound requests, 403 `RBAC: access denied`.

Thin adapter over `proxy.core.authz`: the policies are compiled once when the chain is
built; per request it builds the attribute view from the Exchange, asks `evaluate`, and
answers a denial locally. The Decision goes to `exchange.attrs["authz"]` so the access log
and telemetry can say which policy and rule decided.
"""

from __future__ import annotations

import logging
from typing import Any

from tollway.proxy.chain.filter import LocalReply
from tollway.proxy.core import authz
from tollway.snapshot import types

log = logging.getLogger("tollway.proxy.authz")
DENIED_BODY = "RBAC: access denied"
SPIFFE = "spiffe://"


def principal_of(value: str | None) -> str | None:
    """Policies name peers without `spiffe://`; accept either form from the listener."""
    if not value:
        return None
    return value[len(SPIFFE):] if value.startswith(SPIFFE) else value


class AuthzFilter:
    """Evaluates the workload's policies; outbound traffic is never checked here."""

    name = "authz"

    def __init__(self, compiled: authz.CompiledAuthz, workload_port: int | None = None) -> None:
        self.compiled = compiled
        self.workload_port = workload_port
        self.denied = 0
        self.allowed = 0

    def request_of(self, ex: Any) -> authz.Request:
        port = ex.attrs.get("workload_port") or self.workload_port or ex.listener_port
        token = ex.attrs.get("jwt")  # set by the jwt_authn filter before this one
        return authz.Request(
            method=ex.method,
            path=ex.path,
            host=ex.authority,
            port=int(port or 0),
            principal=principal_of(ex.principal),
            source_ip=ex.source_ip,
            headers=ex.headers,
            request_principal=token.principal if token is not None else None,
            claims=token.claims if token is not None else {},
        )

    def on_request(self, ex: Any) -> LocalReply | None:
        if ex.listener_kind == "outbound":
            return None
        decision = authz.evaluate(self.compiled, self.request_of(ex))
        ex.attrs["authz"] = decision
        if decision.allowed:
            self.allowed += 1
            return None
        self.denied += 1
        log.debug("RBAC denied %s %s from %s: %s", ex.method, ex.path,
                  ex.principal or "plaintext", decision.reason)
        return LocalReply(403, "", DENIED_BODY, (("content-type", "text/plain"),))

    def statistics(self) -> dict[str, int]:
        return {"allowed": self.allowed, "denied": self.denied}


def build(policies: types.Authz, workload_port: int | None = None) -> AuthzFilter | None:
    """None when no policy applies (nothing to check: every request is allowed)."""
    compiled = authz.compile_authz(policies)
    if compiled.empty:
        return None
    return AuthzFilter(compiled, workload_port)
