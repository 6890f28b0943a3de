"""The dashboard's HTTP face, mounted on the control plane's API port by `tollway up`.

  GET /dashboard                      the page (static HTML + vanilla JS + inline SVG)
  GET /dashboard/{app.js,style.css}   its two other files; nothing comes from elsewhere
  GET /v1/dashboard/graph?window=10   the service graph over the last `window` seconds
  GET /v1/dashboard/rollouts          every Rollout and Canary: steps, weights, analysis
  GET /v1/dashboard/mesh              proxies (proxy-status), config revision and changes
  GET /v1/dashboard/traces            the latest traces in the mesh's Jaeger (`--tracing`)

Why scrape on demand: the graph needs the proxies' counters twice, and the page polls
every 1.5 s; scraping when a poll comes in (at most once a second, shared by every open
page) costs nothing while nobody looks. A short history of scrapes is kept so a window
longer than one poll has a base. Scraping is this module's only IO besides serving.
"""

from __future__ import annotations

import asyncio
import collections
import importlib.resources
import json
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
from aiohttp import web

from tollway.control import serve
from tollway.control.plane import ControlPlane
from tollway.dashboard import graph, mesh, rollouts, traces

Target = tuple[str, dict[str, str]]  # (admin host:port, Prometheus target labels)
STATIC = {"app.js": "text/javascript", "style.css": "text/css"}
# The page may talk to its own origin only: no CDN, no font, nothing from the internet.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
MAX_WINDOW = 300.0


def _static(name: str) -> bytes:
    return (importlib.resources.files("tollway.dashboard") / "static" / name).read_bytes()


async def scrape_targets(targets: Sequence[Target], timeout: float = 2.0
                         ) -> tuple[dict[str, graph.ProxyCounts], dict[str, str]]:
    """Every proxy's metrics at once: counts by admin address, and "" or why it failed."""
    async def one(client: httpx.AsyncClient, admin: str) -> graph.ProxyCounts | str:
        try:
            resp = await client.get(f"http://{admin}/stats/prometheus", timeout=timeout)
            resp.raise_for_status()
            return graph.parse_proxy(resp.text)
        except httpx.HTTPError as exc:
            return f"metrics unreachable ({type(exc).__name__})"
        except ValueError as exc:
            return f"metrics unreadable ({exc})"

    admins = list(dict.fromkeys(admin for admin, _ in targets))
    # Admin endpoints are plain HTTP on the proxies' hosts: no TLS, so no CA bundle to load
    # (loading one costs more than the whole scrape of a small mesh).
    async with httpx.AsyncClient(verify=False, trust_env=False) as client:
        results = await asyncio.gather(*(one(client, a) for a in admins))
    counts = {a: r for a, r in zip(admins, results, strict=True)
              if isinstance(r, graph.ProxyCounts)}
    errors = {a: (r if isinstance(r, str) else "") for a, r in zip(admins, results,
                                                                    strict=True)}
    return counts, errors


class Dashboard:
    """Scrape history plus the three JSON views; `routes()` mounts it all."""

    def __init__(self, plane: ControlPlane, *,
                 targets: Callable[[], list[Target]] | None = None,
                 window: float = 10.0, min_interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 tracing_url: str | None = None) -> None:
        self.plane = plane
        self.tracing_url = tracing_url  # Jaeger's query API, when `tollway up --tracing`
        self._traces: tuple[float, dict[str, Any]] | None = None
        self.targets = targets or self._plane_targets
        self.window = window
        self.min_interval = min_interval
        self.clock = clock
        self.history: collections.deque[graph.Scrape] = collections.deque()
        self.errors: dict[str, str] = {}
        self._lock = asyncio.Lock()

    def _plane_targets(self) -> list[Target]:
        return [(g["targets"][0], dict(g["labels"]))
                for g in serve.prometheus_targets(self.plane)]

    async def refresh(self) -> None:
        """Scrape every proxy, unless someone did less than `min_interval` ago."""
        async with self._lock:
            now = self.clock()
            if self.history and now - self.history[-1].at < self.min_interval:
                return
            counts, self.errors = await scrape_targets(self.targets())
            at = self.clock()
            self.history.append(graph.Scrape(at, counts))
            while len(self.history) > 2 and self.history[1].at <= at - MAX_WINDOW - 5.0:
                self.history.popleft()

    def roles(self) -> dict[graph.WorkloadKey, str]:
        return {(e.node.namespace, e.node.workload): e.node.kind for e in self.plane.book.all()}

    async def graph(self, window: float) -> dict[str, Any]:
        await self.refresh()
        store = self.plane.store
        tracks = rollouts.workload_tracks(store.current(), store.status)
        return graph.build(list(self.history), window, self.roles(), tracks)

    async def traces(self) -> dict[str, Any]:
        """The Traces panel (traces.py): Jaeger asked at most once per `min_interval`."""
        url = self.tracing_url
        if url is None:
            return traces.disabled()
        now = self.clock()
        if self._traces is not None and now - self._traces[0] < self.min_interval:
            return self._traces[1]
        try:
            async with httpx.AsyncClient(trust_env=False, timeout=3.0) as client:
                services = (await client.get(f"{url}/api/services")).json().get("data") or []
                answers = await asyncio.gather(*(
                    client.get(f"{url}/api/traces", params={
                        "service": s, "limit": str(traces.MAX_ROWS), "lookback": "1h"})
                    for s in services if s != "jaeger"))
            out = traces.view((a.json() for a in answers if a.status_code == 200), url)
        except (httpx.HTTPError, ValueError) as exc:
            out = {"enabled": True, "url": url, "traces": [],
                   "error": f"Jaeger at {url} did not answer ({type(exc).__name__})"}
        self._traces = (self.clock(), out)
        return out

    def rollouts(self) -> dict[str, Any]:
        store = self.plane.store
        return {"items": rollouts.views(store.current(), store.status)}

    def mesh(self) -> dict[str, Any]:
        store = self.plane.store
        current = store.current()
        return mesh.view(self.plane.proxy_rows(), self.errors, current, store.revision,
                         store.audit(), rollouts.workload_tracks(current, store.status))

    def routes(self) -> list[web.RouteDef]:
        async def page(_req: web.Request) -> web.Response:
            return web.Response(body=_static("index.html"), content_type="text/html",
                                charset="utf-8", headers=_headers())

        async def asset(req: web.Request) -> web.Response:
            name = req.match_info["name"]
            if name not in STATIC:
                raise web.HTTPNotFound(text=f"no {name} here; the dashboard is at /dashboard")
            return web.Response(body=_static(name), content_type=STATIC[name],
                                charset="utf-8", headers=_headers())

        async def slash(_req: web.Request) -> web.Response:
            raise web.HTTPFound("/dashboard")

        async def graph_view(req: web.Request) -> web.Response:
            raw = req.query.get("window", "")
            try:
                window = float(raw) if raw else self.window
            except ValueError:
                window = -1.0
            if not 1.0 <= window <= MAX_WINDOW:
                return web.json_response(
                    {"error": f"window={raw!r} is not a number of seconds between 1 and "
                              f"{MAX_WINDOW:g}; e.g. ?window=10"}, status=400)
            return _json(await self.graph(window))

        async def rollouts_view(_req: web.Request) -> web.Response:
            return _json(self.rollouts())

        async def mesh_view(_req: web.Request) -> web.Response:
            return _json(self.mesh())

        async def traces_view(_req: web.Request) -> web.Response:
            return _json(await self.traces())

        return [web.get("/dashboard", page), web.get("/dashboard/", slash),
                web.get("/dashboard/{name}", asset),
                web.get("/v1/dashboard/graph", graph_view),
                web.get("/v1/dashboard/rollouts", rollouts_view),
                web.get("/v1/dashboard/mesh", mesh_view),
                web.get("/v1/dashboard/traces", traces_view)]


def finite(value: Any) -> Any:
    """The same data with NaN and infinities as null: JSON has no NaN, browsers reject it."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def _json(data: Any) -> web.Response:
    return web.Response(text=json.dumps(finite(data), default=str),
                        content_type="application/json", headers=_no_cache())


def _no_cache() -> dict[str, str]:
    return {"Cache-Control": "no-store"}


def _headers() -> dict[str, str]:
    return {**_no_cache(), "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"}


def routes(plane: ControlPlane, **kwargs: Any) -> list[web.RouteDef]:
    """The dashboard's routes for `serve.make_app(plane, routes=...)`."""
    return Dashboard(plane, **kwargs).routes()
