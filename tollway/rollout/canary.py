"""Argo canary (Argo's words): the transition table of a Rollout with `strategy.canary`.

Progressing while steps run, Paused at a pause step, an inconclusive analysis, a user
pause or the manual gate; Healthy when every step is done and the canary became stable;
Degraded with `abort` after an abort (by a user or by a Failed/Error analysis), all
traffic back on stable at once. `retry` restarts the steps; `promote` leaves the current
pause (or skips the current step); `promote --full` skips every remaining step; a new
template mid-rollout starts the steps over for the new revision.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from tollway.rollout.model import (
    PAUSE_INCONCLUSIVE,
    PAUSE_STEP,
    PAUSE_USER,
    AnalysisRef,
    Effect,
    Event,
    Inputs,
    Phase,
    Plan,
    RolloutState,
    Step,
)
from tollway.rollout.transitions import Precedence, Result, Table, Transition, always, command

BAD_RUN = ("Failed", "Error")


# ---- guards: what happened (classified before any transition is chosen) -----------------


def _new(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> bool:
    return inputs.revision != state.revision


def _back(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> bool:
    return inputs.revision != state.revision and inputs.revision == state.stable_revision


def _pause_cmd(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> bool:
    return inputs.command == "pause" and not state.paused


def _weight_cmd(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> bool:
    return inputs.command == "set-weight" and inputs.weight is not None


def _quiet(state: RolloutState, inputs: Inputs) -> bool:
    """No command, same template, not paused: a run's result may move the rollout."""
    return not state.paused and inputs.command is None and inputs.revision == state.revision


def _step_run(phase: str) -> Callable[[RolloutState, Plan, Inputs, float], bool]:
    def guard(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> bool:
        return (_quiet(state, inputs) and bool(state.step_run)
                and inputs.analysis.get(state.step_run) == phase)
    return guard


def _background_inconclusive(state: RolloutState, plan: Plan, inputs: Inputs,
                             now: float) -> bool:
    return (_quiet(state, inputs) and bool(state.background_run)
            and inputs.analysis.get(state.background_run) == "Inconclusive")


def _run_failed(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> bool:
    return bool(_bad_run(state, inputs))


def _pause_ended(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> bool:
    return state.pause_until is not None and now >= state.pause_until


PRECEDENCE: Precedence = (
    (Event.BACK_TO_STABLE, _back),
    (Event.NEW_REVISION, _new),
    (Event.RETRY, command("retry")),
    (Event.ABORT, command("abort")),
    (Event.PROMOTE_FULL, command("promote-full")),
    (Event.PAUSE, _pause_cmd),
    (Event.SET_WEIGHT, _weight_cmd),
    (Event.STEP_RUN_SUCCESSFUL, _step_run("Successful")),
    (Event.STEP_RUN_INCONCLUSIVE, _step_run("Inconclusive")),
    (Event.BACKGROUND_INCONCLUSIVE, _background_inconclusive),
    (Event.RUN_FAILED, _run_failed),
    (Event.PROMOTE, command("promote")),
    (Event.RESUME, command("resume")),
    (Event.PAUSE_ENDED, _pause_ended),
    (Event.TICK, always),
)


# ---- actions --------------------------------------------------------------------------------


def _stable_again(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    state.revision, state.abort, state.phase = inputs.revision, False, Phase.HEALTHY
    state.step_index = len(plan.steps)  # Argo: back on stable = every step done
    return state, [Effect("set-weight", weight=0), Effect("clear-routes")], (
        "template is the stable one again: back to Healthy, no steps to run")


def _begin(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    state.revision = inputs.revision
    return _start(state, plan, now, f"new template {inputs.revision}: starting the steps",
                  inputs.ready)


def _retry(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    return _start(state, plan, now, "retry: running the steps again", inputs.ready)


def _promote_degraded(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    return _complete(state, plan, now, "promote --full from Degraded: canary becomes stable")


def _abandon(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    state.revision = inputs.revision
    return _abort(state, "template set back to the stable one: traffic back to stable",
                  Phase.HEALTHY, len(plan.steps))


def _restart(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    state.revision = inputs.revision
    return _start(state, plan, now, f"new template {inputs.revision} mid-rollout: steps start over",
                  inputs.ready)


def _aborted(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    return _abort(state, "aborted by " + (inputs.actor or "user"))


def _promote_full(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    return _complete(state, plan, now, "promote --full: skipping the remaining steps")


def _user_pause(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    state.paused, state.pause_reason, state.phase = True, PAUSE_USER, Phase.PAUSED
    return state, [], "paused by " + (inputs.actor or "user")


def _weight(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    return _set_weight(state, inputs)


def _run_passed(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    return _next(state, plan, now, [], f"analysis run {state.step_run} Successful", inputs.ready)


def _run_inconclusive(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    state.paused, state.pause_reason = True, PAUSE_INCONCLUSIVE
    state.phase = Phase.PAUSED
    return state, [], (f"analysis run {state.step_run} Inconclusive: paused for a "
                       "human (promote to continue, abort to roll back)")


def _background_paused(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    state.paused, state.pause_reason, state.phase = True, PAUSE_INCONCLUSIVE, Phase.PAUSED
    return state, [], f"background analysis {state.background_run} Inconclusive: paused"


def _run_bad(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    return _abort(state, _bad_run(state, inputs))


def _unpause(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    """Leave a pause: a user's pause resumes the current step; any other pause (a pause
    step, an inconclusive run, the gate), or `promote`, goes on to the next step."""
    cmd = inputs.command
    why = {"promote": "promoted", "resume": "resumed"}.get(cmd or "", "pause ended")
    reason_kind = state.pause_reason
    state.paused, state.pause_reason, state.pause_until = False, "", None
    state.phase = Phase.PROGRESSING
    if reason_kind == PAUSE_USER and cmd == "resume":
        return _advance(state, plan, now, [], why, inputs.ready)
    if reason_kind == PAUSE_INCONCLUSIVE:
        state.step_run = ""
    return _next(state, plan, now, [], why, inputs.ready)


def _skip(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    return _next(state, plan, now, [], "promote: skipping " + _cur(state, plan).describe(),
                 inputs.ready)


def _go_on(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    return _advance(state, plan, now, [], "", inputs.ready)


STEPPING = (Phase.PROGRESSING, Phase.PAUSED, Phase.HEALTHY)
_IDLE = {  # Healthy and Degraded (Healthy's template is always the stable one)
    Event.NEW_REVISION: Transition(STEPPING, _begin, "start the steps for the new revision"),
}
_ROLLING = {
    Event.BACK_TO_STABLE: Transition((Phase.HEALTHY,), _abandon,
                                     "all traffic to stable, Healthy (no abort)"),
    Event.NEW_REVISION: Transition(STEPPING, _restart, "steps start over for the new revision"),
    Event.ABORT: Transition((Phase.DEGRADED,), _aborted, "abort: all traffic to stable"),
    Event.PROMOTE_FULL: Transition((Phase.HEALTHY,), _promote_full,
                                   "skip every remaining step: canary becomes stable"),
    Event.SET_WEIGHT: Transition((Phase.PAUSED,), _weight, "set the weight and hold there"),
    Event.RUN_FAILED: Transition((Phase.DEGRADED,), _run_bad, "abort: all traffic to stable"),
}
TABLE: Table = {
    **{(Phase.HEALTHY, e): t for e, t in _IDLE.items()},
    **{(Phase.DEGRADED, e): t for e, t in _IDLE.items()},
    (Phase.DEGRADED, Event.BACK_TO_STABLE): Transition((Phase.HEALTHY,), _stable_again,
                                                       "back to Healthy, no steps"),
    (Phase.DEGRADED, Event.RETRY): Transition(STEPPING, _retry, "run the steps again"),
    (Phase.DEGRADED, Event.PROMOTE_FULL): Transition(
        (Phase.HEALTHY,), _promote_degraded, "canary becomes stable"),
    (Phase.DEGRADED, Event.PROMOTE): Transition(
        (Phase.HEALTHY,), _promote_degraded, "canary becomes stable"),
    **{(Phase.PROGRESSING, e): t for e, t in _ROLLING.items()},
    **{(Phase.PAUSED, e): t for e, t in _ROLLING.items()},
    (Phase.PROGRESSING, Event.PAUSE): Transition((Phase.PAUSED,), _user_pause,
                                                 "a user's pause (no pause condition)"),
    (Phase.PROGRESSING, Event.STEP_RUN_SUCCESSFUL): Transition(STEPPING, _run_passed,
                                                               "next step"),
    (Phase.PROGRESSING, Event.STEP_RUN_INCONCLUSIVE): Transition(
        (Phase.PAUSED,), _run_inconclusive, "pause: InconclusiveAnalysisRun"),
    (Phase.PROGRESSING, Event.BACKGROUND_INCONCLUSIVE): Transition(
        (Phase.PAUSED,), _background_paused, "pause: InconclusiveAnalysisRun"),
    (Phase.PROGRESSING, Event.PROMOTE): Transition(STEPPING, _skip, "skip the current step"),
    (Phase.PROGRESSING, Event.TICK): Transition(
        STEPPING, _go_on, "run the steps that can run (weights wait for canary replicas)"),
    (Phase.PAUSED, Event.PROMOTE): Transition(STEPPING, _unpause, "leave the pause, next step"),
    (Phase.PAUSED, Event.RESUME): Transition(
        STEPPING, _unpause, "leave the pause (a user's: same step; else next step)"),
    (Phase.PAUSED, Event.PAUSE_ENDED): Transition(STEPPING, _unpause, "next step"),
}


# ---- the steps ------------------------------------------------------------------------------


def _start(state: RolloutState, plan: Plan, now: float, reason: str,
           ready: bool = True) -> Result:
    state.abort = False
    state.step_index, state.weight, state.scale_weight = 0, 0, 0
    state.paused, state.pause_reason, state.pause_until = False, "", None
    state.header_routes, state.mirror_routes, state.canary_scale = {}, {}, {}
    effects = [Effect("stop-analysis", name=state.step_run)] if state.step_run else []
    if state.background_run:
        effects.append(Effect("stop-analysis", name=state.background_run))
    state.step_run = state.background_run = ""
    effects += [Effect("scale-canary", revision=state.revision), Effect("set-weight", weight=0)]
    state.phase = Phase.PROGRESSING
    state.step_started_at = now
    return _advance(state, plan, now, effects, reason, ready)


def _set_weight(state: RolloutState, inputs: Inputs) -> Result:
    """A manual weight (a Tollway extension, for GitOps users): set it and hold there."""
    state.weight = max(0, min(100, int(inputs.weight or 0)))
    state.scale_weight = max(state.scale_weight, state.weight)
    state.paused, state.pause_reason, state.phase = True, PAUSE_USER, Phase.PAUSED
    state.pause_until = None
    return state, [Effect("set-weight", weight=state.weight)], (
        f"canary weight set to {state.weight}% by {inputs.actor or 'user'}; holding there")


def _bad_run(state: RolloutState, inputs: Inputs) -> str:
    for run in (state.step_run, state.background_run):
        phase = inputs.analysis.get(run) if run else None
        if phase in BAD_RUN:
            return f"analysis run {run} {phase}: aborting, all traffic back to stable"
    return ""


def _cur(state: RolloutState, plan: Plan) -> Step:
    return plan.steps[min(state.step_index, len(plan.steps) - 1)]


def _next(state: RolloutState, plan: Plan, now: float, effects: list[Effect],
          reason: str, ready: bool = True) -> Result:
    if state.step_run:
        effects.append(Effect("stop-analysis", name=state.step_run))
        state.step_run = ""
    state.step_index += 1
    state.step_started_at = now
    return _advance(state, plan, now, effects, reason, ready)


def _advance(state: RolloutState, plan: Plan, now: float, effects: list[Effect],
             reason: str, ready: bool = True) -> Result:
    """Run instantaneous steps until one blocks or the steps are done."""
    notes = [reason] if reason else []
    while True:
        if not state.background_run and plan.background and (
            state.step_index >= plan.background_starting_step
        ):
            state.runs_started += 1
            state.background_run = f"{plan.name}-{state.revision}-bg{state.runs_started}"
            effects.append(start_analysis(state.background_run, plan.background_analysis,
                                          state))
            notes.append("background analysis started")
        if state.step_index >= len(plan.steps):
            done, more, why = _complete(state, plan, now, "all steps done")
            return done, effects + more, "; ".join([*notes, why])
        s = plan.steps[state.step_index]
        blocked, note = _do_step(state, plan.name, s, now, effects, ready)
        if note:
            notes.append(note)
        if blocked:
            return state, effects, "; ".join(notes)
        state.step_index += 1
        state.step_started_at = now


def _do_step(
    state: RolloutState, name: str, s: Step, now: float, effects: list[Effect],
    ready: bool = True,
) -> tuple[bool, str]:
    """Carry out one step; True when it blocks (pause, running analysis, gate, replicas)."""
    i = state.step_index
    if s.kind == "setWeight":
        wanted = int(s.weight or 0)
        if wanted > state.weight and not ready:
            first = state.scale_weight < wanted
            state.scale_weight = max(state.scale_weight, wanted)
            # Argo scales the canary first and moves traffic once its replicas are up
            return True, (f"step {i}: scaling the canary for {wanted}% before moving traffic"
                          if first else "")
        state.scale_weight = max(state.scale_weight, wanted)
        state.weight = wanted
        effects.append(Effect("set-weight", weight=state.weight))
        return False, f"step {i}: canary weight {state.weight}%"
    if s.kind == "pause":
        state.paused, state.phase = True, Phase.PAUSED
        state.pause_reason = PAUSE_STEP
        state.pause_until = None if s.duration is None else now + s.duration
        what = "until promoted" if s.duration is None else f"for {s.duration:g}s"
        return True, f"step {i}: paused {what}"
    if s.kind == "gate":
        # Tollway's manual gate is a `pause: {}` before the final step: Argo's reason for it
        state.paused, state.phase, state.pause_reason = True, Phase.PAUSED, PAUSE_STEP
        state.pause_until = None
        return True, f"step {i}: waiting for manual promotion before the final step"
    if s.kind == "analysis":
        if not state.step_run:
            state.runs_started += 1
            state.step_run = f"{name}-{state.revision}-{i}-{state.runs_started}"
            effects.append(start_analysis(state.step_run, s.analysis or AnalysisRef(
                s.templates, s.args), state))
            return True, f"step {i}: analysis {', '.join(s.templates)} started"
        return True, ""
    if s.kind in ("setHeaderRoute", "setMirrorRoute") and s.scale:
        # setCanaryScale in the same step: Argo scales first, then sets the route
        _, scaled = _do_step(state, name, dataclasses.replace(s, kind="setCanaryScale"), now,
                             effects, ready)
        _, routed = _do_step(state, name, dataclasses.replace(s, scale={}), now, effects, ready)
        return False, f"{scaled}; {routed.removeprefix(f'step {i}: ')}"
    if s.kind == "setHeaderRoute":
        if s.match:
            state.header_routes[s.name] = [dict(m) for m in s.match]
        else:
            state.header_routes.pop(s.name, None)
        effects.append(Effect("header-route", name=s.name, match=s.match))
        return False, f"step {i}: header route {s.name}"
    if s.kind == "setMirrorRoute":
        if s.match or s.percentage:
            state.mirror_routes[s.name] = {"match": [dict(m) for m in s.match],
                                           "percentage": s.percentage}
        else:
            state.mirror_routes.pop(s.name, None)
        effects.append(Effect("mirror-route", name=s.name, match=s.match,
                              percentage=s.percentage))
        return False, f"step {i}: mirror route {s.name}"
    if s.kind == "setCanaryScale":
        state.canary_scale = dict(s.scale)
        effects.append(Effect("scale-canary", revision=state.revision, args={
            k: str(v) for k, v in s.scale.items()}))
        return False, f"step {i}: canary scale {dict(s.scale)}"
    return False, f"step {i}: {s.kind} ignored"


def _complete(state: RolloutState, plan: Plan, now: float, reason: str) -> Result:
    effects = [Effect("promote-stable", revision=state.revision), Effect("set-weight", weight=0),
               Effect("clear-routes")]
    for run in (state.step_run, state.background_run):
        if run:
            effects.append(Effect("stop-analysis", name=run))
    if state.stable_revision and state.stable_revision != state.revision:
        effects.append(Effect("scale-down", revision=state.stable_revision, delay=30.0))
    state.stable_revision = state.revision
    state.step_index = len(plan.steps)
    state.weight = state.scale_weight = 0
    state.paused, state.pause_reason, state.pause_until, state.abort = False, "", None, False
    state.step_run = state.background_run = ""
    state.header_routes, state.mirror_routes = {}, {}
    state.phase = Phase.HEALTHY
    return state, effects, reason + ": canary promoted to stable"


def start_analysis(name: str, ref: AnalysisRef, state: RolloutState) -> Effect:
    """Start a run: args resolved (pod template hashes: Latest = the canary's, Stable =
    the stable's), and the Rollout's dryRun rules carried to the run."""
    return Effect("start-analysis", name=name, templates=ref.templates,
                  args=ref.resolved_args(state.revision, state.stable_revision),
                  dry_run=ref.dry_run, retention=ref.retention)


def _abort(state: RolloutState, reason: str, phase: Phase = Phase.DEGRADED,
           step_index: int = 0) -> Result:
    """All traffic to stable at once. Argo (rollout/canary.go syncRolloutStatusCanary) puts
    currentStepIndex back to 0 on an abort, and at the step count when the template is the
    stable one again (the `step_index` given then)."""
    effects = [Effect("set-weight", weight=0), Effect("clear-routes")]
    for run in (state.step_run, state.background_run):
        if run:
            effects.append(Effect("stop-analysis", name=run))
    if state.revision != state.stable_revision:
        effects.append(Effect("scale-down", revision=state.revision, delay=30.0))
    state.weight = state.scale_weight = 0
    state.abort = phase is Phase.DEGRADED
    state.step_index = step_index
    state.paused, state.pause_reason, state.pause_until = False, "", None
    state.step_run = state.background_run = ""
    state.header_routes, state.mirror_routes = {}, {}
    state.phase = phase
    return state, effects, reason


