"""Istio corsPolicy as Envoy's CORS filter applies it, compiled once per route.

- A preflight (OPTIONS with Origin and Access-Control-Request-Method) from an allowed
  origin is answered by the proxy itself: 200 with the allow-* headers, whatever method it
  asks for. A preflight from another origin is forwarded (unmatchedPreflights FORWARD).
- Any other request from an allowed origin gets Access-Control-Allow-Origin (the origin
  echoed), Allow-Credentials and Expose-Headers added to its response.
- An origin that matches nothing gets no CORS headers. An origin matcher that accepts the
  literal "*" accepts every origin (Envoy).
Lists are joined with "," and no space; maxAge is whole seconds.
"""

from __future__ import annotations

from collections.abc import Mapping

from tollway.proxy.core.strmatch import StrMatcher
from tollway.snapshot import types


class CorsPolicy:
    __slots__ = ("_any", "_matchers", "_preflight", "_simple")

    def __init__(self, spec: types.Cors) -> None:
        self._matchers = tuple(StrMatcher(m) for m in spec.allow_origins)
        self._any = any(m.test("*") for m in self._matchers)
        creds = [("access-control-allow-credentials", "true")] if spec.allow_credentials else []
        preflight = list(creds)
        if spec.allow_methods:
            preflight.append(("access-control-allow-methods", ",".join(spec.allow_methods)))
        if spec.allow_headers:
            preflight.append(("access-control-allow-headers", ",".join(spec.allow_headers)))
        if spec.max_age is not None:
            preflight.append(("access-control-max-age", str(int(spec.max_age))))
        simple = list(creds)
        if spec.expose_headers:
            simple.append(("access-control-expose-headers", ",".join(spec.expose_headers)))
        self._preflight = tuple(preflight)
        self._simple = tuple(simple)

    def origin_allowed(self, origin: str) -> bool:
        return self._any or any(m.test(origin) for m in self._matchers)

    def preflight_reply(
        self, method: str, headers: Mapping[str, str]
    ) -> list[tuple[str, str]] | None:
        """Headers of the proxy's own 200 answer to an allowed preflight; None when the
        request is not a preflight or its origin is not allowed (forward it)."""
        if method != "OPTIONS":
            return None
        origin = headers.get("origin")
        if not origin or "access-control-request-method" not in headers:
            return None
        if not self.origin_allowed(origin):
            return None
        return [("access-control-allow-origin", origin), *self._preflight]

    def response_headers(self, headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
        """Headers to add to the upstream's response for this request (often none)."""
        origin = headers.get("origin")
        if not origin or not self.origin_allowed(origin):
            return ()
        return (("access-control-allow-origin", origin), *self._simple)
