"""Argo blue-green as a table of handlers (the canary machine's sibling).

Progressing: the preview replica set (the new template) comes up and the previewService
points at it; the activeService keeps serving the old one. prePromotionAnalysis runs
against the preview; a failure aborts (Degraded) with the active side untouched. Then
either promotion at once (autoPromotionEnabled, the default), after
autoPromotionSeconds, or a pause until `promote`. Promotion switches the activeService to
the new replica set in one edit; the old one is kept for scaleDownDelaySeconds, and a
failed postPromotionAnalysis switches back to it at once.
"""

from __future__ import annotations

from collections.abc import Callable

from tollway.rollout.model import (
    PAUSE_BLUE_GREEN,
    PAUSE_INCONCLUSIVE,
    AnalysisRef,
    Effect,
    Inputs,
    Phase,
    Plan,
    RolloutState,
)

Result = tuple[RolloutState, list[Effect], str]
BAD = ("Failed", "Error")


def _stop_runs(state: RolloutState) -> list[Effect]:
    effects = [Effect("stop-analysis", name=state.step_run)] if state.step_run else []
    state.step_run = ""
    return effects


def _start(state: RolloutState, ref: AnalysisRef, templates: tuple[str, ...],
           stable: str) -> Effect:
    """Start the pre/post-promotion run; pod template hash args resolved: Latest = the new
    replica set's, Stable = the one that served before (Argo marks the new one stable only
    after postPromotionAnalysis)."""
    ref = ref if ref.templates else AnalysisRef(templates)
    return Effect("start-analysis", name=state.step_run, templates=ref.templates,
                  args=ref.resolved_args(state.revision, stable),
                  dry_run=ref.dry_run)


def stable(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    """Healthy / Degraded: a new template starts a preview; retry restarts an aborted one."""
    if inputs.revision != state.revision or (
        state.phase is Phase.DEGRADED and inputs.command == "retry"
    ):
        if inputs.revision == state.stable_revision:
            state.revision, state.abort, state.phase = inputs.revision, False, Phase.HEALTHY
            return state, [], "template is the active one again: Healthy"
        state.revision = inputs.revision
        return _begin(state, plan, inputs, now)
    return state, [], ""


def _begin(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    bg = plan.bluegreen
    assert bg is not None
    effects = [*_stop_runs(state), Effect("scale-canary", revision=state.revision)]
    state.phase, state.abort, state.step_index = Phase.PROGRESSING, False, 0
    state.paused, state.pause_reason, state.pause_until = False, "", None
    reason = f"new template {state.revision}: preview replica set starting"
    if bg.pre_promotion:
        state.runs_started += 1
        state.step_run = f"{plan.name}-{state.revision}-pre-{state.runs_started}"
        effects.append(_start(state, bg.pre_analysis, bg.pre_promotion,
                              state.stable_revision))
        reason += "; prePromotionAnalysis started"
    new, more, why = progressing(state, plan, inputs, now)
    return new, effects + more, "; ".join(x for x in (reason, why) if x)


def progressing(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    bg = plan.bluegreen
    assert bg is not None
    if inputs.revision != state.revision:
        state.revision = inputs.revision
        return _begin(state, plan, inputs, now)
    if inputs.command == "abort":
        return _abort(state, "aborted by " + (inputs.actor or "user"))
    run_phase = inputs.analysis.get(state.step_run) if state.step_run else None
    if run_phase in BAD:
        which = "prePromotionAnalysis" if state.step_index == 0 else "postPromotionAnalysis"
        return _abort(state, f"{which} {run_phase}")
    if state.paused:
        return _paused(state, plan, inputs, now)
    if state.step_index == 0:
        return _pre(state, plan, inputs, now, run_phase)
    if state.step_index == 2 and (run_phase == "Successful" or not state.step_run):
        return _done(state, "postPromotionAnalysis Successful" if state.step_run
                     else "promoted")
    return state, [], ""


def _pre(state: RolloutState, plan: Plan, inputs: Inputs, now: float,
         run_phase: str | None) -> Result:
    bg = plan.bluegreen
    assert bg is not None
    if inputs.command in ("promote", "promote-full"):
        return _promote(state, plan, now, "promoted by " + (inputs.actor or "user"))
    if not inputs.ready:
        return state, [], ""
    if state.step_run:
        if run_phase == "Inconclusive":
            state.paused, state.pause_reason = True, PAUSE_INCONCLUSIVE
            state.phase = Phase.PAUSED
            return state, [], "prePromotionAnalysis Inconclusive: paused"
        if run_phase != "Successful":
            return state, [], ""
    effects = _stop_runs(state)
    state.step_index = 1
    if not bg.auto_promotion_enabled or bg.auto_promotion_seconds:
        state.paused, state.phase, state.pause_reason = True, Phase.PAUSED, PAUSE_BLUE_GREEN
        state.pause_until = (None if not bg.auto_promotion_enabled
                             else now + float(bg.auto_promotion_seconds or 0))
        when = ("until promoted" if state.pause_until is None
                else f"for {bg.auto_promotion_seconds:g}s")
        return state, effects, f"preview ready; paused {when} before switching active"
    new, more, why = _promote(state, plan, now, "preview ready")
    return new, effects + more, why


def _paused(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    timed_out = state.pause_until is not None and now >= state.pause_until
    if inputs.command in ("promote", "promote-full", "resume") or timed_out:
        state.paused, state.pause_reason, state.pause_until = False, "", None
        state.phase = Phase.PROGRESSING
        return _promote(state, plan, now, "promoted by " + (inputs.actor or "user")
                        if inputs.command else "autoPromotionSeconds elapsed")
    return state, [], ""


def _promote(state: RolloutState, plan: Plan, now: float, reason: str) -> Result:
    bg = plan.bluegreen
    assert bg is not None
    effects = _stop_runs(state)
    state.previous_revision = state.stable_revision
    state.stable_revision = state.revision
    effects += [Effect("promote-stable", revision=state.revision),
                Effect("scale-down", revision=state.previous_revision,
                       delay=bg.scale_down_delay)]
    state.step_index = 2
    state.phase = Phase.PROGRESSING
    reason += ": activeService switched to the new replica set"
    if bg.post_promotion:
        state.runs_started += 1
        state.step_run = f"{plan.name}-{state.revision}-post-{state.runs_started}"
        effects.append(_start(state, bg.post_analysis, bg.post_promotion,
                              state.previous_revision))
        return state, effects, reason + "; postPromotionAnalysis started"
    done, more, why = _done(state, reason)
    return done, effects + more, why


def _done(state: RolloutState, reason: str) -> Result:
    effects = _stop_runs(state)
    state.phase, state.step_index, state.abort = Phase.HEALTHY, 3, False
    return state, effects, reason


def _abort(state: RolloutState, reason: str) -> Result:
    effects = _stop_runs(state)
    if state.step_index >= 2 and state.previous_revision:
        state.stable_revision = state.previous_revision  # switch back while it still runs
        effects.append(Effect("promote-stable", revision=state.stable_revision))
        reason += ": activeService switched back to the previous replica set"
    else:
        reason += ": active replica set untouched"
    effects.append(Effect("scale-down", revision=state.revision, delay=30.0))
    state.phase, state.abort = Phase.DEGRADED, True
    state.paused, state.pause_reason, state.pause_until = False, "", None
    return state, effects, reason


TABLE: dict[Phase, Callable[[RolloutState, Plan, Inputs, float], Result]] = {
    Phase.HEALTHY: stable,
    Phase.DEGRADED: stable,
    Phase.PROGRESSING: progressing,
    Phase.PAUSED: progressing,
}
