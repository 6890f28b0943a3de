"""The rollout state machine: step(state, plan, inputs, now) -> (state, effects, reason).

A table maps (style, phase) to a handler; each handler is a small pure function. The
IO shell (controller.py) carries out the effects and feeds back what it observed.

Argo canary (Argo's words): Progressing while steps run, Paused at a pause step, an
inconclusive analysis, a user pause or the manual gate; Healthy when every step is done
and the canary became stable; Degraded with `abort` after an abort (by a user or by a
Failed/Error analysis), all traffic back on stable at once. `retry` restarts the steps;
`promote` leaves the current pause (or skips the current step); `promote-full` skips every
remaining step; a new template mid-rollout starts the steps over for the new revision.

Flagger canaries use the table in flagger.py, Argo blue-green the one in bluegreen.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from tollway.rollout import bluegreen, flagger
from tollway.rollout.model import (
    HISTORY_LIMIT,
    PAUSE_INCONCLUSIVE,
    PAUSE_STEP,
    PAUSE_USER,
    AnalysisRef,
    Effect,
    Inputs,
    Phase,
    Plan,
    RolloutState,
    Step,
)

Result = tuple[RolloutState, list[Effect], str]
Handler = Callable[[RolloutState, Plan, Inputs, float], Result]

BAD_RUN = ("Failed", "Error")


def initial_state(plan: Plan, revision: str) -> RolloutState:
    """A first sight of a rollout: Argo adopts the current template as stable; Flagger
    starts Initializing (creates the primary)."""
    if plan.style == "flagger":
        return RolloutState(style=plan.style, phase=Phase.INITIALIZING, revision=revision)
    return RolloutState(style=plan.style, phase=Phase.HEALTHY, revision=revision,
                        stable_revision=revision)


def step(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    """One decision. Always returns a new state; the reason is "" when nothing happened."""
    state = replace(state, history=list(state.history), header_routes=dict(state.header_routes),
                    mirror_routes=dict(state.mirror_routes))
    tables: dict[str, dict[Phase, Handler]] = {"flagger": flagger.TABLE,
                                                "argo-bluegreen": bluegreen.TABLE}
    table = tables.get(plan.style, ARGO)
    handler = table.get(state.phase, _idle)
    new, effects, reason = handler(state, plan, inputs, now)
    if reason:
        actor = inputs.actor if inputs.command else "controller"
        why = f" ({inputs.why})" if inputs.command and inputs.why else ""
        new.message = reason
        new.history.append({"at": now, "phase": new.phase.value, "step": new.step_index,
                            "weight": new.weight, "reason": reason + why, "actor": actor})
        del new.history[:-HISTORY_LIMIT]
    return new, effects, reason


def _idle(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    return state, [], ""


# ---- Argo canary ---------------------------------------------------------------------------


def _argo_stable(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    """Healthy (or Degraded): a new template starts a rollout; retry restarts an aborted one."""
    if inputs.revision != state.revision:
        if inputs.revision == state.stable_revision:
            state.revision, state.abort, state.phase = inputs.revision, False, Phase.HEALTHY
            state.step_index = len(plan.steps)  # Argo: back on stable = every step done
            return state, [Effect("set-weight", weight=0), Effect("clear-routes")], (
                "template is the stable one again: back to Healthy, no steps to run")
        state.revision = inputs.revision
        return _start(state, plan, now, f"new template {inputs.revision}: starting the steps",
                      inputs.ready)
    if state.phase is Phase.DEGRADED and inputs.command == "retry":
        return _start(state, plan, now, "retry: running the steps again", inputs.ready)
    if state.phase is Phase.DEGRADED and inputs.command in ("promote", "promote-full"):
        return _complete(state, plan, now, "promote --full from Degraded: canary becomes stable")
    return state, [], ""


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


def _argo_progressing(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    if inputs.revision != state.revision:
        if inputs.revision == state.stable_revision:
            state.revision = inputs.revision
            return _abort(state, "template set back to the stable one: traffic back to stable",
                          Phase.HEALTHY, len(plan.steps))
        state.revision = inputs.revision
        return _start(state, plan, now,
                      f"new template {inputs.revision} mid-rollout: steps start over",
                      inputs.ready)
    cmd = inputs.command
    if cmd == "abort":
        return _abort(state, "aborted by " + (inputs.actor or "user"))
    if cmd == "promote-full":
        return _complete(state, plan, now, "promote --full: skipping the remaining steps")
    if cmd == "pause" and not state.paused:
        state.paused, state.pause_reason, state.phase = True, PAUSE_USER, Phase.PAUSED
        return state, [], "paused by " + (inputs.actor or "user")
    if cmd == "set-weight" and inputs.weight is not None:
        return _set_weight(state, inputs)
    bad = _bad_run(state, inputs)
    if bad:
        return _abort(state, bad)
    if state.paused:
        return _argo_paused(state, plan, inputs, now)
    if cmd == "promote":
        return _next(state, plan, now, [], "promote: skipping " + _cur(state, plan).describe(),
                     inputs.ready)
    return _advance(state, plan, now, [], "", inputs.ready)


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


def _argo_paused(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    cmd = inputs.command
    if cmd in ("promote", "resume") or (
        state.pause_until is not None and now >= state.pause_until
    ):
        why = {"promote": "promoted", "resume": "resumed"}.get(cmd or "", "pause ended")
        reason_kind = state.pause_reason
        state.paused, state.pause_reason, state.pause_until = False, "", None
        state.phase = Phase.PROGRESSING
        if reason_kind == PAUSE_USER and cmd == "resume":
            return _advance(state, plan, now, [], why, inputs.ready)
        if reason_kind == PAUSE_INCONCLUSIVE:
            state.step_run = ""
        return _next(state, plan, now, [], why, inputs.ready)
    return state, [], ""


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
                  dry_run=ref.dry_run)


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


def _argo_progress_or_analysis(state: RolloutState, plan: Plan, inputs: Inputs,
                               now: float) -> Result:
    """Progressing: also reads the inline analysis run of an analysis step."""
    if (not state.paused and state.step_run and inputs.revision == state.revision
            and inputs.command is None):
        phase = inputs.analysis.get(state.step_run)
        if phase == "Successful":
            return _next(state, plan, now, [], f"analysis run {state.step_run} Successful",
                         inputs.ready)
        if phase == "Inconclusive":
            state.paused, state.pause_reason = True, PAUSE_INCONCLUSIVE
            state.phase = Phase.PAUSED
            return state, [], (f"analysis run {state.step_run} Inconclusive: paused for a "
                               "human (promote to continue, abort to roll back)")
    if (not state.paused and state.background_run and inputs.command is None
            and inputs.analysis.get(state.background_run) == "Inconclusive"):
        state.paused, state.pause_reason, state.phase = True, PAUSE_INCONCLUSIVE, Phase.PAUSED
        return state, [], f"background analysis {state.background_run} Inconclusive: paused"
    return _argo_progressing(state, plan, inputs, now)


ARGO: dict[Phase, Handler] = {
    Phase.HEALTHY: _argo_stable,
    Phase.DEGRADED: _argo_stable,
    Phase.PROGRESSING: _argo_progress_or_analysis,
    Phase.PAUSED: _argo_progressing,
}


def wants_check(state: RolloutState, plan: Plan, now: float, ready: bool = True) -> bool:
    """Flagger: is a metric check due at this tick? (the controller measures, then steps)

    Not while the canary is not ready, has yet to be routed to, or skips its analysis:
    Flagger checks the canary Deployment before it runs any check. Nor once failedChecks
    has reached the threshold: Flagger rolls back before it runs the tick's analysis
    (scheduler.go advanceCanary), so no metric is queried on the tick that rolls back."""
    return (plan.style == "flagger" and plan.flagger is not None
            and ready and not state.awaiting_ready and not plan.flagger.skip_analysis
            and state.failed_checks < plan.flagger.threshold
            and state.phase in (Phase.PROGRESSING, Phase.WAITING_PROMOTION)
            and now >= state.next_tick)


def wake_at(state: RolloutState, plan: Plan) -> float | None:
    """The next time the machine needs a step without any new input."""
    if plan.style == "flagger":
        if state.phase in (Phase.PROGRESSING, Phase.WAITING_PROMOTION, Phase.PROMOTING,
                           Phase.FINALISING):
            return state.next_tick
        return None
    return state.pause_until if state.paused else None
