"""Headless Chromium for the dashboard's browser tests: the `browser` fixture (Debian's
/usr/bin/chromium driven by Playwright, never downloaded) and `Watched`, a page that records
every request it made and every error it logged."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiohttp import web

from tests import creds
from tollway.control import serve
from tollway.control.plane import ControlPlane
from tollway.control.store import ConfigStore

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _need(what: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{what}; CI must run the browser tests (.ci/run installs chromium)")
    pytest.skip(what)


@pytest.fixture
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need("playwright is not installed; pip install -e '.[dev]'")
    if not (os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _need(f"no Chromium at {CHROMIUM}; apt-get install chromium")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


class Watched:
    """A page plus every request it made and every error it logged."""

    def __init__(self, browser: Any, origin: str, fragment: str = "") -> None:
        self.origin = origin
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("console", lambda m: self.errors.append(f"console: {m.text}")
                     if m.type == "error" else None)
        self.page.goto(origin + "/dashboard" + fragment)  # fragment: e.g. "#token=..."

    def wait(self, js: str, what: str, timeout_ms: int = 25_000) -> None:
        try:
            self.page.wait_for_function(js, timeout=timeout_ms)
        except Exception as exc:
            text = self.page.inner_text("main")[:3000]
            raise AssertionError(f"the page never showed {what}; it shows:\n{text}") from exc

    def check_clean(self) -> None:
        assert self.errors == []
        elsewhere = [u for u in self.requests if not u.startswith(self.origin + "/")]
        assert elsewhere == [], "the page fetched from another origin"


@contextlib.contextmanager
def control_plane(routes: Callable[[ControlPlane], list[web.RouteDef]],
                  **app: Any) -> Iterator[str]:
    """An empty control plane's API app on loopback (port 0) with `routes(plane)` mounted
    (`app`: more make_app arguments), served from its own event loop thread; yields its
    origin."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    plane: ControlPlane | None = None

    async def boot() -> web.AppRunner:
        nonlocal plane
        plane = ControlPlane(ConfigStore())
        made = serve.make_app(plane, routes=routes(plane), **{"guard": creds.guard(), **app})
        return await serve.serve(made, "127.0.0.1", 0)

    runner = asyncio.run_coroutine_threadsafe(boot(), loop).result(10)
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        assert plane is not None
        loop.call_soon_threadsafe(plane.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
