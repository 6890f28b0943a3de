"""The fidelity corners of issue 18 as pure logic (the `tollway up` tests are in
test_fidelity_up.py): each names the upstream source it follows."""

from __future__ import annotations

import logging

import pytest

from tests.rollout.conftest import Driver
from tollway.rollout import machine, measure, plans
from tollway.rollout.analysis import runs
from tollway.rollout.model import Phase, RolloutState
from tollway.rollout.service import error_retry_setting


def _run_with(phases: list[runs.AnalysisPhase], interval: float | None) -> tuple[
        runs.AnalysisRun, runs.MetricSpec]:
    spec = runs.MetricSpec("m", {}, interval=interval, count=3)
    run = runs.AnalysisRun("r", (spec,), started_at=0.0)
    for i, p in enumerate(phases):
        runs.record(run, spec, runs.Measurement(p, float(i), float(i)))
    return run, spec


@pytest.mark.parametrize("interval", [None, 1.0, 60.0])
def test_error_retry_is_argos_default_whatever_the_interval(interval: float | None) -> None:
    """argo-rollouts analysis/analysis.go DefaultErrorRetryInterval (10 s): an Error is
    measured again 10 s later; a result after the interval."""
    run, spec = _run_with([runs.AnalysisPhase.ERROR], interval)
    assert runs.next_due_at(run, spec) == 10.0
    assert runs.next_due_at(run, spec, error_retry=2.0) == 2.0  # the controller setting
    run, spec = _run_with([runs.AnalysisPhase.SUCCESSFUL], interval)
    assert runs.next_due_at(run, spec) == (interval or 0.0)


def test_error_retry_setting_reads_the_environment(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("TOLLWAY_ANALYSIS_ERROR_RETRY", raising=False)
    assert error_retry_setting(None) == 10.0
    assert error_retry_setting(3) == 3.0
    monkeypatch.setenv("TOLLWAY_ANALYSIS_ERROR_RETRY", "2s")
    assert error_retry_setting(None) == 2.0
    monkeypatch.setenv("TOLLWAY_ANALYSIS_ERROR_RETRY", "soon")
    with caplog.at_level(logging.ERROR):
        assert error_retry_setting(None) == 10.0
    assert "TOLLWAY_ANALYSIS_ERROR_RETRY='soon' is not a positive duration" in caplog.text


def test_dry_run_rules_search_like_go_regexp_and_must_match() -> None:
    """argo-rollouts utils/analysis/helpers.go GetDryRunMetrics (regexp.MatchString,
    unanchored; a rule matching nothing is an error) and validateDryRunMetrics."""
    names = ["fail-latency", "failure-budget", "success", "p99"]
    assert measure.dry_run_metrics(["^fail"], names) == {"fail-latency", "failure-budget"}
    assert measure.dry_run_metrics(["ure"], names) == {"failure-budget"}
    assert measure.dry_run_metrics([".*"], names) == set(names)
    with pytest.raises(measure.DryRunError, match=r"dryRun\[1\]: Rule didn't match any"):
        measure.dry_run_metrics(["p99", "^latency"], names)
    with pytest.raises(measure.DryRunError, match="two Dry-Run metric rules have the same"):
        measure.dry_run_metrics(["p99", "p99"], names)
    with pytest.raises(measure.DryRunError, match=r"dryRun\[0\]: metricName '\(' is no regex"):
        measure.dry_run_metrics(["("], names)


def _steps(*steps: dict[str, object]) -> dict[str, object]:
    return {"strategy": {"canary": {"steps": list(steps)}}}


def test_pod_template_hash_args_resolve_when_the_run_starts() -> None:
    """argo-rollouts utils/analysis/factory.go BuildArgumentsForRolloutAnalysisRun."""
    plan = plans.argo_plan("web", "default", _steps({"setWeight": 20}, {"analysis": {
        "templates": [{"templateName": "t"}], "dryRun": [{"metricName": "x"}],
        "args": [{"name": "new", "valueFrom": {"podTemplateHashValue": "Latest"}},
                 {"name": "old", "valueFrom": {"podTemplateHashValue": "Stable"}},
                 {"name": "lit", "value": "v"}]}}))
    d = Driver(plan, "aaa")
    d.revision = "bbb"
    d.step()
    (start,) = [e for e in d.effects if e.kind == "start-analysis"]
    assert dict(start.args) == {"new": "bbb", "old": "aaa", "lit": "v"}
    assert start.dry_run == ("x",)


def test_a_field_ref_to_nothing_is_refused_with_the_field_named() -> None:
    with pytest.raises(plans.PlanError, match=r"steps\[0\]\.analysis\.args\[0\]\.valueFrom"
                       r"\.fieldRef: invalid path spec\.x"):
        plans.argo_plan("web", "default", _steps({"analysis": {
            "templates": [{"templateName": "t"}],
            "args": [{"name": "n", "valueFrom": {"fieldRef": {"fieldPath": "spec.x"}}}]}}))
    with pytest.raises(plans.PlanError, match=r"valueFrom: Tollway resolves"):
        plans.argo_plan("web", "default", _steps({"analysis": {
            "templates": [{"templateName": "t"}],
            "args": [{"name": "n", "valueFrom": {"secretKeyRef": {"name": "s"}}}]}}))


def test_field_ref_args_read_the_rollout() -> None:
    """argo-rollouts utils/analysis/factory.go: metadata paths as the downward API reads
    them, other paths walked through the Rollout's JSON (steps, background and blue-green
    analyses alike)."""
    refs = [{"name": n, "valueFrom": {"fieldRef": {"fieldPath": p}}} for n, p in [
        ("app", "metadata.labels['app']"), ("none", "metadata.labels['rev']"),
        ("team", "metadata.annotations['example.com/team']"), ("name", "metadata.name"),
        ("ns", "metadata.namespace"), ("replicas", "spec.replicas"),
        ("image", "spec.template.spec.containers[0].image"), ("all", "metadata.labels")]]
    spec = {"replicas": 3, "template": {"spec": {"containers": [{"image": "web:2"}]}},
            **_steps({"analysis": {"templates": [{"templateName": "t"}], "args": refs}})}
    spec["strategy"]["canary"]["analysis"] = {  # type: ignore[index]
        "templates": [{"templateName": "bg"}], "args": refs[:1]}
    plan = plans.argo_plan("web", "shop", spec, {
        "labels": {"app": "web", "tier": "front"},
        "annotations": {"example.com/team": "payments"}})
    want = {"app": "web", "none": "", "team": "payments", "name": "web", "ns": "shop",
            "replicas": "3", "image": "web:2", "all": 'app="web"\ntier="front"'}
    assert dict(plan.steps[0].args) == want
    assert plan.background_analysis is not None
    assert dict(plan.background_analysis.args) == {"app": "web"}
    bg = plans.argo_plan("web", "shop", {"strategy": {"blueGreen": {
        "activeService": "web", "prePromotionAnalysis": {
            "templates": [{"templateName": "t"}], "args": refs[3:4]}}}})
    assert bg.bluegreen is not None and dict(bg.bluegreen.pre_analysis.args) == {"name": "web"}


def test_bluegreen_post_promotion_stable_is_the_previous_active() -> None:
    """Argo marks the new ReplicaSet stable only after postPromotionAnalysis, so `Stable`
    there is the replica set that served before."""
    plan = plans.argo_plan("web", "default", {"strategy": {"blueGreen": {
        "activeService": "web", "postPromotionAnalysis": {
            "templates": [{"templateName": "t"}],
            "args": [{"name": "s", "valueFrom": {"podTemplateHashValue": "Stable"}},
                     {"name": "l", "valueFrom": {"podTemplateHashValue": "Latest"}}]}}}})
    d = Driver(plan, "aaa")
    d.revision = "bbb"
    d.step()
    (start,) = [e for e in d.effects if e.kind == "start-analysis"]
    assert dict(start.args) == {"s": "aaa", "l": "bbb"}


def test_abort_and_back_to_stable_set_argos_step_index() -> None:
    """argo-rollouts rollout/canary.go syncRolloutStatusCanary: aborted → 0; the stable
    template again → the step count."""
    plan = plans.argo_plan("web", "default", _steps({"setWeight": 20}, {"pause": {}},
                                                     {"setWeight": 50}))
    d = Driver(plan, "aaa")
    d.revision = "bbb"
    d.step()
    assert d.state.step_index == 1 and d.state.pause_reason == "CanaryPauseStep"
    d.step(command="abort")
    assert d.state.phase is Phase.DEGRADED and d.state.step_index == 0
    d.revision = "aaa"
    d.step()
    assert d.state.phase is Phase.HEALTHY and d.state.step_index == 3


def test_old_state_files_get_argos_pause_reasons() -> None:
    for old, new in [("PauseStep", "CanaryPauseStep"), ("ManualGate", "CanaryPauseStep"),
                     ("Inconclusive", "InconclusiveAnalysisRun"), ("UserPause", ""),
                     ("BlueGreenPause", "BlueGreenPause")]:
        st = RolloutState.from_dict({"style": "argo-canary", "phase": "Paused",
                                     "pause_reason": old, "paused": True})
        assert st.pause_reason == new


def test_flagger_measures_nothing_once_the_threshold_is_reached() -> None:
    """fluxcd/flagger pkg/controller/scheduler.go advanceCanary: the failedChecks >=
    threshold rollback comes before runAnalysis."""
    plan = plans.flagger_plan("api", "default", {"analysis": {
        "interval": "10s", "threshold": 2, "stepWeight": 50, "maxWeight": 50}})
    d = Driver(plan, "v1")
    d.step()
    d.revision = "v2"
    d.step()
    assert d.state.phase is Phase.PROGRESSING and d.state.weight == 50
    for n in (1, 2):
        d.now += 10
        assert machine.wants_check(d.state, plan, d.now)
        d.step(check=(False, "bad"))
        assert d.state.failed_checks == n
    d.now += 10
    assert not machine.wants_check(d.state, plan, d.now)  # the rollback tick queries nothing
    d.step()
    assert d.state.phase is Phase.FAILED


def test_measurement_retention_keeps_the_last_n_and_never_trims_counts() -> None:
    """argo-rollouts analysis/analysis.go garbageCollectMeasurements: the newest `limit`
    measurements are kept (measurementRetention per metric, matched like dryRun by
    GetMeasurementRetentionMetrics); the counters are untouched. Without a rule Tollway
    keeps runs.HISTORY_LIMIT (Argo: 10), so the dashboard can chart a judge's history."""
    assert measure.retention_limits([("^p9", 3), ("lat", 5)], ["p99-latency", "rate"]) == {
        "p99-latency": 5}
    with pytest.raises(measure.DryRunError, match=r"measurementRetention\[0\]: Rule didn't"):
        measure.retention_limits([("nothing", 3)], ["rate"])
    for limit, kept in ((3, 3), (None, runs.HISTORY_LIMIT)):
        spec = runs.MetricSpec("m", {}, interval=1.0, retention=limit)
        run = runs.AnalysisRun("r", (spec,), started_at=0.0)
        for i in range(runs.HISTORY_LIMIT + 5):
            runs.record(run, spec, runs.Measurement(runs.AnalysisPhase.SUCCESSFUL, i, i))
        res = run.results["m"]
        assert len(res.measurements) == kept and res.measurements[-1].finished_at == (
            runs.HISTORY_LIMIT + 4)
        assert res.count == res.successful == runs.HISTORY_LIMIT + 5


def test_rollout_measurement_retention_reaches_the_run() -> None:
    plan = plans.argo_plan("web", "default", _steps({"analysis": {
        "templates": [{"templateName": "t"}],
        "measurementRetention": [{"metricName": ".*", "limit": 20}]}}))
    d = Driver(plan, "aaa")
    d.revision = "bbb"
    d.step()
    (start,) = [e for e in d.effects if e.kind == "start-analysis"]
    assert start.retention == ((".*", 20),)
