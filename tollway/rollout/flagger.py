"""Flagger's canary state table (the rollout machine dispatches here for Canaries).

Initializing (create the -primary copy, wait until it is ready) → Initialized, with the
target Deployment scaled to zero (traffic.py sizes the target from the phase). A new
revision → Progressing: the target is scaled back up and, once it is ready, one tick per
`interval`: the first routes the first weight, each later tick checks the metrics; a
failed check keeps the weight and adds to `failedChecks` (never reset during a run), which
rolls back once it reaches `threshold`; at the last weight a passing tick promotes →
Promoting (primary gets the canary's template) → Finalising (all traffic to primary) →
Succeeded, the target at zero again. Rollback → Failed (target at zero). A canary not
ready for `progressDeadlineSeconds` (600) rolls back; `skipAnalysis` promotes as soon as
the canary is ready, straight to Succeeded. Gates come from confirm-* / rollback webhooks.
"""

from __future__ import annotations

from dataclasses import replace

from tollway.rollout.model import Effect, Event, Inputs, Phase, Plan, RolloutState
from tollway.rollout.transitions import Guard, Precedence, Result, Table, Transition, command


def _fl_initializing(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    """Create the primary from the target; once it is ready, route everything to it and
    scale the target to zero (Flagger does both only after the primary is ready, so the
    service never points at nothing)."""
    effects: list[Effect] = []
    if not state.stable_revision:
        state.revision = state.stable_revision = inputs.revision
        effects.append(Effect("promote-stable", revision=inputs.revision))
        if not inputs.primary_ready:
            return state, effects, "primary created from the target: waiting for it to be ready"
    elif not inputs.primary_ready:
        return state, [], ""
    state.phase = Phase.INITIALIZED
    state.next_tick = now + _interval(plan)
    return state, [*effects, Effect("set-weight", weight=0)], (
        "Initialization done: primary ready, all traffic on primary, target scaled to zero")


def _interval(plan: Plan) -> float:
    return plan.flagger.interval if plan.flagger else 60.0


def _fl_begin(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    state.failed_checks = state.iterations = 0
    state.weight = 0
    state.abort = False
    state.header_routes, state.mirror_routes = {}, {}
    if inputs.gates.get("confirm-rollout") is False:
        state.phase = Phase.WAITING
        return state, [], f"new revision {state.revision}: waiting for confirm-rollout"
    state.phase = Phase.PROGRESSING
    state.next_tick = now  # the first tick routes at once
    state.awaiting_ready, state.unready_since = True, None
    return _fl_start(state, plan, inputs, now, [Effect("scale-canary", revision=state.revision)],
                     f"New revision {state.revision} detected: scaling up the canary")


def _fl_start(state: RolloutState, plan: Plan, inputs: Inputs, now: float,
              effects: list[Effect], reason: str) -> Result:
    """The canary is scaled up: once it is ready, skip the analysis or route to it."""
    fa = plan.flagger
    assert fa is not None
    if not inputs.ready:
        if state.unready_since is None:
            state.unready_since = now
            reason = "; ".join(r for r in (reason, "waiting for the canary to be ready") if r)
        return state, effects, reason
    state.awaiting_ready, state.unready_since = False, None
    if fa.skip_analysis:
        return _fl_skip(state, effects, reason)
    effects.append(Effect("webhook", name="pre-rollout"))
    return _fl_route_first(state, plan, now, effects,
                           "; ".join(r for r in (reason, "starting canary analysis") if r))


def _fl_skip(state: RolloutState, effects: list[Effect], reason: str) -> Result:
    """skipAnalysis: the canary's template goes to the primary at once, all traffic on the
    primary, the canary scaled to zero, Succeeded (no Promoting/Finalising, no hooks)."""
    state.stable_revision = state.revision
    state.weight = 0
    state.header_routes, state.mirror_routes = {}, {}
    state.phase = Phase.SUCCEEDED
    effects += [Effect("promote-stable", revision=state.revision), Effect("set-weight", weight=0),
                Effect("clear-routes"), Effect("scale-down", revision=state.revision)]
    return state, effects, "; ".join(r for r in (
        reason, "Promotion completed! Canary analysis was skipped: primary updated, "
        "canary scaled to zero") if r)


def _fl_route_first(state: RolloutState, plan: Plan, now: float, effects: list[Effect],
                    reason: str) -> Result:
    fa = plan.flagger
    assert fa is not None
    if fa.strategy == "canary":
        state.weight = fa.weights[0]
        effects.append(Effect("set-weight", weight=state.weight))
        reason += f"; canary weight {state.weight}%"
    elif fa.strategy == "ab":
        state.weight = 0
        state.iterations = 1  # runAB: the tick that routes the matching requests is iteration 1
        effects.append(Effect("header-route", name="ab", match=fa.match))
        state.header_routes["ab"] = [dict(m) for m in fa.match]
        reason += "; matching requests routed to the canary"
    else:
        state.weight = 0
        state.iterations = 1  # runBlueGreen's first tick counts iteration 1 (as runAB's)
        if fa.mirror:
            state.mirror_routes["mirror"] = {"match": [], "percentage": fa.mirror_weight}
            effects.append(Effect("mirror-route", name="mirror", percentage=fa.mirror_weight))
        reason += "; canary warmed up (blue/green: tested without user traffic)"
    state.next_tick = now + fa.interval
    return state, effects, reason


def _fl_rollback(state: RolloutState, reason: str) -> Result:
    effects = [Effect("set-weight", weight=0), Effect("clear-routes"),
               Effect("scale-down", revision=state.revision),
               Effect("webhook", name="post-rollout")]
    state.weight = 0
    state.header_routes, state.mirror_routes = {}, {}
    state.phase = Phase.FAILED
    state.abort = True
    state.awaiting_ready, state.unready_since = False, None
    return state, effects, reason


def _fl_advance(state: RolloutState, plan: Plan, inputs: Inputs, now: float,
                detail: str) -> Result:
    fa = plan.flagger
    assert fa is not None
    if fa.strategy == "canary":
        later = [w for w in fa.weights if w > state.weight]
        if later:
            if inputs.gates.get("confirm-traffic-increase") is False:
                return state, [], "waiting for confirm-traffic-increase"
            state.weight = later[0]
            return state, [Effect("set-weight", weight=state.weight)], (
                f"checks passed ({detail}); advance canary weight {state.weight}%")
    elif state.iterations < fa.iterations:
        state.iterations += 1
        return state, [], (f"checks passed ({detail}); advance canary iteration "
                           f"{state.iterations}/{fa.iterations}")
    if inputs.gates.get("confirm-promotion") is False:
        state.phase = Phase.WAITING_PROMOTION
        return state, [], "all checks passed; waiting for confirm-promotion"
    if fa.strategy == "bluegreen" and state.iterations <= fa.iterations:
        return _fl_all_to_canary(state, f"checks passed ({detail})")
    return _fl_promote(state, plan, now, f"checks passed ({detail}); copying canary to primary")


def _fl_all_to_canary(state: RolloutState, reason: str) -> Result:
    """Blue/green after its last iteration: all traffic to the canary (mirroring stops)
    and one more iteration, so the next tick analyses the canary under all the traffic
    before promoting it (scheduler.go runBlueGreen: Iterations == Status.Iterations)."""
    state.phase = Phase.PROGRESSING
    state.iterations += 1
    state.weight = 100
    state.header_routes, state.mirror_routes = {}, {}
    return state, [Effect("clear-routes"), Effect("set-weight", weight=100)], (
        f"{reason}; routing all traffic to canary")


def _fl_promote(state: RolloutState, plan: Plan, now: float, reason: str) -> Result:
    state.phase = Phase.PROMOTING
    state.stable_revision = state.revision  # the primary now runs the canary's template
    state.next_tick = now + _interval(plan)
    return state, [Effect("promote-stable", revision=state.revision)], reason


# ---- guards -----------------------------------------------------------------------------


def _first_sight(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> bool:
    return not state.stable_revision


def _primary_ready(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> bool:
    return inputs.primary_ready


def _primary_unready(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> bool:
    return not inputs.primary_ready


def _back(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> bool:
    return inputs.revision != state.revision and inputs.revision == state.stable_revision


def _new(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> bool:
    return inputs.revision not in (state.revision, state.stable_revision)


def _retry(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> bool:
    return inputs.command == "retry" and inputs.revision != state.stable_revision


def _rollback_gate(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> bool:
    return inputs.gates.get("rollback") is True


def _weight_cmd(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> bool:
    return inputs.command == "set-weight" and inputs.weight is not None


def _deadline(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> bool:
    fa = plan.flagger
    return (not inputs.ready and state.unready_since is not None and fa is not None
            and now - state.unready_since > fa.progress_deadline)


def _unready(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> bool:
    return not inputs.ready


def _canary_ready(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> bool:
    return state.awaiting_ready or (plan.flagger is not None and plan.flagger.skip_analysis)


def _due(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> bool:
    return now >= state.next_tick


def _threshold(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> bool:
    return (now >= state.next_tick and plan.flagger is not None
            and state.failed_checks >= plan.flagger.threshold)


def _no_check(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> bool:
    return now >= state.next_tick and inputs.check is None


def _check(ok: bool) -> Guard:
    def guard(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> bool:
        return now >= state.next_tick and inputs.check is not None and inputs.check[0] is ok
    return guard


def _confirmed(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> bool:
    gate = "confirm-rollout" if state.phase is Phase.WAITING else "confirm-promotion"
    return inputs.gates.get(gate) is not False or inputs.command == "promote"


def _not_due(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> bool:
    return now < state.next_tick


# Flagger's order in advanceCanary: the revision, commands and the rollback webhook, the
# canary's readiness (and progress deadline), then, once per interval, failedChecks >=
# threshold *before* the tick's analysis, then the analysis' result.
PRECEDENCE: Precedence = (
    (Event.FIRST_SIGHT, _first_sight),
    (Event.PRIMARY_READY, _primary_ready),
    (Event.PRIMARY_UNREADY, _primary_unready),
    (Event.BACK_TO_STABLE, _back),
    (Event.NEW_REVISION, _new),
    (Event.RETRY, _retry),
    (Event.ABORT, command("abort")),
    (Event.ROLLBACK_GATE, _rollback_gate),
    (Event.PROMOTE, command("promote", "promote-full")),
    (Event.SET_WEIGHT, _weight_cmd),
    (Event.DEADLINE_EXCEEDED, _deadline),
    (Event.CANARY_UNREADY, _unready),
    (Event.CANARY_READY, _canary_ready),
    (Event.THRESHOLD_REACHED, _threshold),
    (Event.CONFIRMED, _confirmed),
    (Event.TICK_NO_CHECK, _no_check),
    (Event.CHECK_FAILED, _check(False)),
    (Event.CHECK_PASSED, _check(True)),
    (Event.TICK_DUE, _due),
    (Event.TICK, _not_due),
)


# ---- actions --------------------------------------------------------------------------------


def _same_as_primary(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    state.revision = inputs.revision  # the target is the primary's template again: nothing to do
    return state, [], ""


def _new_analysis(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    state.revision = inputs.revision
    return _fl_begin(state, plan, inputs, now)


def _rolled_back(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    who = inputs.actor or "rollback webhook"
    return _fl_rollback(state, f"rolled back by {who}: all traffic on primary")


def _rolled_back_waiting(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    return _fl_rollback(state, "rolled back by " + (inputs.actor or "user"))


def _promoted(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    return _fl_promote(state, plan, now, "promoted by " + (inputs.actor or "user"))


def _weight(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    state.weight = max(0, min(100, int(inputs.weight or 0)))
    return state, [Effect("set-weight", weight=state.weight)], (
        f"canary weight set to {state.weight}% by {inputs.actor or 'user'}")


def _deadline_rollback(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    fa = plan.flagger
    assert fa is not None and state.unready_since is not None
    waited = now - state.unready_since
    return _fl_rollback(state, f"Rolling back: progress deadline exceeded, the canary was "
                               f"not ready for {waited:g}s (progressDeadlineSeconds "
                               f"{fa.progress_deadline:g})")


def _halt(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    """Flagger checks the canary Deployment before every analysis step: not ready, wait
    (and say so once)."""
    if state.unready_since is not None:
        return state, [], ""
    state.unready_since = now
    return state, [], "canary not ready: halting advancement until its replicas are ready"


def _ready(state: RolloutState, now: float, plan: Plan) -> None:
    """The canary is ready (again): forget since when it was not; on a tick, the next one."""
    state.unready_since = None
    if now >= state.next_tick:
        state.next_tick = now + _interval(plan)


def _started(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    state.unready_since = None
    return _fl_start(state, plan, inputs, now, [], "canary ready")


def _threshold_rollback(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    _ready(state, now, plan)
    return _fl_rollback(state, f"Rolling back: failed checks threshold reached "
                               f"{state.failed_checks}")


def _wait_next(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    _ready(state, now, plan)
    return state, [], ""


def _count_failure(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    fa = plan.flagger
    assert fa is not None and inputs.check is not None
    _ready(state, now, plan)
    state.failed_checks += 1
    return state, [], (f"Halt advancement: {inputs.check[1]} (failed checks "
                       f"{state.failed_checks}/{fa.threshold}); weight held at {state.weight}%")


def _passed(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    assert inputs.check is not None
    _ready(state, now, plan)
    return _fl_advance(state, plan, inputs, now, inputs.check[1])


def _rollout_confirmed(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    return _fl_begin(state, plan, replace(inputs, gates={}), now)


def _count_quietly(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> None:
    """WaitingPromotion: the metrics keep running and failures still count."""
    due = now >= state.next_tick
    _ready(state, now, plan)
    if due and inputs.check is not None and not inputs.check[0]:
        state.failed_checks += 1


def _promotion_confirmed(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    fa = plan.flagger
    assert fa is not None
    _count_quietly(state, plan, inputs, now)
    if fa.strategy == "bluegreen" and state.iterations <= fa.iterations:
        return _fl_all_to_canary(state, "confirm-promotion passed")
    return _fl_promote(state, plan, now, "confirm-promotion passed: copying canary to primary")


def _still_waiting(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    _count_quietly(state, plan, inputs, now)
    return state, [], ""


def _primary_rolling(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    """Flagger checks the primary first in every advance (IsPrimaryReady): after the copy,
    traffic moves to it only once its rollout of the canary's template has finished."""
    if state.message.startswith("waiting for the primary"):
        return state, [], ""
    return state, [], "waiting for the primary's rollout of the promoted template to finish"


def _finalise(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    state.next_tick = now + _interval(plan)
    state.phase = Phase.FINALISING
    state.weight = 0
    state.header_routes, state.mirror_routes = {}, {}
    return state, [Effect("set-weight", weight=0), Effect("clear-routes")], (
        "primary updated: routing all traffic to primary")


def _succeed(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    state.phase = Phase.SUCCEEDED
    effects = [Effect("scale-down", revision=state.revision),
               Effect("webhook", name="post-rollout")]
    return state, effects, "Promotion completed: canary scaled to zero"


STARTING = (Phase.WAITING, Phase.PROGRESSING, Phase.SUCCEEDED)
ANALYSING = (Phase.PROGRESSING, Phase.WAITING_PROMOTION, Phase.PROMOTING)
_ROLLBACK = (Phase.FAILED,)
_IDLE = {  # Initialized, Succeeded, Failed
    Event.NEW_REVISION: Transition(STARTING, _new_analysis,
                                   "scale the canary up, then start the analysis"),
}
_HELD = {  # Progressing and WaitingPromotion: the canary must stay ready
    Event.DEADLINE_EXCEEDED: Transition(_ROLLBACK, _deadline_rollback, "roll back"),
    Event.CANARY_UNREADY: Transition((Phase.PROGRESSING, Phase.WAITING_PROMOTION), _halt,
                                     "halt advancement"),
    Event.THRESHOLD_REACHED: Transition(_ROLLBACK, _threshold_rollback,
                                        "roll back (no check this tick)"),
    Event.TICK: Transition((Phase.PROGRESSING, Phase.WAITING_PROMOTION), _wait_next,
                           "wait for the interval"),
}
TABLE: Table = {
    (Phase.INITIALIZING, Event.FIRST_SIGHT): Transition(
        (Phase.INITIALIZING, Phase.INITIALIZED), _fl_initializing,
        "create the primary from the target"),
    (Phase.INITIALIZING, Event.PRIMARY_READY): Transition(
        (Phase.INITIALIZED,), _fl_initializing, "all traffic to primary, target to zero"),
    **{(p, e): t for p in (Phase.INITIALIZED, Phase.SUCCEEDED, Phase.FAILED)
       for e, t in _IDLE.items()},
    (Phase.FAILED, Event.BACK_TO_STABLE): Transition(  # the other two run the primary's
        (Phase.FAILED,), _same_as_primary, "nothing to analyse"),
    (Phase.FAILED, Event.RETRY): Transition(STARTING, _new_analysis, "analyse again"),
    (Phase.WAITING, Event.ABORT): Transition(_ROLLBACK, _rolled_back_waiting, "roll back"),
    (Phase.WAITING, Event.CONFIRMED): Transition(
        (Phase.PROGRESSING, Phase.SUCCEEDED), _rollout_confirmed, "start the analysis"),
    (Phase.PROGRESSING, Event.BACK_TO_STABLE): Transition(STARTING, _new_analysis,
                                                          "restart the analysis"),
    (Phase.PROGRESSING, Event.NEW_REVISION): Transition(STARTING, _new_analysis,
                                                        "restart the analysis"),
    (Phase.PROGRESSING, Event.ABORT): Transition(_ROLLBACK, _rolled_back, "roll back"),
    (Phase.PROGRESSING, Event.ROLLBACK_GATE): Transition(_ROLLBACK, _rolled_back, "roll back"),
    (Phase.PROGRESSING, Event.PROMOTE): Transition((Phase.PROMOTING,), _promoted,
                                                   "copy the canary to the primary"),
    (Phase.PROGRESSING, Event.SET_WEIGHT): Transition((Phase.PROGRESSING,), _weight,
                                                      "set the canary weight"),
    **{(Phase.PROGRESSING, e): t for e, t in _HELD.items()},
    (Phase.PROGRESSING, Event.CANARY_READY): Transition(
        (Phase.PROGRESSING, Phase.SUCCEEDED), _started,
        "pre-rollout hooks, first weight (or skipAnalysis: promote)"),
    (Phase.PROGRESSING, Event.TICK_NO_CHECK): Transition((Phase.PROGRESSING,), _wait_next,
                                                         "next interval"),
    (Phase.PROGRESSING, Event.CHECK_FAILED): Transition(
        (Phase.PROGRESSING,), _count_failure, "failedChecks + 1, weight held"),
    (Phase.PROGRESSING, Event.CHECK_PASSED): Transition(
        ANALYSING, _passed, "next weight / iteration, all traffic (blue/green), or promote"),
    (Phase.WAITING_PROMOTION, Event.ABORT): Transition(_ROLLBACK, _rolled_back_waiting,
                                                       "roll back"),
    **{(Phase.WAITING_PROMOTION, e): t for e, t in _HELD.items()},
    (Phase.WAITING_PROMOTION, Event.CONFIRMED): Transition(
        (Phase.PROGRESSING, Phase.PROMOTING), _promotion_confirmed,
        "promote (blue/green: all traffic to the canary first)"),
    (Phase.WAITING_PROMOTION, Event.TICK_DUE): Transition(
        (Phase.WAITING_PROMOTION,), _still_waiting, "keep checking; failures count"),
    (Phase.PROMOTING, Event.PRIMARY_UNREADY): Transition(
        (Phase.PROMOTING,), _primary_rolling, "wait for the primary's rollout"),
    (Phase.PROMOTING, Event.TICK_DUE): Transition((Phase.FINALISING,), _finalise,
                                                  "all traffic to primary"),
    (Phase.FINALISING, Event.TICK_DUE): Transition((Phase.SUCCEEDED,), _succeed,
                                                   "canary to zero, post-rollout hooks"),
}
