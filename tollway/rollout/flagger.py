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

from collections.abc import Callable
from dataclasses import replace

from tollway.rollout.model import Effect, Inputs, Phase, Plan, RolloutState

Result = tuple[RolloutState, list[Effect], str]
Handler = Callable[[RolloutState, Plan, Inputs, float], Result]


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


def _fl_idle(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    """Initialized / Succeeded / Failed: a new revision starts an analysis."""
    if inputs.revision == state.stable_revision:
        if inputs.revision != state.revision:
            state.revision = inputs.revision
        return state, [], ""
    if (inputs.revision == state.revision and state.phase is Phase.FAILED
            and inputs.command != "retry"):
        return state, [], ""
    state.revision = inputs.revision
    return _fl_begin(state, plan, inputs, now)


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


def _fl_unready(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result | None:
    """Flagger checks the canary Deployment before every analysis step: not ready → wait;
    not ready for longer than progressDeadlineSeconds → roll back. None when ready."""
    fa = plan.flagger
    assert fa is not None
    if inputs.ready:
        state.unready_since = None
        return None
    if state.unready_since is None:
        state.unready_since = now
        return state, [], "canary not ready: halting advancement until its replicas are ready"
    waited = now - state.unready_since
    if waited > fa.progress_deadline:
        return _fl_rollback(state, f"Rolling back: progress deadline exceeded, the canary was "
                                   f"not ready for {waited:g}s (progressDeadlineSeconds "
                                   f"{fa.progress_deadline:g})")
    return state, [], ""


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


def _fl_progressing(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    fa = plan.flagger
    assert fa is not None
    if inputs.revision != state.revision:
        state.revision = inputs.revision
        return _fl_begin(state, plan, inputs, now)
    if inputs.command == "abort" or inputs.gates.get("rollback") is True:
        who = inputs.actor or "rollback webhook"
        return _fl_rollback(state, f"rolled back by {who}: all traffic on primary")
    if inputs.command in ("promote", "promote-full"):
        return _fl_promote(state, plan, now, "promoted by " + (inputs.actor or "user"))
    if inputs.command == "set-weight" and inputs.weight is not None:
        state.weight = max(0, min(100, int(inputs.weight)))
        return state, [Effect("set-weight", weight=state.weight)], (
            f"canary weight set to {state.weight}% by {inputs.actor or 'user'}")
    unready = _fl_unready(state, plan, inputs, now)
    if unready is not None:
        return unready
    if state.awaiting_ready or fa.skip_analysis:
        return _fl_start(state, plan, inputs, now, [], "canary ready")
    if now < state.next_tick:
        return state, [], ""
    state.next_tick = now + fa.interval
    if state.failed_checks >= fa.threshold:
        return _fl_rollback(state, f"Rolling back: failed checks threshold reached "
                                   f"{state.failed_checks}")
    if inputs.check is None:
        return state, [], ""
    ok, detail = inputs.check
    if not ok:
        state.failed_checks += 1
        return state, [], (f"Halt advancement: {detail} (failed checks {state.failed_checks}/"
                           f"{fa.threshold}); weight held at {state.weight}%")
    return _fl_advance(state, plan, inputs, now, detail)


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


def _fl_waiting(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    if inputs.command == "abort":
        return _fl_rollback(state, "rolled back by " + (inputs.actor or "user"))
    if state.phase is Phase.WAITING:
        if inputs.gates.get("confirm-rollout") is not False or inputs.command == "promote":
            return _fl_begin(state, plan, replace(inputs, gates={}), now)
        return state, [], ""
    # WaitingPromotion: metrics keep running; failures still count
    unready = _fl_unready(state, plan, inputs, now)
    if unready is not None:
        return unready
    fa = plan.flagger
    assert fa is not None
    if now >= state.next_tick:
        state.next_tick = now + _interval(plan)
        if state.failed_checks >= fa.threshold:  # before any check, as Flagger does
            return _fl_rollback(state, f"Rolling back: failed checks threshold reached "
                                       f"{state.failed_checks}")
        if inputs.check is not None and not inputs.check[0]:
            state.failed_checks += 1
    if inputs.gates.get("confirm-promotion") is not False or inputs.command == "promote":
        if fa.strategy == "bluegreen" and state.iterations <= fa.iterations:
            return _fl_all_to_canary(state, "confirm-promotion passed")
        return _fl_promote(state, plan, now, "confirm-promotion passed: copying canary to primary")
    return state, [], ""


def _fl_promoting(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    if now < state.next_tick:
        return state, [], ""
    state.next_tick = now + _interval(plan)
    state.phase = Phase.FINALISING
    state.weight = 0
    state.header_routes, state.mirror_routes = {}, {}
    return state, [Effect("set-weight", weight=0), Effect("clear-routes")], (
        "primary updated: routing all traffic to primary")


def _fl_finalising(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    if now < state.next_tick:
        return state, [], ""
    state.phase = Phase.SUCCEEDED
    effects = [Effect("scale-down", revision=state.revision),
               Effect("webhook", name="post-rollout")]
    return state, effects, "Promotion completed: canary scaled to zero"


TABLE: dict[Phase, Handler] = {
    Phase.INITIALIZING: _fl_initializing,
    Phase.INITIALIZED: _fl_idle,
    Phase.SUCCEEDED: _fl_idle,
    Phase.FAILED: _fl_idle,
    Phase.WAITING: _fl_waiting,
    Phase.PROGRESSING: _fl_progressing,
    Phase.WAITING_PROMOTION: _fl_waiting,
    Phase.PROMOTING: _fl_promoting,
    Phase.FINALISING: _fl_finalising,
}
