"""The jwt_authn filter: RequestAuthentication on inbound and gateway requests.

Thin adapter over `proxy.core.jwt`: keys were parsed when the chain was built; per
request it finds a token, verifies it, and either answers 401 (Envoy's reason as body,
`www-authenticate: Bearer realm=..., error="invalid_token"`) or records the principal and
claims in `exchange.attrs["jwt"]` for the RBAC filter after it, then applies the header
outputs: the token is removed from its header unless `forwardOriginalToken`, the payload
goes to `outputPayloadToHeader`, claims to `outputClaimToHeaders`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tollway.proxy.chain.filter import LocalReply
from tollway.proxy.core import jwt
from tollway.snapshot import types


def _set_header(ex: Any, name: str, value: str) -> None:
    name = name.lower()
    data = name.encode("latin-1")
    ex.raw_headers[:] = [h for h in ex.raw_headers if h[0].lower() != data]
    ex.raw_headers.append((data, value.encode("latin-1", "replace")))
    ex.headers[name] = value


def _remove_header(ex: Any, name: str) -> None:
    data = name.encode("latin-1")
    ex.raw_headers[:] = [h for h in ex.raw_headers if h[0].lower() != data]
    ex.headers.pop(name, None)


class JwtFilter:
    """Refuses bad tokens with 401; lets requests without a token through."""

    name = "jwt_authn"

    def __init__(self, compiled: jwt.CompiledJwt,
                 clock: Callable[[], float] = time.time) -> None:
        self.compiled = compiled
        self.clock = clock
        self.verified = 0
        self.rejected = 0

    def on_request(self, ex: Any) -> LocalReply | None:
        if ex.listener_kind == "outbound":
            return None
        found = jwt.find_token(self.compiled, ex.headers, ex.path)
        if found is None:
            return None
        try:
            ok = jwt.verify(self.compiled, found.token, self.clock(), found)
        except jwt.JwtError as exc:
            self.rejected += 1
            realm = f"http://{ex.authority}{ex.path.partition('?')[0]}"
            challenge = f'Bearer realm="{realm}", error="invalid_token"'
            return LocalReply(401, "", str(exc), (("content-type", "text/plain"),
                                                 ("www-authenticate", challenge)))
        self.verified += 1
        ex.attrs["jwt"] = ok
        spec = ok.rule.spec
        if found.header and not spec.forward_original_token:
            _remove_header(ex, found.header)
        if spec.output_payload_to_header:
            _set_header(ex, spec.output_payload_to_header, ok.payload_segment)
        for header, claim in spec.output_claim_to_headers:
            value = ok.raw_claims.get(claim)
            if isinstance(value, str | int | float | bool) and not isinstance(value, dict):
                _set_header(ex, header, value if isinstance(value, str) else
                            str(value).lower() if isinstance(value, bool) else str(value))
        return None

    def statistics(self) -> dict[str, int]:
        return {"verified": self.verified, "rejected": self.rejected}


def build(authn: types.RequestAuthn) -> JwtFilter | None:
    """None when no RequestAuthentication selects the workload (nothing to check)."""
    compiled = jwt.compile_rules(authn)
    return None if compiled.empty else JwtFilter(compiled)
