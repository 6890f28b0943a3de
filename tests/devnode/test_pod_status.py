"""Pod status as a kubelet computes it: phase, conditions, container states and restart counts."""

from __future__ import annotations

from tollway.devnode.lifecycle import State
from tollway.devnode.podstatus import ContainerRecord, Terminated, phase, pod_status, rfc3339

T0 = 1_780_000_000.0


def running(name: str = "app", *, ready: bool = True, restarts: int = 0) -> ContainerRecord:
    r = ContainerRecord(
        name, "img:1", state=State.RUNNING, pid=42, started_at=T0, restart_count=restarts
    )
    r.ready = ready
    r.started = True
    return r


def done(name: str, code: int, *, init: bool = False) -> ContainerRecord:
    r = ContainerRecord(name, "img:1", init=init, state=State.DONE)
    r.finished(Terminated(code, "Completed" if code == 0 else "Error", T0, T0 + 5))
    return r


def status(policy: str = "Always", inits=(), mains=(), prev=(), now=T0 + 10) -> dict:
    return pod_status(
        policy=policy,
        inits=list(inits),
        mains=list(mains),
        pod_ip="10.244.0.5",
        host_ip="10.244.0.1",
        start_time=T0,
        sandbox_ready=True,
        gates={},
        prev_conditions=list(prev),
        now=now,
    )


def conds(st: dict) -> dict[str, str]:
    return {c["type"]: c["status"] for c in st["conditions"]}


def test_running_and_ready() -> None:
    st = status(mains=[running()])
    assert st["phase"] == "Running"
    assert st["podIP"] == "10.244.0.5" and st["podIPs"] == [{"ip": "10.244.0.5"}]
    assert conds(st) == {
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "Ready": "True",
        "ContainersReady": "True",
    }
    cs = st["containerStatuses"][0]
    assert cs["state"] == {"running": {"startedAt": rfc3339(T0)}} and cs["ready"] is True


def test_not_ready_names_the_container() -> None:
    st = status(mains=[running("a"), running("b", ready=False)])
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "ContainersNotReady"
    assert ready["message"] == "containers with unready status: [b]"


def test_crash_loop_shows_waiting_with_last_state_and_restarts() -> None:
    r = running(restarts=3)
    r.finished(Terminated(1, "Error", T0, T0 + 1))
    r.state = State.BACKOFF
    r.waiting_message = "back-off 40s restarting failed container=app pod=p_ns(u)"
    st = status(mains=[r])
    cs = st["containerStatuses"][0]
    assert cs["restartCount"] == 3 and cs["ready"] is False
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    assert st["phase"] == "Running"  # Always: restarting containers keep the pod Running


def test_running_again_after_crash_keeps_the_crash_as_last_state() -> None:
    r = running(restarts=1)
    r.current = Terminated(2, "Error", T0 - 10, T0 - 5)
    cs = status(mains=[r])["containerStatuses"][0]
    assert "running" in cs["state"] and cs["lastState"]["terminated"]["exitCode"] == 2


def test_phases_follow_get_phase() -> None:
    assert phase("Always", [], [ContainerRecord("a", "i")]) == "Pending"
    assert phase("Never", [], [done("a", 0), done("b", 0)]) == "Succeeded"
    assert phase("Never", [], [done("a", 0), done("b", 3)]) == "Failed"
    assert phase("OnFailure", [], [done("a", 0)]) == "Succeeded"
    assert phase("Never", [], [done("a", 1), running("b")]) == "Running"
    assert phase("Always", [done("i", 0, init=True)], [running()]) == "Running"
    pending_init = ContainerRecord("i", "x", init=True, state=State.RUNNING, started_at=T0)
    assert phase("Always", [pending_init], [ContainerRecord("a", "i")]) == "Pending"
    assert phase("Never", [done("i", 1, init=True)], [ContainerRecord("a", "i")]) == "Failed"


def test_init_containers_gate_initialized_and_show_terminated() -> None:
    init = ContainerRecord("setup", "x", init=True, state=State.RUNNING, started_at=T0, pid=9)
    st = status(inits=[init], mains=[ContainerRecord("app", "i", waiting_reason="PodInitializing")])
    assert st["phase"] == "Pending"
    initialized = next(c for c in st["conditions"] if c["type"] == "Initialized")
    assert initialized["status"] == "False"
    assert initialized["message"] == "containers with incomplete status: [setup]"
    assert st["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
    st = status(inits=[done("setup", 0, init=True)], mains=[running()])
    assert st["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    assert conds(st)["Initialized"] == "True"


def test_transition_time_kept_while_status_unchanged() -> None:
    first = status(mains=[running()], now=T0 + 10)
    again = status(mains=[running()], prev=first["conditions"], now=T0 + 99)
    t = {c["type"]: c["lastTransitionTime"] for c in again["conditions"]}
    assert t["Ready"] == rfc3339(T0 + 10)
    flipped = status(mains=[running(ready=False)], prev=again["conditions"], now=T0 + 120)
    ready = next(c for c in flipped["conditions"] if c["type"] == "Ready")
    assert ready["lastTransitionTime"] == rfc3339(T0 + 120)


def test_scheduler_condition_is_preserved() -> None:
    sched = {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
    st = status(mains=[running()], prev=[sched])
    assert sched in st["conditions"]


def test_completed_pod_is_not_ready_with_reason() -> None:
    st = status("Never", mains=[done("a", 0)])
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert st["phase"] == "Succeeded" and ready["reason"] == "PodCompleted"
    assert st["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0


def test_started_sidecar_counts_as_initialized_and_for_readiness() -> None:
    side = ContainerRecord(
        "proxy", "p", init=True, sidecar=True, state=State.RUNNING, started_at=T0
    )
    side.initialized, side.started, side.ready = True, True, False
    st = status(inits=[side], mains=[running()])
    assert st["phase"] == "Running" and conds(st)["Initialized"] == "True"
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and "[proxy]" in ready["message"]
    side.ready = True
    assert conds(status(inits=[side], mains=[running()]))["Ready"] == "True"
