"""Istio's Grafana dashboards and Kiali's queries answer right on Tollway's metrics.

A `tollway up` mesh with its own Prometheus (the real binary, scraping every sidecar each
second) carries known traffic through the client proxy to `web.shop`: a steady rate with
10% answered 500, 10% 404 and 20% delayed 400 ms. Every query of
`tollway.dashboard.grafana` (mesh, service, workload dashboards, Kiali's graph and health)
then runs in that Prometheus at the end of the load, and each answer is compared with what
was sent: request rates within a tolerance (the load is paced; `irate` reads the last two
scrapes, so it gets a wider one), the success ratio, 4xx/5xx rates, P50 below the delay and
P99 in the delayed requests' bucket, sizes positive. A Telemetry adding `route_name` to
REQUEST_COUNT (Linkerd-style per-route metrics) splits the rate by the VirtualService's
named routes. Tollway carries no plain TCP, so the dashboards' TCP panels are not shipped.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_mesh import Mesh, _free_port, wait_until

from tests.conftest import reap_members
from tests.prometheus_wait import wait_ingested
from tollway.dashboard import grafana

PROMETHEUS = shutil.which("prometheus")
RATE = 16.0  # requests per second sent
LOAD_SECONDS = 45.0
WINDOW = 30  # seconds: $__rate_interval
SERVICE = "web.shop.svc.cluster.local"

MANIFESTS = """
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web, version: v1}}
    spec:
      containers:
      - name: web
        image: demo
        command: ["tollway", "demo-app"]
        env: [{name: SERVICE, value: web}, {name: VERSION, value: v1}]
        ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{name: http, port: 8080}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: shop}
spec:
  hosts: [web.shop.svc.cluster.local]
  http:
  - name: checkout
    match: [{uri: {prefix: /buy}}]
    route: [{destination: {host: web.shop.svc.cluster.local}}]
  - name: browse
    route: [{destination: {host: web.shop.svc.cluster.local}}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: per-route, namespace: istio-system}
spec:
  metrics:
  - overrides:
    - match: {metric: REQUEST_COUNT, mode: CLIENT}
      tagOverrides:
        route_name: {value: xds.route_name}
"""


def _path(i: int) -> tuple[str, str]:
    """(path, class) of the i-th request: the mix the module doc describes."""
    if i % 10 == 0:
        return "/status/500", "5xx"
    if i % 10 == 5:
        return "/status/404", "4xx"
    if i % 5 == 3:  # every fifth: even the last second before a scrape (irate) has some
        return "/delay/400", "slow"
    return (f"/buy/{i}", "buy") if i % 2 else (f"/look/{i}", "browse")


class Load:
    """Paced requests from worker threads; what was sent, and when it finished."""

    def __init__(self, mesh: Mesh, rate: float, seconds: float, workers: int = 8) -> None:
        self.mesh, self.rate, self.n = mesh, rate, int(rate * seconds)
        self.sent: list[tuple[float, str, int]] = []  # (finish time, class, status)
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.workers = workers

    def run(self) -> None:
        start = time.time() + 0.5
        threads = [threading.Thread(target=self._worker, args=(w, start), daemon=True)
                   for w in range(self.workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(self.n / self.rate + 60)

    def _worker(self, w: int, start: float) -> None:
        proxy = f"http://127.0.0.1:{self.mesh.client_port}"
        with httpx.Client(proxy=proxy, timeout=10) as c:
            for i in range(w, self.n, self.workers):
                delay = start + i / self.rate - time.time()
                if delay > 0:
                    time.sleep(delay)
                path, cls = _path(i)
                try:
                    r = c.get(f"http://web.shop:8080{path}")
                    with self.lock:
                        self.sent.append((time.time(), cls, r.status_code))
                except httpx.HTTPError as exc:
                    with self.lock:
                        self.errors.append(repr(exc))

    def in_window(self, end: float, seconds: float) -> list[tuple[float, str, int]]:
        return [s for s in self.sent if end - seconds < s[0] <= end]


def _query(url: str, expr: str, at: float) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/api/v1/query", params={"query": expr, "time": f"{at:.3f}"},
                  timeout=20)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", (expr, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _values(result: list[dict[str, Any]]) -> list[float]:
    return [float(s["value"][1]) for s in result]


def _close(got: float, want: float, tol: float, what: str) -> None:
    assert want > 0 and abs(got - want) <= tol * want, f"{what}: got {got}, sent {want}"


@pytest.fixture
def mesh(tmp_path: Path) -> Any:
    if PROMETHEUS is None:
        import os

        if os.environ.get("CI") == "true":
            pytest.fail("the prometheus binary is required in CI (apt-get install prometheus)")
        pytest.skip("prometheus binary not installed (apt-get install prometheus)")
    root = tmp_path / "mesh"
    root.mkdir()
    (root / "shop.yaml").write_text(MANIFESTS)
    m = Mesh(root)
    m.extra_args = ["--prometheus-port", str(_free_port())]
    try:
        m.start(180)
        yield m
    finally:
        m.stop()
        reap_members(root / ".tollway" / "members.json")


def _prometheus_url(mesh: Mesh) -> str:
    moved = [ln for ln in mesh.lines if "is in use, so the mesh's Prometheus" in ln]
    assert not moved, moved  # the port was free a moment ago; say so if it was taken
    return f"http://127.0.0.1:{mesh.extra_args[1]}"


def _scraping(url: str) -> bool:
    try:
        return bool(_query(url, "istio_requests_total", time.time()))
    except (httpx.HTTPError, ValueError, AssertionError):
        return False


def test_dashboard_and_kiali_queries_answer_what_was_sent(mesh: Mesh) -> None:
    url = _prometheus_url(mesh)
    wait_until(lambda: mesh.get("web.shop:8080", "/").status_code == 200, 60, "web answering")
    wait_until(lambda: _scraping(url), 90, "Prometheus scraping the sidecars")
    load = Load(mesh, RATE, LOAD_SECONDS)
    load.run()
    assert not load.errors, load.errors[:5]
    end = max(s[0] for s in load.sent)
    at = end
    # every scrape up to `at` committed (a fixed 2.5 s only hoped so: scrapes and their
    # commits lag by seconds on a loaded host)
    wait_ingested(url, "istio_requests_total", at)
    window = load.in_window(end, WINDOW)
    rate = len(window) / WINDOW
    by_class = {c: sum(1 for s in window if s[1] == c) / WINDOW
                for c in ("5xx", "4xx", "slow", "buy", "browse")}
    success = 1 - by_class["5xx"] / rate
    values = {"__rate_interval": f"{WINDOW}s", "service": SERVICE, "qrep": "source",
              "srcwl": ".*", "srcns": ".*", "namespace": "shop", "workload": "web",
              "dstsvc": ".*"}
    outgoing = {**values, "workload": "tollway-client", "namespace": "default"}
    checked = 0
    for d in (*grafana.DASHBOARDS, grafana.KIALI):
        for p in d.panels:
            vals = outgoing if p.title.startswith("Outgoing") else values
            expr = grafana.substitute(p.expr, vals)
            assert not grafana.variables_in(expr), (p.title, expr)
            result = _query(url, expr, at)
            assert result, f"{d.title} / {p.title}: no answer for {expr}"
            got = _values(result)
            tol = 0.6 if "irate(" in expr else 0.3
            what = f"{d.title} / {p.title}"
            if p.check == "rate":
                _close(sum(got), rate, tol, what)
            elif p.check == "rate4xx":
                _close(sum(got), by_class["4xx"], max(tol, 0.4), what)
            elif p.check == "rate5xx":
                _close(sum(got), by_class["5xx"], max(tol, 0.4), what)
            elif p.check == "success":
                assert all(abs(v - success) <= 0.08 for v in got), (what, got, success)
            elif p.check in ("p50", "p50s"):
                scale = 1000 if p.check == "p50s" else 1
                assert all(0 < v * scale < 250 for v in got), (what, got)
            elif p.check in ("p99", "p99s"):
                scale = 1000 if p.check == "p99s" else 1
                assert all(250 <= v * scale <= 1000 for v in got), (what, got)
            elif p.check == "bytes":
                assert all(v > 0 for v in got), (what, got)
            elif p.check == "by_code":
                codes: dict[str, float] = {}
                for s in result:
                    code = s["metric"].get("response_code", "")
                    codes[code] = codes.get(code, 0.0) + float(s["value"][1])
                _close(codes.get("500", 0.0), by_class["5xx"], max(tol, 0.5), what + " 500")
                _close(codes.get("404", 0.0), by_class["4xx"], max(tol, 0.5), what + " 404")
                _close(codes.get("200", 0.0), rate - by_class["5xx"] - by_class["4xx"],
                       tol, what + " 200")
            checked += 1
    assert checked == sum(len(d.panels) for d in (*grafana.DASHBOARDS, grafana.KIALI))
    # per-route metrics (opt-in through Telemetry): a canary of one endpoint judged alone
    routes = _query(url, 'sum by (route_name) (rate(istio_requests_total{reporter="source",'
                         f'destination_service="{SERVICE}"}}[{WINDOW}s]))', at)
    per_route = {s["metric"].get("route_name", ""): float(s["value"][1]) for s in routes}
    _close(per_route.get("checkout", 0.0), by_class["buy"], 0.3, "route checkout")
    _close(per_route.get("browse", 0.0), rate - by_class["buy"], 0.3, "route browse")
