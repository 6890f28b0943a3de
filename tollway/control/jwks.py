"""Fetch RequestAuthentication `jwksUri` keys in the control plane and inline them.

Istio's istiod resolves `jwksUri` itself and pushes the keys inline, so a sidecar never
needs egress to the identity provider; Tollway does the same. `resolve` runs before
each translation: rules whose keys are cached get them as `jwks`; missing or stale ones
are fetched in the background, and the plane recomputes when they arrive (`on_change`).
Until keys exist the proxy refuses that issuer's tokens (401 "Jwks remote fetch is
failed"): fail closed, never "accept unverified". A failed fetch is retried.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx

from tollway.config.resource import Resource, ResourceSet

log = logging.getLogger("tollway.control.jwks")
Fetch = Callable[[str], Awaitable[str]]
REFRESH = 20 * 60.0  # Istio's default JWKS refresh interval
RETRY = 5.0
TIMEOUT = 5.0
MAX_BYTES = 1024 * 1024


async def http_fetch(uri: str) -> str:
    """GET the JWKS document; ValueError when it is not one."""
    async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=True) as client:
        resp = await client.get(uri)
    if resp.status_code != 200:
        raise ValueError(f"HTTP {resp.status_code}")
    if len(resp.content) > MAX_BYTES:
        raise ValueError("larger than 1 MB")
    text = resp.text
    doc = json.loads(text)
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise ValueError('not a JWKS ({"keys": [...]})')
    return text


class JwksResolver:
    """Keys per `jwksUri`, fetched once and refreshed, inlined into the resources."""

    def __init__(self, on_change: Callable[[], None], fetch: Fetch = http_fetch,
                 clock: Callable[[], float] = time.monotonic, refresh: float = REFRESH,
                 retry: float = RETRY) -> None:
        self.on_change = on_change
        self.fetch = fetch
        self.clock = clock
        self.refresh = refresh
        self.retry = retry
        self.keys: dict[str, tuple[str, float]] = {}  # uri -> (jwks, fetched at)
        self.errors: dict[str, tuple[str, float]] = {}  # uri -> (reason, failed at)
        self._pending: dict[str, asyncio.Task[None]] = {}

    def resolve(self, resources: ResourceSet) -> ResourceSet:
        """`resources` with every fetched JWKS inlined (the others start fetching)."""
        changed: list[Resource] = []
        for r in resources.of_kind("RequestAuthentication"):
            rules = r.spec.get("jwtRules") or ()
            new_rules = [self._rule(rule) if isinstance(rule, Mapping) else rule
                         for rule in rules]
            if any(a is not b for a, b in zip(new_rules, rules, strict=True)):
                spec = {**r.spec, "jwtRules": new_rules}
                changed.append(dataclasses.replace(r, spec=spec))
        return resources.with_changes(changed) if changed else resources

    def _rule(self, rule: Mapping[str, Any]) -> Mapping[str, Any]:
        uri = rule.get("jwksUri")
        if rule.get("jwks") or not isinstance(uri, str) or not uri:
            return rule
        now = self.clock()
        cached = self.keys.get(uri)
        if cached is None or now - cached[1] > self.refresh:
            failed = self.errors.get(uri)
            # The retry timer fires `retry` after the failure; allow for clock jitter so
            # the recompute it causes does refetch (else no timer is left to ask again).
            if failed is None or now - failed[1] >= self.retry * 0.9:
                self._start(uri)
        return {**rule, "jwks": cached[0]} if cached is not None else rule

    def _start(self, uri: str) -> None:
        if uri in self._pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): nothing can be fetched
            return
        task = loop.create_task(self._fetch(uri))
        self._pending[uri] = task
        task.add_done_callback(lambda _t: self._pending.pop(uri, None))

    async def _fetch(self, uri: str) -> None:
        try:
            text = await self.fetch(uri)
        except (httpx.HTTPError, ValueError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
            if self.errors.get(uri, ("",))[0] != reason:
                log.warning("jwksUri %s: cannot fetch keys (%s); tokens of that issuer "
                            "are refused until it works", uri, reason)
            self.errors[uri] = (reason, self.clock())
            asyncio.get_running_loop().call_later(self.retry, self.on_change)
            return
        self.errors.pop(uri, None)
        before = self.keys.get(uri)
        self.keys[uri] = (text, self.clock())
        if before is None or before[0] != text:
            self.on_change()
