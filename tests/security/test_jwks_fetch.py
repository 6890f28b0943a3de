"""The control plane fetches `jwksUri` keys over real HTTP and inlines them; fails closed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.security.jwt_tokens import Signer, jwks
from tests.security.sec_resources import resource
from tollway.config.resource import ResourceSet
from tollway.control.jwks import JwksResolver

KEY = Signer.rsa()


def ra_with_uri(uri: str) -> ResourceSet:
    return ResourceSet([resource("RequestAuthentication", "jwt", "shop", {
        "jwtRules": [{"issuer": "me", "jwksUri": uri}, {"issuer": "inline", "jwks": "{}"}]})])


async def _serve(status: int, body: str) -> tuple[web.AppRunner, str, list[int]]:
    hits: list[int] = []

    async def handle(_req: web.Request) -> web.Response:
        hits.append(1)
        return web.Response(status=status, text=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/jwks", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/jwks", hits


def test_keys_are_fetched_once_inlined_and_the_plane_is_told(run: Callable[[Any], Any]) -> None:
    async def main() -> None:
        runner, uri, hits = await _serve(200, jwks(KEY))
        changed = asyncio.Event()
        resolver = JwksResolver(changed.set)
        try:
            first = resolver.resolve(ra_with_uri(uri))
            rule = first.of_kind("RequestAuthentication")[0].spec["jwtRules"][0]
            assert "jwks" not in rule  # not fetched yet: the proxy fails closed meanwhile
            await asyncio.wait_for(changed.wait(), 10)
            second = resolver.resolve(ra_with_uri(uri))
            rules = second.of_kind("RequestAuthentication")[0].spec["jwtRules"]
            assert rules[0]["jwks"] == jwks(KEY) and rules[1]["jwks"] == "{}"
            resolver.resolve(ra_with_uri(uri))
            assert len(hits) == 1  # cached until the refresh interval
        finally:
            await runner.cleanup()
    run(main())


def test_a_failing_jwks_uri_is_retried_and_never_inlined(run: Callable[[Any], Any]) -> None:
    async def main() -> None:
        runner, uri, hits = await _serve(500, "boom")
        resolved: list[ResourceSet] = []

        def recompute() -> None:  # what the plane does when told: translate again
            resolved.append(resolver.resolve(ra_with_uri(uri)))

        resolver = JwksResolver(recompute, retry=0.05)
        try:
            resolver.resolve(ra_with_uri(uri))
            for _ in range(400):  # generous: the host is loaded; no timing asserted
                if len(hits) >= 2 and resolved:
                    break
                await asyncio.sleep(0.05)
            assert len(hits) >= 2  # the failure was retried
            assert "HTTP 500" in resolver.errors[uri][0]
            for rs in resolved:
                assert "jwks" not in rs.of_kind("RequestAuthentication")[0].spec["jwtRules"][0]
        finally:
            await runner.cleanup()
    run(main())
