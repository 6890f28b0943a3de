"""Argo blue-green on a fake clock: preview, pre/post-promotion analysis, auto promotion."""

from __future__ import annotations

from typing import Any

from tests.rollout.conftest import Driver
from tollway.rollout import plans, traffic
from tollway.rollout.model import Phase, Plan


def _plan(**bg: Any) -> Plan:
    return plans.argo_plan("shop", "default", {"strategy": {"blueGreen": {
        "activeService": "shop-active", "previewService": "shop-preview", **bg}}})


def test_bluegreen_auto_promotion_switches_active_once_preview_is_ready() -> None:
    d = Driver(_plan())
    d.revision = "v2"
    d.step(ready=False)
    assert d.state.phase is Phase.PROGRESSING and d.state.stable_revision == "v1"
    d.advance(1)
    assert d.state.phase is Phase.HEALTHY and d.state.stable_revision == "v2"
    assert d.state.previous_revision == "v1"
    assert [e.kind for e in d.effects if e.kind in ("promote-stable", "scale-down")] == [
        "promote-stable", "scale-down"]


def test_bluegreen_failed_pre_promotion_leaves_active_untouched() -> None:
    d = Driver(_plan(prePromotionAnalysis={"templates": [{"templateName": "smoke"}]}))
    d.revision = "v2"
    d.step()
    (run,) = d.started_runs()
    d.analysis[run] = "Running"
    d.advance(10)
    assert d.state.phase is Phase.PROGRESSING
    d.analysis[run] = "Failed"
    d.advance(10)
    assert d.state.phase is Phase.DEGRADED and d.state.abort
    assert d.state.stable_revision == "v1"
    assert "promote-stable" not in d.kinds()
    assert "untouched" in d.state.message


def test_bluegreen_manual_promotion_and_auto_promotion_seconds() -> None:
    d = Driver(_plan(autoPromotionEnabled=False))
    d.revision = "v2"
    d.step()
    d.advance(3600)
    assert d.state.phase is Phase.PAUSED and d.state.stable_revision == "v1"
    d.step(command="promote", actor="ops")
    assert d.state.phase is Phase.HEALTHY and d.state.stable_revision == "v2"
    t = Driver(_plan(autoPromotionSeconds=30))
    t.revision = "v2"
    t.step()
    t.advance(29)
    assert t.state.stable_revision == "v1"
    t.advance(1)
    assert t.state.stable_revision == "v2"


def test_bluegreen_failed_post_promotion_switches_back() -> None:
    d = Driver(_plan(postPromotionAnalysis={"templates": [{"templateName": "smoke"}]}))
    d.revision = "v2"
    d.step()
    assert d.state.stable_revision == "v2"
    (run,) = d.started_runs()
    d.analysis[run] = "Failed"
    d.advance(5)
    assert d.state.phase is Phase.DEGRADED and d.state.stable_revision == "v1"
    assert "switched back" in d.state.message


def test_bluegreen_services_point_at_active_and_preview() -> None:
    from tollway.config import load

    world = load.load_text("""
apiVersion: v1
kind: Service
metadata: {name: shop-active}
spec: {selector: {app: shop}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: shop-preview}
spec: {selector: {app: shop}, ports: [{port: 80}]}
""").resources
    from tollway.config.resource import Resource, SourceRef

    rollout = Resource("argoproj.io/v1alpha1", "Rollout", "shop", "default",
                       {"replicas": 3, "selector": {"matchLabels": {"app": "shop"}}},
                       {}, SourceRef("x", 0, 1))
    plan = _plan(previewReplicaCount=1)
    d = Driver(plan)
    d.revision = "v2"
    d.step(ready=False)
    tmpl = {"metadata": {"labels": {"app": "shop"}}, "spec": {"containers": []}}
    out = traffic.bluegreen_resources(rollout, plan, d.state, {"v1": tmpl, "v2": tmpl}, world)
    sel = {m["metadata"]["name"]: m["spec"]["selector"][traffic.HASH_LABEL]
           for m in out if m["kind"] == "Service"}
    assert sel == {"shop-active": "v1", "shop-preview": "v2"}
    reps = {m["metadata"]["name"]: m["spec"]["replicas"] for m in out if m["kind"] == "Deployment"}
    assert reps == {"shop-v1": 3, "shop-v2": 1}
