"""AnalysisRun bookkeeping follows Argo: limits are exceeded, not reached; defaults as Argo's."""

from __future__ import annotations

import math

from tollway.rollout.analysis import runs
from tollway.rollout.analysis.runs import AnalysisPhase as P

SEED15_SUCCESS_RATE = {
    "name": "success-rate",
    "interval": "1m",
    "successCondition": "result[0] >= 0.99",
    "failureLimit": 3,
    "provider": {"prometheus": {"query": "q"}},
}


def _measure(run: runs.AnalysisRun, spec: runs.MetricSpec, value: object, now: float) -> P:
    phase, msg = runs.classify(spec, value)
    return runs.record(run, spec, runs.Measurement(phase, now, now, value, msg))


def test_run_seed15_aborts_on_fourth_failure_not_third() -> None:
    spec = runs.MetricSpec.from_argo(SEED15_SUCCESS_RATE)
    run = runs.AnalysisRun("r", (spec,), started_at=0.0)
    for i in range(3):
        assert runs.due(run, 60.0 * i) == [spec]
        assert _measure(run, spec, [0.95], 60.0 * i) is P.RUNNING
    assert runs.due(run, 179.0) == []
    assert runs.due(run, 180.0) == [spec]
    assert _measure(run, spec, [0.95], 180.0) is P.FAILED
    assert "exceed failureLimit 3" in run.message


def test_run_failures_are_not_reset_by_successes() -> None:
    spec = runs.MetricSpec.from_argo(SEED15_SUCCESS_RATE)
    run = runs.AnalysisRun("r", (spec,), started_at=0.0)
    values = [0.9, 1.0, 0.9, 1.0, 0.9, 1.0]
    assert [_measure(run, spec, [v], i * 60.0) for i, v in enumerate(values)] == [P.RUNNING] * 6
    assert _measure(run, spec, [0.9], 400.0) is P.FAILED


def test_run_omitted_failure_limit_is_zero_and_count_defaults_to_one() -> None:
    spec = runs.MetricSpec.from_argo({"name": "p99", "successCondition": "result[0] <= 200",
                                      "provider": {}})
    assert spec.failure_limit == 0 and spec.effective_count == 1
    run = runs.AnalysisRun("r", (spec,), started_at=0.0)
    assert _measure(run, spec, [250.0], 0.0) is P.FAILED
    ok = runs.AnalysisRun("r2", (spec,), started_at=0.0)
    assert _measure(ok, spec, [150.0], 0.0) is P.SUCCESSFUL
    assert runs.due(ok, 1e9) == []


def test_run_count_reached_is_successful_despite_failures_within_limit() -> None:
    spec = runs.MetricSpec.from_argo({**SEED15_SUCCESS_RATE, "count": 3})
    run = runs.AnalysisRun("r", (spec,), started_at=0.0)
    assert [_measure(run, spec, [v], i * 60.0) for i, v in enumerate([0.9, 1, 1])] == [
        P.RUNNING, P.RUNNING, P.SUCCESSFUL]


def test_run_failure_limit_minus_one_never_fails() -> None:
    spec = runs.MetricSpec.from_argo({**SEED15_SUCCESS_RATE, "failureLimit": -1, "count": 5})
    run = runs.AnalysisRun("r", (spec,), started_at=0.0)
    phases = [_measure(run, spec, [0.1], i * 60.0) for i in range(5)]
    assert phases[-1] is P.SUCCESSFUL


def test_run_inconclusive_when_neither_condition_holds() -> None:
    spec = runs.MetricSpec.from_argo({
        "name": "m", "successCondition": "result[0] > 0.9", "failureCondition": "result[0] < 0.5",
        "provider": {}})
    assert runs.classify(spec, [0.7])[0] is P.INCONCLUSIVE
    assert runs.classify(spec, [0.95])[0] is P.SUCCESSFUL
    assert runs.classify(spec, [0.3])[0] is P.FAILED
    run = runs.AnalysisRun("r", (spec,), started_at=0.0)
    assert _measure(run, spec, [0.7], 0.0) is P.INCONCLUSIVE


def test_run_failure_condition_wins_when_both_hold() -> None:
    spec = runs.MetricSpec.from_argo({
        "name": "m", "successCondition": "result > 1", "failureCondition": "result > 2",
        "provider": {}})
    assert runs.classify(spec, 3)[0] is P.FAILED


def test_run_no_conditions_passes_and_failure_only_condition_inverts() -> None:
    bare = runs.MetricSpec.from_argo({"name": "m", "provider": {}})
    assert runs.classify(bare, 0)[0] is P.SUCCESSFUL
    fail_only = runs.MetricSpec.from_argo({"name": "m", "failureCondition": "result > 5",
                                           "provider": {}})
    assert runs.classify(fail_only, 1)[0] is P.SUCCESSFUL
    assert runs.classify(fail_only, 9)[0] is P.FAILED


def test_run_errors_fail_after_consecutive_error_limit_of_four() -> None:
    spec = runs.MetricSpec.from_argo(SEED15_SUCCESS_RATE)
    run = runs.AnalysisRun("r", (spec,), started_at=0.0)
    phases = []
    for i in range(5):
        m = runs.Measurement(P.ERROR, i * 60.0, i * 60.0, None, "connection refused")
        phases.append(runs.record(run, spec, m))
    assert phases == [P.RUNNING] * 4 + [P.ERROR]
    assert run.results["success-rate"].count == 0
    assert "connection refused" in run.message


def test_run_success_resets_consecutive_errors() -> None:
    spec = runs.MetricSpec.from_argo(SEED15_SUCCESS_RATE)
    run = runs.AnalysisRun("r", (spec,), started_at=0.0)
    for i in range(4):
        runs.record(run, spec, runs.Measurement(P.ERROR, i, i, None, "x"))
    _measure(run, spec, [1.0], 10.0)
    for i in range(4):
        assert runs.record(run, spec, runs.Measurement(P.ERROR, 20 + i, 20 + i)) is P.RUNNING


def test_run_initial_delay_and_worst_metric_ends_run() -> None:
    a = runs.MetricSpec.from_argo({**SEED15_SUCCESS_RATE, "initialDelay": "30s"})
    b = runs.MetricSpec.from_argo({"name": "p99", "successCondition": "result[0] <= 200",
                                   "provider": {}})
    run = runs.AnalysisRun("r", (a, b), started_at=100.0)
    assert runs.due(run, 100.0) == [b]
    assert runs.due(run, 130.0) == [a, b]
    assert _measure(run, b, [500.0], 130.0) is P.FAILED  # one metric failing ends the run


def test_run_terminate_counts_running_metrics_as_successful() -> None:
    spec = runs.MetricSpec.from_argo({**SEED15_SUCCESS_RATE})
    run = runs.AnalysisRun("r", (spec,), started_at=0.0)
    _measure(run, spec, [0.5], 0.0)
    assert runs.terminate(run) is P.SUCCESSFUL
    assert runs.due(run, 1e6) == []


def test_run_dry_run_metric_is_measured_but_never_fails_the_run() -> None:
    spec = runs.MetricSpec.from_argo({"name": "m", "successCondition": "result > 1",
                                      "provider": {}}, dry_run=True)
    run = runs.AnalysisRun("r", (spec,), started_at=0.0)
    assert _measure(run, spec, 0, 0.0) is P.SUCCESSFUL
    assert run.results["m"].phase is P.FAILED


def test_run_round_trips_through_dict() -> None:
    spec = runs.MetricSpec.from_argo(SEED15_SUCCESS_RATE)
    run = runs.AnalysisRun("r", (spec,), started_at=0.0)
    _measure(run, spec, [math.nan], 0.0)
    back = runs.run_from_dict(runs.run_to_dict(run), (spec,))
    assert back.results["success-rate"].failed == 1
    assert runs.next_due_at(back, spec) == 60.0


def test_flagger_check_no_data_fails_and_range_bounds() -> None:
    rng = runs.ThresholdRange(min=99)
    assert runs.flagger_check("request-success-rate", None, rng)[0] is False
    assert "no values" in runs.flagger_check("request-success-rate", math.nan, rng)[1]
    assert runs.flagger_check("request-success-rate", 98.9, rng)[0] is False
    assert runs.flagger_check("request-success-rate", 99.0, rng)[0] is True
    assert runs.flagger_check("d", 501, runs.ThresholdRange(max=500))[0] is False
