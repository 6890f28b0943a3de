"""The dashboard's routes and `tollway dashboard` on loopback: a real control plane app and
real proxy admin endpoints (the proxy's own metrics renderer), no mesh processes."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from typer.testing import CliRunner

from tests import creds
from tests.exchanges import finished
from tollway.cli.main import app as cli_app
from tollway.control import serve
from tollway.control.plane import ControlPlane
from tollway.control.proxies import ProxyEntry
from tollway.control.store import ConfigStore
from tollway.dashboard import web as dashboard_web
from tollway.proxy.chain.telemetry import IstioCollector, Metrics
from tollway.snapshot import types

SVC = "web.default.svc.cluster.local"
EDGE = f"workload:default/tollway-client->service:{SVC}"
STATIC = Path(dashboard_web.__file__).parent / "static"


@dataclass
class Served:
    url: str
    metrics: Metrics
    loop: asyncio.AbstractEventLoop

    def record(self, code: int, n: int = 1) -> None:
        labels = ("source", "tollway-client", "default", "unknown", "tollway-client", "unknown",
                  "tollway-client", "latest", "Kubernetes", "web-v1", "default", "unknown",
                  "web", "v1", SVC, "web", "default", "web", "v1", "Kubernetes", "http",
                  "unknown")
        for _ in range(n):
            ex = finished(self.metrics.intern(labels), code, 0.0, bytes_in=1, bytes_out=1)
            self.metrics.record(ex, 0.004)


def _run_in_thread(boot: Callable[[asyncio.AbstractEventLoop], Any]) -> Iterator[Any]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    value, cleanup = asyncio.run_coroutine_threadsafe(boot(loop), loop).result(10)
    try:
        yield value
    finally:
        asyncio.run_coroutine_threadsafe(cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@pytest.fixture
def served() -> Iterator[Served]:
    metrics = Metrics()

    async def boot(loop: asyncio.AbstractEventLoop) -> tuple[Served, Any]:
        async def stats(_req: web.Request) -> web.Response:
            registry = CollectorRegistry()
            registry.register(IstioCollector(metrics))
            return web.Response(body=generate_latest(registry), content_type="text/plain")

        proxy_app = web.Application()
        proxy_app.add_routes([web.get("/stats/prometheus", stats)])
        proxy = await serve.serve(proxy_app, "127.0.0.1", 0)
        admin_port = proxy.addresses[0][1]
        with socket.socket() as s:  # a port where nothing listens
            s.bind(("127.0.0.1", 0))
            dead_port = s.getsockname()[1]
        plane = ControlPlane(ConfigStore())
        plane.register(ProxyEntry(types.Node(name="tollway-client.default",
                                             workload="tollway-client", namespace="default",
                                             kind="client"),
                                  admin=f"127.0.0.1:{admin_port}"))
        plane.register(ProxyEntry(types.Node(name="gone.default", workload="gone",
                                             namespace="default"),
                                  admin=f"127.0.0.1:{dead_port}"))
        routes = dashboard_web.routes(plane, min_interval=0.0)
        app = serve.make_app(plane, guard=creds.guard(), routes=routes)
        runner = await serve.serve(app, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"

        async def cleanup() -> None:
            await runner.cleanup()
            await proxy.cleanup()
            plane.close()

        return Served(url, metrics, loop), cleanup

    yield from _run_in_thread(boot)


def test_page_and_assets_are_served_with_a_same_origin_policy(served: Served) -> None:
    page = httpx.get(served.url + "/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "connect-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="/dashboard/app.js"' in page.text
    js = httpx.get(served.url + "/dashboard/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert httpx.get(served.url + "/dashboard/style.css").status_code == 200
    assert httpx.get(served.url + "/dashboard/secret.txt").status_code == 404
    moved = httpx.get(served.url + "/dashboard/", follow_redirects=False)
    assert moved.status_code == 302 and moved.headers["location"] == "/dashboard"


def test_the_page_loads_nothing_from_another_origin() -> None:
    html = (STATIC / "index.html").read_text()
    assert not re.search(r'(src|href)="(?!/dashboard/|data:)', html)
    js = (STATIC / "app.js").read_text()
    assert set(re.findall(r"fetch\((\S+?)[,)]", js)) == {"path"}
    assert re.findall(r"const path = `(/v1/[a-z]+/)", js) == ["/v1/rollouts/"]  # actions
    assert set(re.findall(r'getJSON\([`"]([^`"?]+)', js)) == {
        "/v1/dashboard/graph", "/v1/dashboard/rollouts", "/v1/dashboard/mesh",
        "/v1/dashboard/traces"}
    assert "url(" not in (STATIC / "style.css").read_text()


def test_graph_rates_the_traffic_between_two_scrapes(served: Served) -> None:
    served.loop.call_soon_threadsafe(served.record, 200, 3)
    first = httpx.get(served.url + "/v1/dashboard/graph").json()
    assert first["measured"] is False and first["proxies"] == 1  # the dead one is not there
    assert {e["id"]: e["rps"] for e in first["edges"]}[EDGE] is None
    done = threading.Event()

    def more() -> None:
        served.record(200, 5)
        served.record(503, 2)
        done.set()

    served.loop.call_soon_threadsafe(more)
    assert done.wait(5)
    second = httpx.get(served.url + "/v1/dashboard/graph?window=30").json()
    edge = {e["id"]: e for e in second["edges"]}[EDGE]
    assert second["measured"] is True and second["window"] == 30
    assert edge["requests"] == 7 and edge["rps"] > 0
    assert edge["errorRate"] == pytest.approx(2 / 7)
    assert edge["p99"] is not None and edge["p50"] <= edge["p99"]
    nodes = {n["id"]: n for n in second["nodes"]}
    assert nodes["workload:default/tollway-client"]["role"] == "client"
    assert second["layout"]["workload:default/tollway-client"][0] == 0


@pytest.mark.parametrize("window", ["abc", "0", "100000", "nan"])
def test_a_bad_window_is_one_sentence(served: Served, window: str) -> None:
    resp = httpx.get(served.url + f"/v1/dashboard/graph?window={window}")
    assert resp.status_code == 400
    assert "between 1 and 300" in resp.json()["error"]


def test_mesh_shows_proxies_with_their_metrics_and_no_rollouts(served: Served) -> None:
    httpx.get(served.url + "/v1/dashboard/graph")
    view = httpx.get(served.url + "/v1/dashboard/mesh").json()
    metrics = {p["name"]: p["metrics"] for p in view["proxies"]}
    assert metrics["tollway-client.default"] == "ok"
    assert metrics["gone.default"].startswith("metrics unreachable")
    assert view["summary"]["proxies"] == 2
    assert httpx.get(served.url + "/v1/dashboard/rollouts").json() == {"items": []}


def test_cli_dashboard_prints_the_url_and_what_it_shows(served: Served) -> None:
    out = CliRunner().invoke(cli_app, ["dashboard", "--server", served.url])
    assert out.exit_code == 0, out.output
    assert f"dashboard: {served.url}/dashboard" in out.output
    assert "2 proxies" in out.output and "no rollouts" in out.output


def test_cli_dashboard_says_what_to_do_when_nothing_answers() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = CliRunner().invoke(cli_app, ["dashboard", "--server", f"http://127.0.0.1:{port}"])
    assert out.exit_code == 1
    assert "cannot reach the control plane" in out.output and "tollway up DIR" in out.output
    assert "Traceback" not in out.output


def test_cli_dashboard_on_a_control_plane_without_one() -> None:
    async def boot(_loop: asyncio.AbstractEventLoop) -> tuple[str, Any]:
        plane = ControlPlane(ConfigStore())
        runner = await serve.serve(serve.make_app(plane, guard=creds.guard()), "127.0.0.1", 0)

        async def cleanup() -> None:
            await runner.cleanup()
            plane.close()

        return f"http://127.0.0.1:{runner.addresses[0][1]}", cleanup

    for url in _run_in_thread(boot):
        out = CliRunner().invoke(cli_app, ["dashboard", "--server", url])
        assert out.exit_code == 1 and "does not serve a dashboard" in out.output
