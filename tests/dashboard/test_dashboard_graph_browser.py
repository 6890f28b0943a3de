"""The service graph as Chromium draws it: a busy mesh (two entry points, three services,
canary splits, a workload calling another service), checked for what a reader needs.

Labels are never drawn over an arrow (every arrow is sampled every 2 px against every
label's box), never over another label or a node, and everything fits the drawing. The data
is the dashboard's own: real `Dashboard` routes, `graph.build` over two scrapes of per-proxy
counters (as the proxies' /stats/prometheus gives them), the real page and its CSP.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from tests.dashboard.browser_kit import Watched, control_plane
from tollway.control.plane import ControlPlane
from tollway.dashboard import web as dashboard_web
from tollway.dashboard.graph import EdgeKey, ProxyCounts, Scrape, Tally

pytestmark = pytest.mark.slow

# (caller ns, caller, service, endpoint ns, endpoint, requests over the window, 5xx)
CALLS = [
    ("default", "tollway-client", "web.default.svc.cluster.local", "default", "web-aaaa111111",
     700, 0),
    ("default", "tollway-client", "web.default.svc.cluster.local", "default", "web-bbbb222222",
     480, 15),
    ("istio-system", "istio-ingressgateway", "web.default.svc.cluster.local", "default",
     "web-aaaa111111", 300, 3),
    ("istio-system", "istio-ingressgateway", "payments.payments.svc.cluster.local", "payments",
     "payment-service-v1", 120, 0),
    ("istio-system", "istio-ingressgateway", "payments.payments.svc.cluster.local", "payments",
     "payment-service-v2", 10, 0),
    ("default", "web-aaaa111111", "api.default.svc.cluster.local", "default", "api-v1", 900, 0),
    ("default", "web-bbbb222222", "api.default.svc.cluster.local", "default", "api-v2", 400, 110),
]


def _scrape(at: float, scale: float) -> Scrape:
    proxies: dict[str, ProxyCounts] = {}
    for sns, src, svc, dns, dst, n, bad in CALLS:
        counts = proxies.setdefault(f"{src}.{sns}:15000", ProxyCounts())  # one per caller
        codes = {"200": (n - bad) * scale, **({"503": bad * scale} if bad else {})}
        buckets = {5.0: n * scale * 0.6, 25.0: n * scale * 0.95, float("inf"): n * scale}
        counts.outbound[EdgeKey(sns, src, svc, dns, dst)] = Tally(codes, buckets)
    return Scrape(at, proxies)


@pytest.fixture
def origin() -> Iterator[str]:
    def routes(plane: ControlPlane) -> list[web.RouteDef]:
        board = dashboard_web.Dashboard(plane, targets=lambda: [], clock=lambda: 20.0)
        board.history = collections.deque([_scrape(10.0, 1.0), _scrape(20.0, 2.0)])
        return board.routes()

    with control_plane(routes) as url:
        yield url


# Every problem a reader would see, as sentences; [] when the drawing is clean.
PROBLEMS = """() => {
  const svg = document.getElementById("graph");
  const out = [];
  const box = (el) => { const b = el.getBBox(); return {x1: b.x, y1: b.y, x2: b.x + b.width,
                                                         y2: b.y + b.height}; };
  const hit = (a, b) => a.x1 < b.x2 && b.x1 < a.x2 && a.y1 < b.y2 && b.y1 < a.y2;
  const labels = [...svg.querySelectorAll("g.edge-label")].map((g) =>
    ({id: g.dataset.edgeLabel, boxes: [...g.querySelectorAll("text")].map(box)}));
  const nodes = [...svg.querySelectorAll("g.node")].map((g) =>
    ({id: g.dataset.node, boxes: [...g.querySelectorAll("circle,polygon,text")].map(box)}));
  const view = svg.viewBox.baseVal;
  for (const [i, l] of labels.entries()) {
    for (const b of l.boxes) {
      if (b.x1 < 0 || b.y1 < 0 || b.x2 > view.width || b.y2 > view.height) {
        out.push(`label of ${l.id} outside the drawing`);
      }
      for (const m of labels.slice(i + 1)) {
        if (m.boxes.some((c) => hit(b, c))) out.push(`labels of ${l.id} and ${m.id} overlap`);
      }
      for (const n of nodes) {
        if (n.boxes.some((c) => hit(b, c))) out.push(`label of ${l.id} over node ${n.id}`);
      }
    }
  }
  for (const g of svg.querySelectorAll("g.edge")) {
    const path = g.querySelector("path");
    const len = path.getTotalLength();
    for (let s = 0; s <= len; s += 2) {
      const p = path.getPointAtLength(s);
      for (const l of labels) {
        if (l.boxes.some((b) => p.x > b.x1 + 1 && p.x < b.x2 - 1 && p.y > b.y1 + 1
                                && p.y < b.y2 - 1)) {
          out.push(`arrow ${g.dataset.edge} runs through the label of ${l.id}`);
          break;
        }
      }
    }
  }
  return [...new Set(out)];
}"""


def test_a_busy_graph_draws_no_label_over_an_arrow_a_label_or_a_node(browser: Any,
                                                                        origin: str) -> None:
    w = Watched(browser, origin)
    requests = {(c[1], c[2]) for c in CALLS}
    splits = {(c[2], c[4]) for c in CALLS}
    w.wait(f"() => document.querySelectorAll('g.edge').length === "
           f"{len(requests) + len(splits)}", "every request and split arrow")
    w.wait("() => document.querySelectorAll('g.edge-label').length === "
           "document.querySelectorAll('g.edge').length", "a label for every arrow")
    assert w.page.evaluate(PROBLEMS) == []
    # the labels say the numbers: 27.5% of api-v2's calls failed (110 of 400)
    label = w.page.locator('g.edge-label[data-edge-label="service:api.default.svc.cluster.local'
                           '->workload:default/api-v2"]').inner_html()
    assert "27.5% err" in label and "40.0 rps" in label
    # narrow window: the drawing shrinks to fit instead of being cut off
    w.page.set_viewport_size({"width": 900, "height": 900})
    fits = w.page.evaluate("""() => document.getElementById("graph").getBoundingClientRect()
        .right <= document.getElementById("graph-panel").getBoundingClientRect().right""")
    assert fits
    w.check_clean()
