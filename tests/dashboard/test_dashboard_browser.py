"""The dashboard in a real headless Chromium (Debian's, driven by Playwright).

1. Empty: a control plane with no proxy and no rollout shows sentences saying what to do.
2. Live: `tollway up` on a one-replica Argo Rollout judged by the `tollway` provider,
   steady traffic through the client proxy, a release started through the rollout API;
   the page must draw the client → service edge with a non-zero rate, the split to the
   stable and canary workloads, the rollout with its current step, weights, an analysis
   chart and the judge's evidence, and the proxies — and fetch nothing from elsewhere.

Chromium is never downloaded: CI installs Debian's package (.ci/run). Without it the
tests fail in CI (CI=true) and are skipped elsewhere.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.dashboard.browser_kit import Watched, control_plane
from tests.e2e.e2e_mesh import Mesh, Stream, running, wait_until
from tollway.dashboard import web as dashboard_web

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parent / "data"
SVC = "web.default.svc.cluster.local"
CLIENT_EDGE = f"workload:default/tollway-client->service:{SVC}"


def test_empty_control_plane_says_what_to_do(browser: Any) -> None:
    with control_plane(dashboard_web.routes) as origin:
        w = Watched(browser, origin)
        w.wait("() => Number(document.body.dataset.updates) >= 2", "two refreshes")
        graph = w.page.inner_text("#graph-empty")
        assert "No proxies are registered" in graph and "tollway up DIR" in graph
        assert "No rollouts." in w.page.inner_text("#rollouts")
        assert "No proxies yet." in w.page.inner_text("#mesh")
        assert w.page.locator("#edges").is_hidden()
        w.check_clean()


def _status(mesh: Mesh) -> dict[str, Any]:
    resp = httpx.get(f"{mesh.url}/v1/rollouts/default/web", timeout=5)
    return dict(resp.json().get("status") or {}) if resp.status_code == 200 else {}


def _measured(st: dict[str, Any]) -> bool:
    return any(m.get("measurements") for run in st.get("analysisRuns") or ()
               for m in run.get("metricResults") or ())


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    root = tmp_path / "web"
    root.mkdir()
    text = (DATA / "web-rollout.yaml").read_text()
    (root / "web.yaml").write_text(text.replace("PYTHON", json.dumps(sys.executable)))
    with running(root) as m:
        yield m




@pytest.mark.timeout(150)
def test_live_mesh_graph_rollout_and_proxies(browser: Any, mesh: Mesh) -> None:
    wait_until(lambda: _status(mesh).get("phase") == "Healthy", 30, "the rollout to settle")
    with Stream(mesh, host="web:8080") as stream:
        stream.wait_for(lambda v: len(v) >= 20)
        started = httpx.post(f"{mesh.url}/v1/rollouts/default/web/set-image", timeout=10,
                             headers=mesh.admin_headers(),
                             json={"image": "demo:v2", "env": {"VERSION": "v2"},
                                   "actor": "test", "reason": "dashboard test"})
        assert started.status_code == 200, started.text
        wait_until(lambda: _measured(_status(mesh)), 40, "a first analysis measurement")
        w = Watched(browser, mesh.url)
        w.wait(f"""() => {{
            const e = document.querySelector('g.edge[data-edge="{CLIENT_EDGE}"]');
            return e !== null && parseFloat(e.dataset.rps) > 0;
        }}""", "the client → web edge with a rate")
        w.wait(f"""() => [...document.querySelectorAll('g.edge.split')]
            .filter(e => e.dataset.edge.startsWith("service:{SVC}->")
                         && parseFloat(e.dataset.rps) > 0).length === 2""",
               "traffic split to the stable and the canary workloads")
        w.wait("""() => document.querySelector(
            '[data-rollout="default/web"] .metric[data-metric="canary-vs-stable"] .evidence')
            !== null""", "the judge's evidence")

    card = w.page.locator('[data-rollout="default/web"]')
    # opened without `tollway dashboard`'s session: read-only, and it says how to act
    assert "tollway dashboard --open" in card.locator(".actions .hint").inner_text()
    buttons = card.locator("button[data-action]")
    assert all(buttons.nth(i).is_disabled() for i in range(buttons.count()))
    assert card.locator("li[data-current=true]").count() == 1
    steps = card.locator("ol.steps li").all_inner_texts()
    assert [s.strip() for s in steps] == ["setWeight: 40", "analysis: canary-judge",
                                          "pause: {}", "setWeight: 100"]
    assert int(card.locator(".weights").get_attribute("data-canary-weight") or 0) == 40
    # up front: canary and stable rates, as a reader compares them
    rates = card.locator('.metric[data-metric="canary-vs-stable"] svg.chart.rates').first
    assert int(rates.get_attribute("data-points") or 0) >= 2
    legend = card.locator('.metric[data-metric="canary-vs-stable"] .chart-box .legend').first
    assert "canary errors %" in legend.inner_text() and "stable errors %" in legend.inner_text()
    assert rates.locator("line.threshold").count() == 0
    # the judge leads with plain words; its statistics are one click away and stay open
    plain = card.locator(".evidence .plain").first.inner_text()
    assert "canary errors" in plain and "vs stable" in plain and "e-value" not in plain
    assert "log LR" not in card.locator(".evidence").first.inner_text()
    card.locator(".evidence details.stats summary").first.click()
    updates = int(w.page.evaluate("document.body.dataset.updates"))
    w.wait(f"() => Number(document.body.dataset.updates) >= {updates + 2}", "two redraws")
    evidence = card.locator(".evidence").first.inner_text()
    assert "canary bad / total" in evidence and "log LR" in evidence and "judge: " in evidence
    # behind the click: the statistic the judge decides on, against its fail and pass bounds
    chart = card.locator(".evidence details.stats svg.chart.statistic").first
    assert int(chart.get_attribute("data-points") or 0) >= 1
    assert chart.locator("line.threshold").count() == 2
    tracks = w.page.locator("g.node").all_text_contents()
    assert any("canary" in t for t in tracks) and any("stable" in t for t in tracks)
    # workloads are named by version where people look; the template hash is in the tooltip
    names = w.page.locator("g.node text.name").all_text_contents()
    assert "web v1" in names and "web v2" in names, names
    assert not [n for n in names if n.startswith("web-")], names
    canary_tip = w.page.locator('g.node.workload[data-node^="workload:default/web-"]',
                                has_text="web v2").locator("title").text_content() or ""
    assert "template " in canary_tip and "image demo:v2" in canary_tip
    assert "stable v1 60%" in card.locator(".weights").inner_text()
    assert "canary v2 40%" in card.locator(".weights").inner_text()
    # the proxies table fits its panel: no column cut off at the right edge
    assert w.page.evaluate("""() => {
        const t = document.getElementById("proxies"), p = document.getElementById("mesh-panel");
        return t.getBoundingClientRect().right <= p.getBoundingClientRect().right + 0.5;
    }""")
    assert "web v2 · canary" in w.page.inner_text("#proxies")
    row = w.page.locator(f'#edges tr[data-edge="{CLIENT_EDGE}"]').inner_text()
    assert "tollway-client.default" in row and SVC in row
    proxies = w.page.locator("#proxies tr[data-proxy]")
    assert proxies.count() >= 4  # client, gateway, stable and canary sidecars
    assert "SYNCED" in w.page.inner_text("#proxies")
    w.check_clean()


def _click_and_confirm(w: Watched, action: str, reason: str) -> None:
    button = w.page.locator(f'[data-rollout="default/web"] button[data-action="{action}"]')
    w.wait(f"""() => {{
        const b = document.querySelector(
            '[data-rollout="default/web"] button[data-action="{action}"]');
        return b !== null && !b.disabled;
    }}""", f"an enabled {action} button")
    button.click()
    dialog = w.page.locator("dialog#confirm")
    assert dialog.is_visible()
    assert "default/web" in dialog.inner_text()
    w.page.fill("#confirm-reason", reason)
    w.page.click("#confirm-ok")
    assert not dialog.is_visible()


def card_hint(w: Watched) -> str:
    hint = w.page.locator('[data-rollout="default/web"] .actions .hint')
    return hint.inner_text() if hint.count() else ""


def _page_phase(w: Watched, phase: str, what: str) -> None:
    w.wait(f"""() => {{
        const c = document.querySelector('article.rollout[data-rollout="default/web"]');
        return c !== null && c.dataset.phase === "{phase}";
    }}""", what, timeout_ms=60_000)


def _decided(mesh: Mesh, reason: str) -> bool:
    return any(d.get("actor") == "dashboard" and reason in str(d.get("reason", ""))
               for d in _status(mesh).get("decisions") or ())


@pytest.mark.timeout(240)
def test_promote_and_abort_from_the_page_move_the_rollout(browser: Any, mesh: Mesh) -> None:
    """Click Promote, confirm: the paused release completes; a new release, Abort, cancel
    first (nothing happens), then confirm: all traffic back on stable, Degraded."""
    wait_until(lambda: _status(mesh).get("phase") == "Healthy", 30, "the rollout to settle")
    posts: list[dict[str, str]] = []
    with Stream(mesh, host="web:8080") as stream:
        stream.wait_for(lambda v: len(v) >= 10)
        session = mesh.cli("dashboard").stdout  # `to act ... open URL#token=T`, as a user would
        fragment = session[session.index("#token="):].split()[0]
        w = Watched(browser, mesh.url, fragment)
        assert "#token" not in w.page.url  # taken into sessionStorage, gone from the URL
        w.page.on("request", lambda r: posts.append(dict(r.headers, url=r.url))
                  if r.method == "POST" else None)
        w.wait("() => Number(document.body.dataset.updates) >= 1", "a first refresh")
        healthy = w.page.locator('[data-rollout="default/web"] button[data-action]')
        assert healthy.count() == 6
        assert all(healthy.nth(i).is_disabled() for i in range(6)), "Healthy: nothing to do"
        assert card_hint(w) == ""  # a session: no read-only hint

        started = httpx.post(f"{mesh.url}/v1/rollouts/default/web/set-image", timeout=10,
                             headers={"X-Tollway-Request": "1", **mesh.admin_headers()},
                             json={"image": "demo:v2", "env": {"VERSION": "v2"}})
        assert started.status_code == 200, started.text
        _page_phase(w, "Paused", "the release paused, waiting for a promotion")
        card = w.page.locator('[data-rollout="default/web"]')
        assert card.locator('button[data-action="resume"]').is_enabled()
        assert card.locator('button[data-action="retry"]').is_disabled()

        _click_and_confirm(w, "promote", "looks good from the dashboard")
        _page_phase(w, "Healthy", "the promoted release healthy")
        wait_until(lambda: _status(mesh).get("phase") == "Healthy", 30, "the API to agree")
        assert _decided(mesh, "looks good from the dashboard")
        w.wait("""() => document.querySelector('[data-rollout="default/web"] .weights')
            .dataset.canaryWeight === "0" """, "all traffic on the promoted version")
        assert "stable v2 100%" in card.locator(".weights").inner_text()
        result = w.page.text_content("#action-result") or ""
        assert "promote requested" in result and "dashboard" in result

        again = httpx.post(f"{mesh.url}/v1/rollouts/default/web/set-image", timeout=10,
                           headers={"X-Tollway-Request": "1", **mesh.admin_headers()},
                           json={"image": "demo:v3", "env": {"VERSION": "v3"}})
        assert again.status_code == 200, again.text
        w.wait("""() => document.querySelector('[data-rollout="default/web"] .weights')
            .dataset.canaryWeight === "40" """, "the second release at 40%", 60_000)
        # a cancelled confirmation does nothing
        card.locator('button[data-action="abort"]').click()
        assert w.page.locator("dialog#confirm").is_visible()
        w.page.click("#confirm-cancel")
        assert not w.page.locator("dialog#confirm").is_visible()
        assert not _status(mesh).get("abort")

        _click_and_confirm(w, "abort", "aborted from the dashboard")
        _page_phase(w, "Degraded", "the aborted release Degraded")
        st = _status(mesh)
        assert st.get("abort") is True and st.get("phase") == "Degraded"
        assert _decided(mesh, "aborted from the dashboard")
        w.wait("""() => document.querySelector('[data-rollout="default/web"] .weights')
            .dataset.canaryWeight === "0" """, "all traffic back on stable")
        assert card.locator('button[data-action="retry"]').is_enabled()
        assert card.locator('button[data-action="abort"]').is_disabled()
        assert "Aborted" in card.locator("h3").inner_text()
        assert "stable v2 100%" in card.locator(".weights").inner_text()
    actions = [p for p in posts if "/v1/rollouts/default/web/" in p["url"]]
    assert [p["url"].rsplit("/", 1)[1] for p in actions] == ["promote", "abort"]
    assert all(p.get("x-tollway-request") == "1" for p in actions)
    assert all(p.get("authorization", "").startswith("Bearer tw1.") for p in actions)
    assert all(p.get("content-type") == "application/json" for p in actions)
    w.check_clean()
