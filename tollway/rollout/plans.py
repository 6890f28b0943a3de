"""Argo canary steps, Argo blue-green and Flagger analysis → one Plan.

Only the rollout's own spec is read here (validated upstream by tollway.config); the
shapes are Argo's and Flagger's own field names. A Rollout under `canary` that carries
`autoPromotionEnabled: false` (a blueGreen field in Argo's schema; seed 14) gets a manual
gate before its final step, as its author meant it, and a warning saying so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tollway.control.local.plan import StrategyError, both_zero, fenceposts
from tollway.kit import fieldref
from tollway.kit.durations import parse_duration
from tollway.rollout.model import AnalysisRef, BlueGreen, FlaggerAnalysis, Plan, Step


class PlanError(ValueError):
    """The rollout's spec cannot be turned into a plan; the message names the field."""


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, int | float):
        return float(value)
    try:
        return parse_duration(str(value)) if not str(value).isdigit() else float(value)
    except ValueError as exc:
        raise PlanError(f"{where}: {exc}") from exc


def _templates(raw: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(t.get("templateName") or t.get("clusterTemplateName") or "")
                 for t in raw.get("templates") or ())


def _args(raw: Mapping[str, Any]) -> dict[str, str]:
    return {str(a["name"]): str(a.get("value", "")) for a in raw.get("args") or ()
            if "value" in a}


def _hash_args(raw: Mapping[str, Any], where: str) -> dict[str, str]:
    """Args whose value is a pod template hash (`valueFrom.podTemplateHashValue: Latest |
    Stable`), resolved when the run starts (utils/analysis/factory.go
    BuildArgumentsForRolloutAnalysisRun). A fieldRef is `_ref_args`'; anything else is
    refused by name."""
    out: dict[str, str] = {}
    for i, a in enumerate(raw.get("args") or ()):
        vf = a.get("valueFrom")
        if not vf or "value" in a or "fieldRef" in vf:
            continue
        which = vf.get("podTemplateHashValue")
        if which in ("Latest", "Stable"):
            out[str(a["name"])] = str(which)
            continue
        raise PlanError(f"{where}.args[{i}].valueFrom: Tollway resolves "
                        "podTemplateHashValue (Latest | Stable) and fieldRef; give a literal "
                        f"value instead of {sorted(vf)}")
    return out


def _ref_args(raw: Mapping[str, Any], where: str, rollout: Mapping[str, Any]) -> dict[str, str]:
    """Args given by `valueFrom.fieldRef.fieldPath`, read from the Rollout itself (its
    metadata as the downward API reads it, or any path of its spec: kit/fieldref.py)."""
    out: dict[str, str] = {}
    for i, a in enumerate(raw.get("args") or ()):
        ref = (a.get("valueFrom") or {}).get("fieldRef") if "value" not in a else None
        if ref is None:
            continue
        try:
            out[str(a["name"])] = fieldref.resolve(rollout, str((ref or {}).get("fieldPath")))
        except ValueError as exc:
            raise PlanError(f"{where}.args[{i}].valueFrom.fieldRef: {exc}") from exc
    return out


def _dry_run(raw: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(d.get("metricName", "")) for d in raw.get("dryRun") or ())


def _retention(raw: Mapping[str, Any]) -> tuple[tuple[str, int], ...]:
    return tuple((str(d.get("metricName", "")), int(d.get("limit", 0) or 0))
                 for d in raw.get("measurementRetention") or ())


def _analysis(raw: Mapping[str, Any], where: str, rollout: Mapping[str, Any]) -> AnalysisRef:
    return AnalysisRef(_templates(raw), {**_args(raw), **_ref_args(raw, where, rollout)},
                       _hash_args(raw, where), _dry_run(raw), _retention(raw))


def _step(raw: Mapping[str, Any], where: str, rollout: Mapping[str, Any]) -> Step:
    if "setWeight" in raw:
        return Step("setWeight", weight=int(raw["setWeight"]))
    if "pause" in raw:
        pause = raw["pause"] or {}
        dur = pause.get("duration")
        return Step("pause", duration=None if dur is None else _seconds(dur, where))
    if "analysis" in raw:
        a = _analysis(raw["analysis"] or {}, f"{where}.analysis", rollout)
        return Step("analysis", templates=a.templates, args=a.args, analysis=a)
    # Argo lets setCanaryScale share a step with a header or mirror route (and runs it
    # first): the route's step carries the scale, so neither action is dropped
    scale = dict(raw.get("setCanaryScale") or {})
    if "setHeaderRoute" in raw:
        h = raw["setHeaderRoute"] or {}
        return Step("setHeaderRoute", name=str(h.get("name", "")),
                    match=tuple(h.get("match") or ()), scale=scale)
    if "setMirrorRoute" in raw:
        m = raw["setMirrorRoute"] or {}
        return Step("setMirrorRoute", name=str(m.get("name", "")),
                    match=tuple(m.get("match") or ()), percentage=m.get("percentage"),
                    scale=scale)
    if "setCanaryScale" in raw:
        return Step("setCanaryScale", scale=dict(raw["setCanaryScale"] or {}))
    raise PlanError(f"{where}: unsupported step {sorted(raw)}; Tollway runs setWeight, pause, "
                    "analysis, setHeaderRoute, setMirrorRoute and setCanaryScale")


def argo_plan(name: str, namespace: str, spec: Mapping[str, Any],
              metadata: Mapping[str, Any] | None = None) -> Plan:
    """The Rollout's plan; `metadata` (its labels, annotations, uid) serves fieldRef args."""
    rollout = {"metadata": {"name": name, "namespace": namespace, **(metadata or {})},
               "spec": spec}
    strategy = spec.get("strategy") or {}
    if "blueGreen" in strategy:
        return _bluegreen_plan(name, namespace, strategy["blueGreen"], rollout)
    canary = strategy.get("canary") or {}
    _check_fenceposts(canary)
    steps = [_step(s, f"spec.strategy.canary.steps[{i}]", rollout)
             for i, s in enumerate(canary.get("steps") or ())]
    warnings = []
    if canary.get("autoPromotionEnabled") is False and steps:
        steps.insert(len(steps) - 1, Step("gate"))
        warnings.append("spec.strategy.canary.autoPromotionEnabled is a blueGreen field in "
                        "Argo; Tollway honours it as a manual gate before the final step")
    if not steps:
        steps = [Step("setWeight", weight=100)]  # no steps: a rolling update
    bg = canary.get("analysis") or {}
    return Plan(
        style="argo-canary", name=name, namespace=namespace, steps=tuple(steps),
        background=_templates(bg), background_args=_args(bg),
        background_analysis=_analysis(bg, "spec.strategy.canary.analysis", rollout),
        background_starting_step=int(bg.get("startingStep", 0) or 0),
        warnings=tuple(warnings),
    )


def _check_fenceposts(canary: Mapping[str, Any]) -> None:
    """maxSurge/maxUnavailable must be counts or percentages, and not both zero (Argo
    refuses that spec: the canary could neither add a replica nor remove one)."""
    where = "spec.strategy.canary"
    surge, unavailable = canary.get("maxSurge"), canary.get("maxUnavailable")
    if both_zero(surge, unavailable):
        raise PlanError(f"{where}.maxSurge and maxUnavailable are both 0, so no replica could "
                        "be added or removed; set maxSurge: 1 (or maxUnavailable: 1)")
    try:
        fenceposts(surge, unavailable, 100)
    except StrategyError as exc:
        raise PlanError(f"{where}.maxSurge/maxUnavailable: {exc}") from exc


def _bluegreen_plan(name: str, namespace: str, bg: Mapping[str, Any],
                    rollout: Mapping[str, Any]) -> Plan:
    where = "spec.strategy.blueGreen"
    if not bg.get("activeService"):
        raise PlanError(f"{where}.activeService is required")
    seconds = bg.get("autoPromotionSeconds")
    return Plan(
        style="argo-bluegreen", name=name, namespace=namespace,
        bluegreen=BlueGreen(
            active_service=str(bg["activeService"]),
            preview_service=bg.get("previewService"),
            auto_promotion_enabled=bool(bg.get("autoPromotionEnabled", True)),
            auto_promotion_seconds=None if seconds is None else float(seconds),
            scale_down_delay=float(bg.get("scaleDownDelaySeconds", 30)),
            pre_promotion=_templates(bg.get("prePromotionAnalysis") or {}),
            post_promotion=_templates(bg.get("postPromotionAnalysis") or {}),
            pre_analysis=_analysis(bg.get("prePromotionAnalysis") or {},
                                   f"{where}.prePromotionAnalysis", rollout),
            post_analysis=_analysis(bg.get("postPromotionAnalysis") or {},
                                    f"{where}.postPromotionAnalysis", rollout),
            preview_replicas=bg.get("previewReplicaCount"),
        ),
    )


def flagger_weights(analysis: Mapping[str, Any]) -> tuple[int, ...]:
    """stepWeights as given, or stepWeight increments up to maxWeight (default 100)."""
    if analysis.get("stepWeights"):
        return tuple(int(w) for w in analysis["stepWeights"])
    step = analysis.get("stepWeight")
    if not step:
        return ()
    top = int(analysis.get("maxWeight", 100))
    return tuple(range(int(step), top + 1, int(step))) or (top,)


def _percent(value: Any) -> int:
    """Flagger's ready thresholds: a percentage of the replicas, 100 when unset."""
    return 100 if value is None else int(value)


def flagger_plan(name: str, namespace: str, spec: Mapping[str, Any]) -> Plan:
    a = spec.get("analysis") or {}
    interval = max(_seconds(a.get("interval", "60s"), "spec.analysis.interval"), 0.0)
    weights = flagger_weights(a)
    iterations = int(a.get("iterations", 0) or 0)
    if not weights and not iterations:
        raise PlanError("spec.analysis needs stepWeight/stepWeights (canary) or iterations "
                        "(A/B, blue/green)")
    return Plan(
        style="flagger", name=name, namespace=namespace,
        flagger=FlaggerAnalysis(
            interval=interval,
            threshold=int(a.get("threshold", 1) or 1),
            weights=weights,
            iterations=iterations,
            match=tuple(a.get("match") or ()),
            mirror=bool(a.get("mirror", False)),
            mirror_weight=int(a.get("mirrorWeight", 100) or 100),
            metrics=tuple(a.get("metrics") or ()),
            webhooks=tuple(a.get("webhooks") or ()),
            skip_analysis=bool(spec.get("skipAnalysis", False)),
            progress_deadline=float(600 if spec.get("progressDeadlineSeconds") is None
                                    else spec["progressDeadlineSeconds"]),
            canary_ready_threshold=_percent(a.get("canaryReadyThreshold")),
            primary_ready_threshold=_percent(a.get("primaryReadyThreshold")),
        ),
    )
