"""The Flagger machine on a fake clock: ticks, cumulative failed checks, promotion phases."""

from __future__ import annotations

from tests.rollout.conftest import Driver
from tollway.rollout import plans
from tollway.rollout.model import Phase, Plan

OK = (True, "request-success-rate 100 within range")
BAD = (False, "request-success-rate 95 < 99")


def _start(plan: Plan) -> Driver:
    d = Driver(plan, revision="v1")
    d.step()
    assert d.state.phase is Phase.INITIALIZED
    d.revision = "v2"
    d.advance(1)
    assert d.state.phase is Phase.PROGRESSING
    return d


def test_flagger_seed08_weights_and_promotion(seed08_plan: Plan) -> None:
    assert seed08_plan.flagger is not None
    assert seed08_plan.flagger.weights == (10, 20, 30, 40, 50)
    d = _start(seed08_plan)
    assert d.last_weight() == 10
    assert d.advance(30, check=OK) == ""  # not a tick yet
    d.advance(30, check=OK)
    assert d.last_weight() == 20
    for w in (30, 40, 50):
        d.advance(60, check=OK)
        assert d.last_weight() == w
    d.advance(60, check=OK)
    assert d.state.phase is Phase.PROMOTING
    d.advance(60)
    assert d.state.phase is Phase.FINALISING and d.last_weight() == 0
    d.advance(60)
    assert d.state.phase is Phase.SUCCEEDED and d.state.stable_revision == "v2"


def test_flagger_routes_all_traffic_to_the_primary_only_after_its_rollout(
        seed08_plan: Plan) -> None:
    """Flagger's IsPrimaryReady before every advance: after the copy, the weight stays on
    the canary while the primary still rolls out the promoted template."""
    d = _start(seed08_plan)
    for _ in range(5):
        d.advance(60, check=OK)
    assert d.state.phase is Phase.PROMOTING
    assert "waiting for the primary" in d.advance(60, primary_ready=False)
    assert d.advance(60, primary_ready=False) == ""  # said once
    assert d.state.phase is Phase.PROMOTING and d.last_weight() == 50
    d.advance(60)
    assert d.state.phase is Phase.FINALISING and d.last_weight() == 0


def test_flagger_failed_checks_accumulate_and_hold_the_weight(seed08_plan: Plan) -> None:
    d = _start(seed08_plan)
    pattern = [BAD, OK, BAD, BAD, OK, BAD, BAD]  # 5 failures, not in a row
    for check in pattern:
        d.advance(60, check=check)
    assert d.state.failed_checks == 5
    assert d.last_weight() == 30  # two passes advanced; failures held
    assert d.state.phase is Phase.PROGRESSING
    d.advance(60, check=OK)  # next tick: threshold reached → rollback
    assert d.state.phase is Phase.FAILED and d.last_weight() == 0
    assert "threshold" in d.state.message


def test_flagger_no_data_counts_as_failure(seed08_plan: Plan) -> None:
    d = _start(seed08_plan)
    for _ in range(5):
        d.advance(60, check=(False, "request-success-rate: no values found"))
    d.advance(60, check=OK)
    assert d.state.phase is Phase.FAILED


def test_flagger_new_revision_resets_counters(seed08_plan: Plan) -> None:
    d = _start(seed08_plan)
    d.advance(60, check=BAD)
    d.advance(60, check=OK)
    d.revision = "v3"
    d.advance(5)
    assert d.state.failed_checks == 0 and d.last_weight() == 10 and d.state.revision == "v3"


def test_flagger_abort_and_manual_promote(seed08_plan: Plan) -> None:
    d = _start(seed08_plan)
    d.step(command="abort", actor="ops")
    assert d.state.phase is Phase.FAILED and d.last_weight() == 0
    d.step(command="retry")
    assert d.state.phase is Phase.PROGRESSING and d.last_weight() == 10
    d.step(command="promote")
    assert d.state.phase is Phase.PROMOTING


def test_flagger_confirm_gates(seed08_plan: Plan) -> None:
    d = Driver(seed08_plan, revision="v1")
    d.step()
    d.revision = "v2"
    d.advance(1, gates={"confirm-rollout": False})
    assert d.state.phase is Phase.WAITING
    d.advance(1)
    assert d.state.phase is Phase.PROGRESSING
    for _ in range(5):
        d.advance(60, check=OK, gates={"confirm-promotion": False})
    assert d.state.phase is Phase.WAITING_PROMOTION
    d.advance(60, check=OK)
    assert d.state.phase is Phase.PROMOTING


def test_flagger_ab_iterations_route_by_header() -> None:
    plan = plans.flagger_plan("api", "default", {"analysis": {
        "interval": "10s", "threshold": 2, "iterations": 3,
        "match": [{"headers": {"x-canary": {"exact": "insider"}}}]}})
    d = _start(plan)
    assert "header-route" in d.kinds() and d.state.weight == 0
    for _ in range(3):
        d.advance(10, check=OK)
    assert d.state.phase is Phase.PROMOTING


def test_flagger_interval_and_step_weights() -> None:
    plan = plans.flagger_plan("api", "default", {"analysis": {
        "interval": "30s", "stepWeights": [1, 5, 25]}})
    assert plan.flagger is not None and plan.flagger.weights == (1, 5, 25)
    assert plan.flagger.threshold == 1
    d = _start(plan)
    d.advance(30, check=BAD)
    d.advance(30, check=OK)
    assert d.state.phase is Phase.FAILED


def test_flagger_bluegreen_mirroring_copies_traffic_to_canary() -> None:
    from tollway.config import load
    from tollway.rollout import traffic

    plan = plans.flagger_plan("api", "default", {"analysis": {
        "interval": "10s", "iterations": 2, "mirror": True, "mirrorWeight": 40}})
    d = _start(plan)
    assert d.state.weight == 0 and d.state.mirror_routes["mirror"]["percentage"] == 40
    canary = load.load_text("""
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: api}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: api}
  service: {port: 8080}
  analysis: {interval: 10s, iterations: 2, mirror: true, mirrorWeight: 40}
""").resources.of_kind("Canary")[0]
    (vs,) = [m for m in traffic.flagger_resources(canary, plan, d.state, {}, load.load_text(
        "").resources) if m["kind"] == "VirtualService"]
    route = vs["spec"]["http"][-1]
    assert route["mirror"]["host"] == "api-canary"
    assert route["mirrorPercentage"] == {"value": 40.0}
    for _ in range(2):
        d.advance(10, check=OK)
    # Flagger's runBlueGreen: after the last iteration all traffic goes to the canary (the
    # mirror stops) and one more checked tick runs before promotion
    assert d.state.phase is Phase.PROGRESSING and d.state.weight == 100
    assert d.state.mirror_routes == {} and d.state.iterations == 3
    d.advance(10, check=OK)
    assert d.state.phase is Phase.PROMOTING


# ---- readiness: the primary before initialization ends, the canary before analysis ----------


def _spec(**extra: object) -> dict[str, object]:
    from tests.rollout.conftest import seed_spec

    return {**dict(seed_spec("08-flagger-canary.yaml", "Canary")), **extra}


def test_flagger_initialization_waits_for_the_primary(seed08_plan: Plan) -> None:
    d = Driver(seed08_plan, revision="v1")
    assert "waiting for it to be ready" in d.step(primary_ready=False)
    assert d.state.phase is Phase.INITIALIZING and d.kinds() == ["promote-stable"]
    assert d.advance(30, primary_ready=False) == ""
    assert "target scaled to zero" in d.advance(1)
    assert d.state.phase is Phase.INITIALIZED and d.kinds().count("promote-stable") == 1


def test_flagger_routes_the_first_weight_once_the_canary_is_ready(seed08_plan: Plan) -> None:
    d = Driver(seed08_plan, revision="v1")
    d.step()
    d.revision = "v2"
    reason = d.advance(1, ready=False)
    assert "scaling up the canary" in reason and "waiting for the canary" in reason
    assert d.state.phase is Phase.PROGRESSING and d.state.weight == 0
    assert "webhook" not in d.kinds()  # pre-rollout runs when the analysis starts
    d.advance(20, ready=False, check=BAD)
    assert d.state.failed_checks == 0  # nothing is checked while it is not ready
    d.advance(5)
    assert d.last_weight() == 10 and d.state.unready_since is None
    assert [e.name for e in d.effects if e.kind == "webhook"] == ["pre-rollout"]


def test_flagger_progress_deadline_rolls_back_a_canary_that_never_gets_ready() -> None:
    plan = plans.flagger_plan("api", "default", _spec(progressDeadlineSeconds=60))
    assert plan.flagger is not None and plan.flagger.progress_deadline == 60
    d = _start(plan)
    d.advance(60, check=OK)
    assert d.last_weight() == 20
    assert "halting advancement" in d.advance(1, ready=False)  # mid-analysis: halts
    d.advance(59, ready=False)
    assert d.state.phase is Phase.PROGRESSING and d.last_weight() == 20
    d.advance(2, ready=False)
    assert d.state.phase is Phase.FAILED and d.last_weight() == 0
    assert "progress deadline exceeded" in d.state.message


def test_flagger_not_ready_for_less_than_the_deadline_resumes(seed08_plan: Plan) -> None:
    assert seed08_plan.flagger is not None and seed08_plan.flagger.progress_deadline == 600
    d = _start(seed08_plan)
    d.advance(1, ready=False)
    d.advance(599, ready=False, check=OK)
    assert d.state.phase is Phase.PROGRESSING and d.last_weight() == 10
    d.advance(1, check=OK)  # ready again: the overdue tick runs
    assert d.last_weight() == 20 and d.state.unready_since is None


def test_flagger_skip_analysis_promotes_once_the_canary_is_ready() -> None:
    plan = plans.flagger_plan("api", "default", _spec(skipAnalysis=True))
    d = Driver(plan, revision="v1")
    d.step()
    d.revision = "v2"
    d.advance(1, ready=False)
    assert d.state.phase is Phase.PROGRESSING and d.state.stable_revision == "v1"
    d.advance(3)
    assert d.state.phase is Phase.SUCCEEDED and d.state.stable_revision == "v2"
    assert "analysis was skipped" in d.state.message
    assert d.state.weight == 0 and "webhook" not in d.kinds()  # no hooks, no traffic shift
    assert d.kinds().count("promote-stable") == 2


def test_flagger_skip_analysis_still_rolls_back_past_the_deadline() -> None:
    plan = plans.flagger_plan("api", "default", _spec(skipAnalysis=True,
                                                      progressDeadlineSeconds=30))
    d = Driver(plan, revision="v1")
    d.step()
    d.revision = "v2"
    d.advance(1, ready=False)
    d.advance(31, ready=False)
    assert d.state.phase is Phase.FAILED and d.state.stable_revision == "v1"
