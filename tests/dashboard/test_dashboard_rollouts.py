"""The rollout panel's data, without sockets: built from status in the controller's own shapes
(argo_status / flagger_status, real Measurements and judge Evidence), thresholds read from
the AnalysisTemplate's conditions, Flagger checks read back from their lines."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tollway.config.load import load_paths, load_text
from tollway.config.resource import ResourceSet
from tollway.control.store import ConfigStore
from tollway.dashboard import mesh, rollouts
from tollway.rollout import plans, status
from tollway.rollout.analysis import judge, runs
from tollway.rollout.model import Phase, RolloutState

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _example(name: str) -> ResourceSet:
    loaded = load_paths([EXAMPLES / name])
    assert loaded.ok, [f.render() for f in loaded.findings]
    return ResourceSet(loaded.resources)


def _argo_status(resources: ResourceSet, run: runs.AnalysisRun, step: int,
                 weight: int) -> dict[str, Any]:
    res = resources.get("Rollout", "payments", "payment-service")
    assert res is not None
    plan = plans.argo_plan(res.name, res.namespace, res.spec)
    state = RolloutState(style="argo-canary", phase=Phase.PROGRESSING, revision="abc123",
                         stable_revision="old999", step_index=step, weight=weight,
                         history=[{"at": 1.0, "phase": "Progressing", "step": step,
                                   "weight": weight, "reason": "step 2: analysis started",
                                   "actor": "controller"}])
    return status.argo_status(state, plan, {run.name: runs.run_to_dict(run)}, at=50.0)


def test_argo_rollout_steps_weights_and_threshold_chart() -> None:
    resources = _example("rollout")
    res = resources.get("Rollout", "payments", "payment-service")
    assert res is not None
    specs = rollouts.metric_specs(res, resources)
    assert set(specs) == {"success-rate", "p99-latency"}
    spec = runs.MetricSpec.from_argo(specs["success-rate"])
    run = runs.AnalysisRun("payment-service-abc123-2", (spec,), started_at=100.0)
    for t, value in ((100.0, [0.995]), (160.0, [0.97]), (220.0, "NaN")):
        phase, message = runs.classify(spec, value)
        runs.record(run, spec, runs.Measurement(phase, t, t, value, message))
    view = rollouts.rollout_view(res, _argo_status(resources, run, step=2, weight=5),
                                 resources)
    assert view["phase"] == "Progressing" and view["weights"] == {"stable": 95, "canary": 5}
    current = [s for s in view["steps"] if s["current"]]
    assert [s["index"] for s in current] == [2] and current[0]["text"].startswith("analysis")
    assert [s["done"] for s in view["steps"][:3]] == [True, True, False]
    metric = view["analysis"][0]["metrics"][0]
    assert metric["name"] == "success-rate" and metric["provider"] == "prometheus"
    assert metric["thresholds"] == [{"op": ">=", "value": 0.99, "kind": "success",
                                     "text": "result[0] >= 0.99"}]
    points = metric["series"][0]["points"]
    assert [p["t"] for p in points] == [0.0, 60.0, 120.0]
    assert [p["v"] for p in points] == [0.995, 0.97, None]  # "NaN" has nothing to plot
    assert [p["phase"] for p in points] == ["Successful", "Failed", "Error"]
    assert metric["counts"]["failed"] == 1 and metric["evidence"] is None
    assert view["decisions"][0]["reason"] == "step 2: analysis started"


def test_the_judge_plots_its_statistic_and_shows_its_evidence() -> None:
    resources = _example("rollout")
    cfg = judge.JudgeConfig(min_requests=50)
    spec = runs.MetricSpec("canary-vs-stable", {"plugin": {"tollway": {"metric": "judge"}}},
                           interval=1.0)
    run = runs.AnalysisRun("r1", (spec,), started_at=10.0)
    state = judge.JudgeState()
    verdicts = []
    for i, window in enumerate([judge.Window(40, 4, 400, 2), judge.Window(40, 5, 400, 2)]):
        state = judge.observe(state, window, cfg)
        ev = judge.verdict(state, cfg)
        verdicts.append(ev.verdict)
        phase = {"pass": runs.AnalysisPhase.SUCCESSFUL,
                 "fail": runs.AnalysisPhase.FAILED}.get(ev.verdict, runs.AnalysisPhase.RUNNING)
        runs.record(run, spec, runs.Measurement(phase, 11.0 + i, 11.0 + i, ev.to_dict(),
                                                ev.reason))
    metric = rollouts.rollout_view(
        resources.get("Rollout", "payments", "payment-service"),  # type: ignore[arg-type]
        _argo_status(resources, run, 2, 5), resources)["analysis"][0]["metrics"][0]
    assert metric["judge"] is True and metric["provider"] == ""
    ev = metric["evidence"]
    assert ev["verdict"] == verdicts[-1]
    errors = next(s for s in ev["signals"] if s["name"] == "error")
    assert (errors["canary_total"], errors["canary_bad"]) == (80, 9)
    assert (errors["stable_total"], errors["stable_bad"]) == (800, 4)
    llr = next(s for s in metric["series"] if s["name"] == "error LLR")["points"]
    assert len(llr) == 2 and llr[1]["v"] == pytest.approx(errors["log_likelihood_ratio"])
    assert {t["text"]: t["value"] for t in metric["thresholds"]} == {
        "fail": pytest.approx(cfg.fail_bound), "pass": pytest.approx(cfg.pass_bound)}
    # what a reader compares first: canary and stable rates in %, per measurement
    rates = {r["name"]: [p["v"] for p in r["points"]] for r in metric["rates"]}
    assert rates["canary errors %"] == [pytest.approx(10.0), pytest.approx(100 * 9 / 80)]
    assert rates["stable errors %"] == [pytest.approx(0.5), pytest.approx(0.5)]
    assert ev["summary"].startswith("canary errors 11% vs stable 0.5%")


def test_flagger_canary_checks_become_charts_with_its_threshold_range() -> None:
    resources = _example("flagger")
    res = resources.get("Canary", "default", "api")
    assert res is not None
    plan = plans.flagger_plan(res.name, res.namespace, res.spec)
    state = RolloutState(style="flagger", phase=Phase.PROGRESSING, weight=20)
    checks = [
        {"at": 1000.0, "ok": True, "weight": 10,
         "detail": "request-success-rate 100 within range; request-duration 12.5 within range"},
        {"at": 1060.0, "ok": False, "weight": 20,
         "detail": "request-success-rate 97.5 < 99; request-duration 1.2e+03 > 500"},
        {"at": 1120.0, "ok": False, "weight": 20,
         "detail": "request-success-rate: no values found; request-duration: no values found"},
    ]
    view = rollouts.rollout_view(res, status.flagger_status(state, plan, checks, 1200.0),
                                 resources)
    assert view["strategy"] == "flagger" and view["weights"]["canary"] == 20
    assert [s["text"] for s in view["steps"]] == [f"canary weight {w}%"
                                                  for w in (10, 20, 30, 40, 50)]
    assert [s["index"] for s in view["steps"] if s["current"]] == [1]
    metrics = {m["name"]: m for m in view["analysis"][0]["metrics"]}
    rate = metrics["request-success-rate"]
    assert [p["v"] for p in rate["series"][0]["points"]] == [100.0, 97.5, None]
    assert [p["t"] for p in rate["series"][0]["points"]] == [0.0, 60.0, 120.0]
    assert rate["thresholds"][0]["op"] == ">=" and rate["thresholds"][0]["value"] == 99
    duration = metrics["request-duration"]
    assert duration["series"][0]["points"][1]["v"] == 1200.0
    assert duration["thresholds"][0]["op"] == "<=" and duration["thresholds"][0]["value"] == 500


def test_no_rollouts_no_views_and_an_unobserved_rollout_shows_its_spec_steps() -> None:
    assert rollouts.views(_example("canary"), lambda _k: {}) == []
    resources = _example("rollout")
    [view] = rollouts.views(resources, lambda _k: {})
    assert view["observed"] is False and view["phase"] == "Pending"
    assert view["steps"][0]["text"] == "setWeight: 5"
    assert view["steps"][2]["text"] == "analysis: success-rate"
    assert view["weights"] == {"stable": 100, "canary": 0}


def test_workload_tracks_name_canary_and_stable() -> None:
    resources = _example("rollout")
    resources = ResourceSet([*resources, *load_text(
        "apiVersion: flagger.app/v1beta1\nkind: Canary\nmetadata: {name: api}\n"
        "spec:\n  targetRef: {apiVersion: apps/v1, kind: Deployment, name: api}\n"
        "  service: {port: 8080}\n  analysis: {interval: 1m, stepWeight: 10}\n").resources])
    tracks = rollouts.workload_tracks(
        resources, lambda k: {"currentPodHash": "new1", "stableRS": "old2"}
        if k[0] == "Rollout" else {})
    assert tracks[("payments", "payment-service-new1")]["track"] == "canary"
    assert tracks[("payments", "payment-service-old2")]["track"] == "stable"
    assert tracks[("default", "api-primary")]["track"] == "stable"
    assert tracks[("default", "api")]["track"] == "canary"


@pytest.mark.parametrize(("condition", "want"), [
    ("result[0] >= 0.99", [(">=", 0.99)]),
    ("result <= 200", [("<=", 200.0)]),
    ("asFloat(result) < 1.5e3", [("<", 1500.0)]),
    ("0.95 <= result[0]", [(">=", 0.95)]),
    ("result[0] > 0.9 && result[0] < 1", [(">", 0.9), ("<", 1.0)]),
    ("len(result) > 0", []),
    ("isNaN(result)", []),
    ("", []),
])
def test_thresholds_read_from_conditions(condition: str, want: list[tuple[str, float]]) -> None:
    got = rollouts.thresholds(condition, "success")
    assert [(t["op"], t["value"]) for t in got] == want


@settings(max_examples=200, deadline=None)
@given(op=st.sampled_from([">=", "<=", ">", "<", "=="]),
       value=st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12),
       lhs=st.sampled_from(["result", "result[0]", "asFloat(result)", "result[ 0 ]"]),
       flipped=st.booleans())
def test_any_plain_comparison_gives_its_line(op: str, value: float, lhs: str,
                                             flipped: bool) -> None:
    flip = {">=": "<=", "<=": ">=", ">": "<", "<": ">", "==": "=="}
    text = f"{value!r} {flip[op]} {lhs}" if flipped else f"{lhs} {op} {value!r}"
    [line] = rollouts.thresholds(text, "failure")
    assert line["op"] == op and line["kind"] == "failure"
    assert line["value"] == pytest.approx(value)


@pytest.mark.parametrize(("value", "want"), [
    (0.5, 0.5), (3, 3.0), ([0.9, 0.1], 0.9), ([], None), ("NaN", None), ("inf", None),
    ("12.5", 12.5), (True, None), (None, None), ({"a": 1}, None), (math.nan, None),
])
def test_number(value: Any, want: float | None) -> None:
    assert rollouts.number(value) == want


def test_mesh_view_counts_statuses_and_marks_unscraped_proxies() -> None:
    store = ConfigStore()
    result = store.apply(list(load_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec:\n  ports: [{port: 80}]\n"
    ).resources), actor="alice", reason="tollway apply -f a.yaml")
    assert result.ok
    rows = [{"name": "a", "status": "SYNCED", "admin": "127.0.0.1:1"},
            {"name": "b", "status": "NACKED", "admin": "127.0.0.1:2"},
            {"name": "c", "status": "SYNCED", "admin": "127.0.0.1:3"},
            {"name": "d", "status": "DISCONNECTED", "admin": ""}]
    view = mesh.view(rows, {"127.0.0.1:1": "", "127.0.0.1:2": "metrics unreachable (X)"},
                     store.current(), store.revision, store.audit())
    assert view["summary"] == {"proxies": 4, "synced": 2, "stale": 0, "nacked": 1,
                               "disconnected": 1}
    assert [p["metrics"] for p in view["proxies"]] == [
        "ok", "metrics unreachable (X)", "not scraped yet", "no admin address"]
    assert view["resources"] == [{"kind": "Service", "count": 1}]
    assert view["changes"][0]["actor"] == "alice"
    assert view["changes"][0]["changed"] == ["Service/default/a"]
