"""The controller against a real ConfigStore on a fake clock: resources edited through the
store, status in Argo's shape, abort back to stable, resume after a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.rollout.conftest import SEED
from tests.rollout.test_traffic_edits import MESH
from tollway.config import load
from tollway.control.store import ConfigStore
from tollway.kit.clock import FakeClock
from tollway.rollout import traffic
from tollway.rollout.analysis.providers.histogram import Counts
from tollway.rollout.service import RolloutService

TEMPLATE = """
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: success-rate, namespace: payments}
spec:
  metrics:
  - name: success-rate
    interval: 10s
    count: 3
    failureLimit: 1
    successCondition: result >= 0.99
    provider:
      plugin:
        tollway: {metric: success-rate, window: 10s}
"""


def _store(clock: FakeClock) -> ConfigStore:
    text = (SEED / "14-argo-rollout.yaml").read_text() + "\n---\n" + MESH + "\n---\n" + TEMPLATE
    res = load.load_text(text)
    assert res.ok, [f.message for f in res.findings if f.is_error]
    store = ConfigStore(clock=clock)
    assert store.apply(list(res.resources), actor="folder").ok
    return store


class Harness:
    def __init__(self, tmp: Path, clock: FakeClock, store: ConfigStore) -> None:
        self.clock = clock
        self.store = store
        self.svc = RolloutService(store, clock=clock, state_dir=tmp, scrape_targets=list,
                                  wait_for_replicas=False)
        self.totals: dict[str, list[float]] = {}

    async def start(self) -> None:
        await self.svc.start(run_loops=False)

    async def sync(self, seconds: float = 0.0) -> dict[str, Any]:
        self.clock.advance(seconds)
        await self.svc.sync_all()
        return self.store.status(("Rollout", "payments", "payment-service"))

    def traffic(self, workload: str, total: float, errors: float) -> None:
        t = self.totals.setdefault(workload, [0.0, 0.0])
        t[0] += total
        t[1] += errors
        snap = {("payments", w): Counts(v[0], v[1]) for w, v in self.totals.items()}
        self.svc.mesh.add(self.clock.monotonic(), snap)

    def vs_weights(self) -> dict[str, int]:
        vs = self.store.get(("VirtualService", "payments", "payment-service"))
        assert vs is not None
        route = vs.spec["http"][-1]["route"]
        return {r["destination"]["subset"]: r["weight"] for r in route}

    def deployments(self) -> set[str]:
        return {r.name for r in self.store.current().of_kind("Deployment")}


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_controller_bad_canary_aborts_through_the_store(tmp_path: Path) -> None:
    async def go() -> None:
        clock = FakeClock()
        h = Harness(tmp_path, clock, _store(clock))
        await h.start()
        st = await h.sync()
        assert st["phase"] == "Healthy"
        stable = st["stableRS"]
        assert h.deployments() == {f"payment-service-{stable}"}
        code, _ = h.svc.command("payments", "payment-service", "set-image",
                                {"image": "payment-service:v2.2.0", "actor": "ci"})
        assert code == 200
        st = await h.sync()
        canary = st["currentPodHash"]
        assert canary != stable and st["phase"] == "Paused"
        assert h.vs_weights() == {"stable": 95, "canary": 5}
        assert f"payment-service-{canary}" in h.deployments()
        st = await h.sync(300)
        assert st["currentStepIndex"] == 2 and st["analysisRuns"]
        for _ in range(2):
            clock.advance(10)
            h.traffic(f"payment-service-{canary}", 100, 5)
            h.traffic(f"payment-service-{stable}", 1900, 5)
            st = await h.sync()
        assert st["phase"] == "Degraded" and st["abort"] is True
        assert h.vs_weights() == {"stable": 100, "canary": 0}
        run = st["analysisRuns"][0]
        assert run["phase"] == "Failed"
        assert "exceed failureLimit 1" in run["message"]
        values = [m["value"] for m in run["metricResults"][0]["measurements"]]
        assert values == [0.95, 0.95]
        audit = [a for a in h.store.audit() if a.actor == "rollout"]
        assert any("aborting" in a.reason for a in audit)
        assert f"payment-service-{canary}" in h.deployments()  # kept 30 s, as Argo does
        text = h.svc.metrics_text()
        assert ('tollway_rollout_info{kind="Rollout",namespace="payments",'
                'name="payment-service",phase="Degraded"} 1') in text
        assert 'tollway_rollout_aborted{kind="Rollout"' in text
        await h.sync(31)
        assert h.deployments() == {f"payment-service-{stable}"}
        dr = h.store.get(("DestinationRule", "payments", "payment-service"))
        assert dr is not None
        assert {s["labels"][traffic.HASH_LABEL] for s in dr.spec["subsets"]} == {stable}
        await h.svc.stop()

    _run(go())


def test_controller_healthy_canary_passes_analysis_and_resumes_after_restart(
    tmp_path: Path,
) -> None:
    async def go() -> None:
        clock = FakeClock()
        store = _store(clock)
        h = Harness(tmp_path, clock, store)
        await h.start()
        st = await h.sync()
        stable = st["stableRS"]
        h.svc.command("payments", "payment-service", "set-image", {"image": "v2"})
        st = await h.sync()
        canary = st["currentPodHash"]
        st = await h.sync(300)
        for _ in range(3):
            clock.advance(10)
            h.traffic(f"payment-service-{canary}", 100, 0)
            h.traffic(f"payment-service-{stable}", 1900, 1)
            st = await h.sync()
        assert st["currentStepIndex"] == 4 and st["phase"] == "Paused"
        assert h.vs_weights() == {"stable": 80, "canary": 20}
        await h.svc.stop()
        # "kill" the controller: a new service on the same store and state dir
        h2 = Harness(tmp_path, clock, store)
        await h2.start()
        revision_before = store.revision
        st = await h2.sync(100)
        assert st["currentStepIndex"] == 4 and st["phase"] == "Paused"
        assert store.revision == revision_before  # nothing re-applied, no blip
        st = await h2.sync(500)
        assert st["currentStepIndex"] == 5  # the 10m pause ended once, not restarted
        await h2.svc.stop()

    _run(go())


def test_controller_promote_full_and_api_errors(tmp_path: Path) -> None:
    async def go() -> None:
        clock = FakeClock()
        h = Harness(tmp_path, clock, _store(clock))
        await h.start()
        await h.sync()
        h.svc.command("payments", "payment-service", "set-image", {"image": "v2"})
        await h.sync()
        assert h.svc.command("payments", "nope", "abort", {})[0] == 404
        assert h.svc.command("payments", "payment-service", "explode", {})[0] == 400
        code, msg = h.svc.command("payments", "payment-service", "promote",
                                  {"full": True, "actor": "alice", "reason": "hotfix"})
        assert code == 202 and "promote-full" in msg
        st = await h.sync()
        assert st["phase"] == "Healthy" and st["stableRS"] == st["currentPodHash"]
        assert h.vs_weights() == {"stable": 100, "canary": 0}
        last = st["decisions"][-1]
        assert last["actor"] == "alice" and "hotfix" in last["reason"]
        summary = h.svc.summary()
        assert summary[0]["phase"] == "Healthy" and summary[0]["kind"] == "Rollout"
        await h.svc.stop()

    _run(go())


def test_controller_restart_rolls_replicas_without_a_new_revision(tmp_path: Path) -> None:
    async def go() -> None:
        clock = FakeClock()
        h = Harness(tmp_path, clock, _store(clock))
        await h.start()
        st = await h.sync()
        stable = st["stableRS"]
        assert h.svc.command("payments", "payment-service", "restart", {"actor": "ops"})[0] == 202
        st = await h.sync()
        assert st["stableRS"] == stable and st["phase"] == "Healthy"
        dep = h.store.get(("Deployment", "payments", f"payment-service-{stable}"))
        assert dep is not None
        notes = dep.spec["template"]["metadata"].get("annotations") or {}
        assert "tollway.dev/restartedAt" in notes
        await h.svc.stop()

    _run(go())
