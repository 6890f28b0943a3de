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

from tollway.rollout.model import (
    PAUSE_BLUE_GREEN,
    PAUSE_INCONCLUSIVE,
    AnalysisRef,
    Effect,
    Event,
    Inputs,
    Phase,
    Plan,
    RolloutState,
)
from tollway.rollout.transitions import Precedence, Result, Table, Transition, classify, command

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
                  dry_run=ref.dry_run, retention=ref.retention)


# ---- guards -----------------------------------------------------------------------------


def _new(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> bool:
    return inputs.revision != state.revision


def _back(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> bool:
    return inputs.revision != state.revision and inputs.revision == state.stable_revision


def _run(state: RolloutState, inputs: Inputs) -> str | None:
    return inputs.analysis.get(state.step_run) if state.step_run else None


def _run_failed(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> bool:
    return _run(state, inputs) in BAD


def _promote_cmd(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> bool:
    """promote (or --full) while paused, or before the switch (skips the wait)."""
    return (inputs.command in ("promote", "promote-full")
            and (state.paused or state.step_index == 0))


def _resume_cmd(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> bool:
    return inputs.command == "resume" and state.paused


def _pause_ended(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> bool:
    return state.paused and state.pause_until is not None and now >= state.pause_until


def _pre_inconclusive(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> bool:
    return (not state.paused and state.step_index == 0 and inputs.ready
            and _run(state, inputs) == "Inconclusive")


def _preview_ready(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> bool:
    return (not state.paused and state.step_index == 0 and inputs.ready
            and (not state.step_run or _run(state, inputs) == "Successful"))


def _post_done(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> bool:
    return (not state.paused and state.step_index == 2
            and (not state.step_run or _run(state, inputs) == "Successful"))


PRECEDENCE: Precedence = (
    (Event.BACK_TO_STABLE, _back),
    (Event.NEW_REVISION, _new),
    (Event.RETRY, command("retry")),
    (Event.ABORT, command("abort")),
    (Event.RUN_FAILED, _run_failed),
    (Event.PROMOTE, _promote_cmd),
    (Event.RESUME, _resume_cmd),
    (Event.PAUSE_ENDED, _pause_ended),
    (Event.RUN_INCONCLUSIVE, _pre_inconclusive),
    (Event.PREVIEW_READY, _preview_ready),
    (Event.POST_DONE, _post_done),
)


# ---- actions -------------------------------------------------------------------------------


def _active_again(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    state.revision, state.abort, state.phase = inputs.revision, False, Phase.HEALTHY
    return state, [], "template is the active one again: Healthy"


def _new_revision(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    state.revision = inputs.revision
    return _begin(state, plan, inputs, now)


def _retry(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    if inputs.revision == state.stable_revision:
        return _active_again(state, plan, inputs, now)
    return _new_revision(state, plan, inputs, now)


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
    event = classify(PRECEDENCE, TABLE, state, plan, inputs, now)  # same step: preview
    if event is not None:                                            # ready, promote, abort
        new, more, why = TABLE[(state.phase, event)].action(state, plan, inputs, now)
    else:
        new, more, why = state, [], ""
    return new, effects + more, "; ".join(x for x in (reason, why) if x)


def _aborted(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    return _abort(state, "aborted by " + (inputs.actor or "user"))


def _run_bad(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    which = "prePromotionAnalysis" if state.step_index == 0 else "postPromotionAnalysis"
    return _abort(state, f"{which} {_run(state, inputs)}")


def _promoted(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    state.paused, state.pause_reason, state.pause_until = False, "", None
    state.phase = Phase.PROGRESSING
    return _promote(state, plan, now, "promoted by " + (inputs.actor or "user")
                    if inputs.command else "autoPromotionSeconds elapsed")


def _inconclusive(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    state.paused, state.pause_reason = True, PAUSE_INCONCLUSIVE
    state.phase = Phase.PAUSED
    return state, [], "prePromotionAnalysis Inconclusive: paused"


def _post(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    return _done(state, "postPromotionAnalysis Successful" if state.step_run else "promoted")


def _pre(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    """The preview is ready (and its prePromotionAnalysis passed): pause before the switch
    (autoPromotionEnabled: false, or autoPromotionSeconds), or switch at once."""
    bg = plan.bluegreen
    assert bg is not None
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


ROLLING = (Phase.PROGRESSING, Phase.PAUSED, Phase.HEALTHY)
BEGIN = (*ROLLING, Phase.DEGRADED)  # _begin acts on the same step's inputs (abort too)
_IDLE = {  # Healthy and Degraded (Healthy's template is always the active one)
    Event.NEW_REVISION: Transition(BEGIN, _new_revision,
                                   "preview replica set, prePromotionAnalysis"),
}
_SWITCHING = {
    Event.NEW_REVISION: Transition(BEGIN, _new_revision, "a new preview: start over"),
    Event.ABORT: Transition((Phase.DEGRADED,), _aborted,
                            "abort (after the switch: switch back)"),
    Event.RUN_FAILED: Transition((Phase.DEGRADED,), _run_bad,
                                 "abort (after the switch: switch back)"),
    Event.PROMOTE: Transition(ROLLING, _promoted, "switch activeService now"),
}
TABLE: Table = {
    **{(Phase.HEALTHY, e): t for e, t in _IDLE.items()},
    **{(Phase.DEGRADED, e): t for e, t in _IDLE.items()},
    (Phase.DEGRADED, Event.BACK_TO_STABLE): Transition((Phase.HEALTHY,), _active_again,
                                                       "Healthy"),
    (Phase.DEGRADED, Event.RETRY): Transition(BEGIN, _retry, "start the preview again"),
    **{(Phase.PROGRESSING, e): t for e, t in _SWITCHING.items()},
    **{(Phase.PAUSED, e): t for e, t in _SWITCHING.items()},
    (Phase.PAUSED, Event.RESUME): Transition(ROLLING, _promoted, "switch activeService"),
    (Phase.PAUSED, Event.PAUSE_ENDED): Transition(ROLLING, _promoted,
                                                  "autoPromotionSeconds elapsed: switch"),
    (Phase.PROGRESSING, Event.RUN_INCONCLUSIVE): Transition(
        (Phase.PAUSED,), _inconclusive, "pause: InconclusiveAnalysisRun"),
    (Phase.PROGRESSING, Event.PREVIEW_READY): Transition(
        ROLLING, _pre, "pause (BlueGreenPause) or switch activeService"),
    (Phase.PROGRESSING, Event.POST_DONE): Transition((Phase.HEALTHY,), _post, "Healthy"),
}
