"""AnalysisRun bookkeeping with Argo's semantics, and Flagger's threshold checks.

Argo (analysis/analysis.go, analysis_types.go): each metric is measured `count` times
(1 if neither count nor interval is set; forever with interval only), first after
`initialDelay`, then every `interval`. A measurement is Successful, Failed, Inconclusive
or Error. The metric fails when failures EXCEED `failureLimit` (omitted = 0, -1 = never),
is Inconclusive when inconclusive results exceed `inconclusiveLimit` (0), and Errors when
consecutive errors exceed `consecutiveErrorLimit` (4). Errors do not count toward
`count`. A run is the worst of its metrics (Successful < Inconclusive < Error < Failed);
a metric that completes badly ends the run at once.

Flagger (scheduler_metrics.go): one check per interval; a metric outside its
`thresholdRange`, an error or "no values found" fails the check; failed checks are
counted over the whole run (see the rollout machine).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tollway.kit.durations import parse_duration
from tollway.rollout.analysis import expr


class AnalysisPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCESSFUL = "Successful"
    INCONCLUSIVE = "Inconclusive"
    ERROR = "Error"
    FAILED = "Failed"

    @property
    def completed(self) -> bool:
        return self not in (AnalysisPhase.PENDING, AnalysisPhase.RUNNING)


_ORDER = list(AnalysisPhase)  # Pending < Running < Successful < Inconclusive < Error < Failed
# analysis/analysis.go DefaultErrorRetryInterval: after an Error measurement Argo measures
# again after 10 s, whatever the metric's interval (a controller setting may change it:
# RolloutService(error_retry=) / TOLLWAY_ANALYSIS_ERROR_RETRY, docs/rollouts.md).
ERROR_RETRY_SECONDS = 10.0
# Measurements kept per metric. Argo keeps 10 (analysis.go DefaultMeasurementHistoryLimit);
# Tollway keeps 120 so the dashboard can chart two minutes of a judge measured every second.
# `measurementRetention` sets it per metric, as in Argo. Counts are never trimmed.
HISTORY_LIMIT = 120


def worse(a: AnalysisPhase, b: AnalysisPhase) -> AnalysisPhase:
    return a if _ORDER.index(a) >= _ORDER.index(b) else b


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric of an AnalysisTemplate, with Argo's defaults filled in."""

    name: str
    provider: Mapping[str, Any]
    interval: float | None = None
    count: int | None = None
    initial_delay: float = 0.0
    success_condition: str | None = None
    failure_condition: str | None = None
    failure_limit: int = 0
    inconclusive_limit: int = 0
    consecutive_error_limit: int = 4
    dry_run: bool = False
    retention: int | None = None  # measurementRetention's limit; None: HISTORY_LIMIT

    @property
    def effective_count(self) -> int | None:
        """Argo's EffectiveCount: count; else 1 without interval; else unbounded (None)."""
        if self.count is not None:
            return self.count
        return None if self.interval else 1

    @classmethod
    def from_argo(cls, raw: Mapping[str, Any], dry_run: bool = False,
                  retention: int | None = None) -> MetricSpec:
        def seconds(key: str) -> float | None:
            value = raw.get(key)
            if value in (None, "") or "{{" in str(value):  # args not substituted: no value
                return None
            return float(value) if isinstance(value, int | float) else parse_duration(str(value))

        def integer(key: str, default: int | None) -> int | None:
            value = raw.get(key)
            return default if value is None or "{{" in str(value) else int(value)

        return cls(
            name=str(raw["name"]),
            provider=dict(raw.get("provider") or {}),
            interval=seconds("interval"),
            count=integer("count", None),
            initial_delay=seconds("initialDelay") or 0.0,
            success_condition=(raw.get("successCondition") or "").strip() or None,
            failure_condition=(raw.get("failureCondition") or "").strip() or None,
            failure_limit=integer("failureLimit", 0) or 0,
            inconclusive_limit=integer("inconclusiveLimit", 0) or 0,
            consecutive_error_limit=integer("consecutiveErrorLimit", 4) or 0,
            dry_run=dry_run,
            retention=retention,
        )


def classify(spec: MetricSpec, result: Any) -> tuple[AnalysisPhase, str]:
    """Argo's EvaluateResult: failure wins; neither condition true → Inconclusive."""
    try:
        success = spec.success_condition is not None and expr.evaluate(
            spec.success_condition, result
        )
        failure = spec.failure_condition is not None and expr.evaluate(
            spec.failure_condition, result
        )
    except expr.ExprError as exc:
        return AnalysisPhase.ERROR, f"condition: {exc}"
    if spec.success_condition is None and spec.failure_condition is None:
        return AnalysisPhase.SUCCESSFUL, "no conditions: any value passes"
    if spec.failure_condition is None:
        failure = not success
    elif spec.success_condition is None:
        success = not failure
    if failure:
        return AnalysisPhase.FAILED, _why(spec, result, "failed")
    if not success:
        return AnalysisPhase.INCONCLUSIVE, _why(spec, result, "inconclusive")
    return AnalysisPhase.SUCCESSFUL, _why(spec, result, "passed")


def _why(spec: MetricSpec, result: Any, word: str) -> str:
    conds = [f"success: {spec.success_condition}"] if spec.success_condition else []
    if spec.failure_condition:
        conds.append(f"failure: {spec.failure_condition}")
    return f"{word}: result={_short(result)} ({'; '.join(conds)})"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(slots=True)
class Measurement:
    phase: AnalysisPhase
    started_at: float
    finished_at: float
    value: Any = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase.value,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "value": _jsonable(self.value),
            "message": self.message,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Measurement:
        return cls(
            AnalysisPhase(raw["phase"]),
            float(raw["startedAt"]),
            float(raw["finishedAt"]),
            raw.get("value"),
            str(raw.get("message", "")),
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


@dataclass(slots=True)
class MetricResult:
    name: str
    measurements: list[Measurement] = field(default_factory=list)
    count: int = 0
    successful: int = 0
    failed: int = 0
    inconclusive: int = 0
    error: int = 0
    consecutive_error: int = 0
    phase: AnalysisPhase = AnalysisPhase.PENDING
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "phase": self.phase.value,
            "count": self.count,
            "successful": self.successful,
            "failed": self.failed,
            "inconclusive": self.inconclusive,
            "error": self.error,
            "consecutiveError": self.consecutive_error,
            "message": self.message,
            "measurements": [m.to_dict() for m in self.measurements],
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> MetricResult:
        return cls(
            name=str(raw["name"]),
            measurements=[Measurement.from_dict(m) for m in raw.get("measurements", [])],
            count=int(raw.get("count", 0)),
            successful=int(raw.get("successful", 0)),
            failed=int(raw.get("failed", 0)),
            inconclusive=int(raw.get("inconclusive", 0)),
            error=int(raw.get("error", 0)),
            consecutive_error=int(raw.get("consecutiveError", 0)),
            phase=AnalysisPhase(raw.get("phase", "Pending")),
            message=str(raw.get("message", "")),
        )


@dataclass(slots=True)
class AnalysisRun:
    """One run: its metrics, their results so far, and whether it was told to stop."""

    name: str
    metrics: tuple[MetricSpec, ...]
    started_at: float
    args: dict[str, str] = field(default_factory=dict)
    results: dict[str, MetricResult] = field(default_factory=dict)
    phase: AnalysisPhase = AnalysisPhase.RUNNING
    message: str = ""
    terminated: bool = False

    def result(self, metric: str) -> MetricResult:
        if metric not in self.results:
            self.results[metric] = MetricResult(metric)
        return self.results[metric]


def next_due_at(run: AnalysisRun, spec: MetricSpec,
                error_retry: float = ERROR_RETRY_SECONDS) -> float | None:
    """When this metric's next measurement is due; None when it needs no more.

    As Argo's generateMetricTasks: the count is checked first, then an Error is retried
    after `error_retry` (not the metric's interval), anything else after the interval."""
    if run.phase.completed or run.terminated:
        return None
    res = run.results.get(spec.name)
    if res is None or not res.measurements:
        return run.started_at + spec.initial_delay
    if res.phase.completed:
        return None
    last = res.measurements[-1]
    count = spec.effective_count
    if count is not None and res.count >= count:
        return None
    if last.phase is AnalysisPhase.ERROR:
        return last.finished_at + error_retry
    return last.finished_at + (spec.interval or 0.0)


def due(run: AnalysisRun, now: float,
        error_retry: float = ERROR_RETRY_SECONDS) -> list[MetricSpec]:
    """Metrics whose measurement is due at `now`."""
    out = []
    for spec in run.metrics:
        at = next_due_at(run, spec, error_retry)
        if at is not None and at <= now:
            out.append(spec)
    return out


def wake_at(run: AnalysisRun, error_retry: float = ERROR_RETRY_SECONDS) -> float | None:
    times = [t for t in (next_due_at(run, s, error_retry) for s in run.metrics)
             if t is not None]
    return min(times) if times else None


def record(run: AnalysisRun, spec: MetricSpec, measurement: Measurement) -> AnalysisPhase:
    """Add a measurement, update the counters and phases as Argo does; return the run phase."""
    res = run.result(spec.name)
    res.measurements.append(measurement)
    del res.measurements[:-(spec.retention or HISTORY_LIMIT)]  # garbageCollectMeasurements
    if measurement.phase is AnalysisPhase.RUNNING:
        pass  # a not-yet answer (the judge's inconclusive): shown, never counted
    elif measurement.phase is AnalysisPhase.ERROR:
        res.error += 1
        res.consecutive_error += 1
    else:
        res.count += 1
        res.consecutive_error = 0
        if measurement.phase is AnalysisPhase.SUCCESSFUL:
            res.successful += 1
        elif measurement.phase is AnalysisPhase.FAILED:
            res.failed += 1
        elif measurement.phase is AnalysisPhase.INCONCLUSIVE:
            res.inconclusive += 1
    res.phase, res.message = assess_metric(spec, res, run.terminated)
    return assess(run)


def assess_metric(
    spec: MetricSpec, res: MetricResult, terminating: bool = False
) -> tuple[AnalysisPhase, str]:
    """Argo's assessMetricStatus."""
    if not res.measurements:
        return (AnalysisPhase.SUCCESSFUL if terminating else AnalysisPhase.PENDING), ""
    if spec.failure_limit >= 0 and res.failed > spec.failure_limit:
        return AnalysisPhase.FAILED, (
            f"{res.failed} failed measurements exceed failureLimit {spec.failure_limit}"
        )
    if res.inconclusive > spec.inconclusive_limit:
        return AnalysisPhase.INCONCLUSIVE, (
            f"{res.inconclusive} inconclusive measurements exceed inconclusiveLimit "
            f"{spec.inconclusive_limit}"
        )
    if res.consecutive_error > spec.consecutive_error_limit:
        return AnalysisPhase.ERROR, (
            f"{res.consecutive_error} consecutive errors exceed consecutiveErrorLimit "
            f"{spec.consecutive_error_limit}: {res.measurements[-1].message}"
        )
    count = spec.effective_count
    if count is not None and res.count >= count:
        return AnalysisPhase.SUCCESSFUL, f"{res.count} of {count} measurements taken"
    if terminating:
        return AnalysisPhase.SUCCESSFUL, "terminated before its count, no limit exceeded"
    return AnalysisPhase.RUNNING, ""


def assess(run: AnalysisRun) -> AnalysisPhase:
    """The run's phase: the worst metric; any metric completing badly ends the run."""
    worst = AnalysisPhase.PENDING
    all_done = True
    message = ""
    for spec in run.metrics:
        res = run.results.get(spec.name)
        phase = res.phase if res else AnalysisPhase.PENDING
        if res is None or run.terminated:
            phase, msg = assess_metric(spec, res or MetricResult(spec.name), run.terminated)
            if res is not None:
                res.phase, res.message = phase, msg
        if spec.dry_run and phase in (
            AnalysisPhase.FAILED, AnalysisPhase.ERROR, AnalysisPhase.INCONCLUSIVE
        ):
            phase = AnalysisPhase.SUCCESSFUL  # dry-run metrics are measured, never acted on
        if not phase.completed:
            all_done = False
        if worse(phase, worst) is phase and phase is not worst:
            worst = phase
            if res is not None and res.message:
                message = f"metric {spec.name!r}: {res.message}"
    bad = worst in (AnalysisPhase.FAILED, AnalysisPhase.ERROR, AnalysisPhase.INCONCLUSIVE)
    if all_done or bad:
        run.phase, run.message = worst, message or f"all metrics {worst.value}"
    else:
        run.phase = AnalysisPhase.RUNNING
    return run.phase


def terminate(run: AnalysisRun) -> AnalysisPhase:
    """Stop a run (background analysis when the rollout completes): metrics not yet
    failed count as Successful, as Argo does for a terminated run."""
    if run.phase.completed:
        return run.phase
    run.terminated = True
    return assess(run)


def summaries(run: AnalysisRun) -> tuple[dict[str, int], dict[str, int]]:
    """Argo's status.runSummary and status.dryRunSummary (analysis.go assessRunStatus):
    every metric counts, dry-run ones in the second; a completed metric also counts under
    its phase (anything but Failed / Inconclusive / Error as successful)."""
    keys = ("count", "successful", "failed", "inconclusive", "error")
    live, dry = dict.fromkeys(keys, 0), dict.fromkeys(keys, 0)
    for spec in run.metrics:
        into = dry if spec.dry_run else live
        into["count"] += 1
        res = run.results.get(spec.name)
        if res is not None and res.phase.completed:
            into[{AnalysisPhase.FAILED: "failed", AnalysisPhase.INCONCLUSIVE: "inconclusive",
                  AnalysisPhase.ERROR: "error"}.get(res.phase, "successful")] += 1
    return live, dry


def run_to_dict(run: AnalysisRun) -> dict[str, Any]:
    live, dry = summaries(run)
    return {
        "runSummary": live,
        "dryRunSummary": dry,
        "name": run.name,
        "startedAt": run.started_at,
        "args": dict(run.args),
        "phase": run.phase.value,
        "message": run.message,
        "terminated": run.terminated,
        "metricResults": [r.to_dict() for r in run.results.values()],
    }


def run_from_dict(raw: Mapping[str, Any], metrics: tuple[MetricSpec, ...]) -> AnalysisRun:
    run = AnalysisRun(
        name=str(raw["name"]),
        metrics=metrics,
        started_at=float(raw["startedAt"]),
        args=dict(raw.get("args", {})),
        phase=AnalysisPhase(raw.get("phase", "Running")),
        message=str(raw.get("message", "")),
        terminated=bool(raw.get("terminated", False)),
    )
    for r in raw.get("metricResults", []):
        res = MetricResult.from_dict(r)
        run.results[res.name] = res
    return run


# ---- Flagger ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ThresholdRange:
    min: float | None = None
    max: float | None = None


def flagger_check(name: str, value: float | None, rng: ThresholdRange) -> tuple[bool, str]:
    """One Flagger metric check: no value (no traffic) fails, as Flagger's does."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False, f"{name}: no values found"
    if rng.min is not None and value < rng.min:
        return False, f"{name} {value:.4g} < {rng.min:g}"
    if rng.max is not None and value > rng.max:
        return False, f"{name} {value:.4g} > {rng.max:g}"
    return True, f"{name} {value:.4g} within range"
