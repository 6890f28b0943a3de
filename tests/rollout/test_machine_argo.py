"""The Argo canary machine on a fake clock: every step kind, pauses, abort, retry, promote."""

from __future__ import annotations

from tests.rollout.conftest import Driver
from tollway.rollout import plans
from tollway.rollout.model import Phase, Plan


def _plan(steps: list[dict[str, object]], **canary: object) -> Plan:
    return plans.argo_plan("web", "default", {"strategy": {"canary": {"steps": steps,
                                                                       **canary}}})


def test_argo_seed14_runs_steps_with_gate_before_final_step(seed14_plan: Plan) -> None:
    assert [s.kind for s in seed14_plan.steps][-2:] == ["gate", "setWeight"]
    assert seed14_plan.warnings
    d = Driver(seed14_plan)
    assert d.state.phase is Phase.HEALTHY
    d.revision = "v2"
    d.step()
    assert d.state.phase is Phase.PAUSED and d.last_weight() == 5
    assert d.advance(299) == ""  # the 5m pause holds
    d.advance(1)
    assert d.state.phase is Phase.PROGRESSING and d.state.step_index == 2
    run = d.started_runs()[-1]
    d.analysis[run] = "Running"
    assert d.advance(60) == ""
    d.analysis[run] = "Successful"
    d.advance(1)
    assert d.last_weight() == 20 and d.state.phase is Phase.PAUSED
    d.advance(600)
    run2 = d.started_runs()[-1]
    assert run2 != run
    d.analysis[run2] = "Successful"
    d.advance(1)
    assert d.last_weight() == 50
    d.advance(600)
    assert d.state.phase is Phase.PAUSED and d.state.pause_reason == "CanaryPauseStep"
    d.advance(3600)
    assert d.state.phase is Phase.PAUSED  # the gate waits for a human
    d.step(command="promote", actor="alice")
    assert d.state.phase is Phase.HEALTHY and d.state.stable_revision == "v2"
    assert "promote-stable" in d.kinds() and d.last_weight() == 0
    assert d.state.history[-1]["actor"] == "alice"
    assert d.state.history[0]["actor"] == "controller"


def test_argo_failed_analysis_aborts_all_traffic_to_stable_at_once(seed14_plan: Plan) -> None:
    d = Driver(seed14_plan)
    d.revision = "v2"
    d.step()
    d.advance(300)
    run = d.started_runs()[-1]
    d.analysis[run] = "Failed"
    d.advance(240)
    assert d.state.phase is Phase.DEGRADED and d.state.abort
    assert d.last_weight() == 0 and d.state.weight == 0
    assert "stop-analysis" in d.kinds() and "Failed" in d.state.message
    assert d.state.stable_revision == "v1"


def test_argo_error_run_aborts_too(seed14_plan: Plan) -> None:
    d = Driver(seed14_plan)
    d.revision = "v2"
    d.step()
    d.advance(300)
    d.analysis[d.started_runs()[-1]] = "Error"
    d.advance(1)
    assert d.state.phase is Phase.DEGRADED


def test_argo_inconclusive_pauses_and_promote_continues(seed14_plan: Plan) -> None:
    d = Driver(seed14_plan)
    d.revision = "v2"
    d.step()
    d.advance(300)
    d.analysis[d.started_runs()[-1]] = "Inconclusive"
    d.advance(60)
    assert d.state.phase is Phase.PAUSED and d.state.pause_reason == "InconclusiveAnalysisRun"
    d.advance(10_000)
    assert d.state.phase is Phase.PAUSED
    d.step(command="promote")
    assert d.last_weight() == 20


def test_argo_pause_without_duration_waits_for_promote() -> None:
    d = Driver(_plan([{"setWeight": 10}, {"pause": {}}, {"setWeight": 60}]))
    d.revision = "v2"
    d.step()
    d.advance(1e6)
    assert d.state.phase is Phase.PAUSED and d.last_weight() == 10
    d.step(command="promote")
    assert d.state.phase is Phase.HEALTHY


def test_argo_pause_duration_bare_number_is_seconds() -> None:
    d = Driver(_plan([{"setWeight": 10}, {"pause": {"duration": 30}}, {"setWeight": 60},
                      {"pause": {"duration": "1m"}}]))
    d.revision = "v2"
    d.step()
    d.advance(29)
    assert d.last_weight() == 10
    d.advance(1)
    assert d.last_weight() == 60
    d.advance(60)
    assert d.state.phase is Phase.HEALTHY


def test_argo_abort_retry_and_promote_full() -> None:
    d = Driver(_plan([{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]))
    d.revision = "v2"
    d.step()
    d.step(command="abort", actor="bob", why="pager")
    assert d.state.phase is Phase.DEGRADED and d.state.abort and d.last_weight() == 0
    assert "pager" in d.state.history[-1]["reason"]
    d.advance(100)
    assert d.state.phase is Phase.DEGRADED  # stays aborted until retried
    d.step(command="retry")
    assert d.state.phase is Phase.PAUSED and d.last_weight() == 10 and not d.state.abort
    d.step(command="promote-full")
    assert d.state.phase is Phase.HEALTHY and d.state.stable_revision == "v2"


def test_argo_user_pause_and_resume_keep_the_step() -> None:
    d = Driver(_plan([{"setWeight": 10}, {"pause": {"duration": "10s"}}, {"setWeight": 50},
                      {"analysis": {"templates": [{"templateName": "t"}]}}]))
    d.revision = "v2"
    d.step()
    d.advance(10)
    assert d.state.step_index == 3 and d.last_weight() == 50
    d.step(command="pause")
    assert d.state.phase is Phase.PAUSED and d.state.pause_reason == ""
    d.advance(1000)
    assert d.state.step_index == 3
    d.step(command="resume")
    assert d.state.phase is Phase.PROGRESSING and d.state.step_index == 3


def test_argo_new_template_mid_rollout_starts_over() -> None:
    d = Driver(_plan([{"setWeight": 10}, {"pause": {"duration": "1m"}}, {"setWeight": 50},
                      {"pause": {}}]))
    d.revision = "v2"
    d.step()
    d.advance(60)
    assert d.last_weight() == 50
    d.revision = "v3"
    d.advance(1)
    assert d.state.revision == "v3" and d.state.step_index == 1 and d.last_weight() == 10
    assert d.state.stable_revision == "v1"
    assert "new template v3" in d.state.message


def test_argo_template_back_to_stable_goes_healthy_at_once() -> None:
    d = Driver(_plan([{"setWeight": 10}, {"pause": {}}]))
    d.revision = "v2"
    d.step()
    d.revision = "v1"
    d.step()
    assert d.state.phase is Phase.HEALTHY and d.last_weight() == 0 and not d.state.abort


def test_argo_header_mirror_and_scale_steps_emit_effects() -> None:
    d = Driver(_plan([
        {"setCanaryScale": {"replicas": 2}},
        {"setHeaderRoute": {"name": "beta", "match": [{"headerName": "x-beta",
                                                        "headerValue": {"exact": "1"}}]}},
        {"setMirrorRoute": {"name": "shadow", "percentage": 35,
                            "match": [{"method": {"exact": "GET"}}]}},
        {"pause": {}},
        {"setHeaderRoute": {"name": "beta"}},
        {"setWeight": 20},
        {"pause": {}},
    ]))
    d.revision = "v2"
    d.step()
    assert d.state.header_routes == {"beta": [{"headerName": "x-beta",
                                               "headerValue": {"exact": "1"}}]}
    assert d.state.mirror_routes["shadow"]["percentage"] == 35
    assert d.state.canary_scale == {"replicas": 2}
    assert {"scale-canary", "header-route", "mirror-route"} <= set(d.kinds())
    d.step(command="promote")
    assert "beta" not in d.state.header_routes and d.last_weight() == 20
    d.step(command="promote")
    assert d.state.phase is Phase.HEALTHY and d.state.header_routes == {}
    assert "clear-routes" in d.kinds()


def test_argo_background_analysis_failure_aborts() -> None:
    plan = _plan([{"setWeight": 10}, {"pause": {}}],
                 analysis={"templates": [{"templateName": "bg"}], "startingStep": 1})
    d = Driver(plan)
    d.revision = "v2"
    d.step()
    (run,) = d.started_runs()
    d.analysis[run] = "Failed"
    d.advance(5)
    assert d.state.phase is Phase.DEGRADED and d.last_weight() == 0


def test_argo_no_steps_is_a_rolling_update() -> None:
    d = Driver(_plan([]))
    d.revision = "v2"
    d.step()
    assert d.state.phase is Phase.HEALTHY and d.state.stable_revision == "v2"


def test_argo_state_resumes_from_dict_at_the_same_step(seed14_plan: Plan) -> None:
    from tollway.rollout.model import RolloutState

    d = Driver(seed14_plan)
    d.revision = "v2"
    d.step()
    d.advance(120)
    saved = d.state.to_dict()
    d2 = Driver(seed14_plan, now=d.now)
    d2.revision = "v2"
    d2.state = RolloutState.from_dict(saved)
    assert d2.advance(100) == ""  # nothing repeated: still in the same pause
    assert d2.effects == []
    d2.advance(80)
    assert d2.state.step_index == 2 and d2.started_runs()


def test_argo_weight_moves_only_once_canary_replicas_are_ready() -> None:
    d = Driver(_plan([{"setWeight": 30}, {"pause": {}}]))
    d.revision = "v2"
    d.step(ready=False)
    assert d.state.weight == 0 and d.state.scale_weight == 30
    assert "scaling the canary for 30%" in d.state.message
    assert d.advance(5, ready=False) == ""
    d.advance(1, ready=True)
    assert d.state.weight == 30 and d.last_weight() == 30


def test_argo_manual_set_weight_holds_until_resumed() -> None:
    d = Driver(_plan([{"setWeight": 10}, {"pause": {"duration": "1m"}}, {"setWeight": 50},
                      {"pause": {}}]))
    d.revision = "v2"
    d.step()
    d.step(command="set-weight", weight=30, actor="sre")
    assert d.state.weight == 30 and d.state.phase is Phase.PAUSED and d.last_weight() == 30
    d.advance(120)
    assert d.state.weight == 30  # held, the step's timer no longer applies
    d.step(command="resume")  # the interrupted step (a 1m pause) runs again
    assert d.state.step_index == 1 and d.last_weight() == 30
    d.advance(60)
    assert d.last_weight() == 50


def test_argo_scale_sharing_a_step_with_a_route_runs_both() -> None:
    """Argo lets setCanaryScale share a step with setHeaderRoute or setMirrorRoute and
    scales first; the plan used to keep only the route and drop the scale silently."""
    d = Driver(_plan([
        {"setCanaryScale": {"replicas": 1},
         "setHeaderRoute": {"name": "beta", "match": [{"headerName": "x-beta",
                                                        "headerValue": {"exact": "1"}}]}},
        {"setCanaryScale": {"weight": 30},
         "setMirrorRoute": {"name": "shadow", "percentage": 10}},
        {"pause": {}},
    ]))
    d.revision = "v2"
    d.step()
    kinds = d.kinds()
    assert kinds.index("scale-canary") < kinds.index("header-route")
    assert d.state.header_routes == {"beta": [{"headerName": "x-beta",
                                               "headerValue": {"exact": "1"}}]}
    assert d.state.mirror_routes["shadow"]["percentage"] == 10
    assert d.state.canary_scale == {"weight": 30}  # the second step's scale, after the first
    assert [e.args for e in d.effects if e.kind == "scale-canary"][-2:] == [
        {"replicas": "1"}, {"weight": "30"}]
    assert d.state.step_index == 2 and d.state.paused
