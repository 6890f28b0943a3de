"""What the agent knows about a pod's containers, and the `status` a kubelet would write from it.

`ContainerRecord` is the per-container memory the worker updates (through `lifecycle`'s table);
`pod_status` turns records into the JSON for `PATCH pods/status`: phase (kubelet `getPhase`),
conditions (PodReadyToStartContainers, Initialized, ContainersReady, Ready, with
lastTransitionTime kept while a status does not change), containerStatuses and
initContainerStatuses (running / waiting with CrashLoopBackOff / terminated with exitCode,
lastState, restartCount, ready, started). Pure: time comes in as arguments.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tollway.devnode.lifecycle import State

JSON = dict[str, Any]


def rfc3339(wall: float) -> str:
    return dt.datetime.fromtimestamp(int(wall), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Terminated:
    exit_code: int
    reason: str
    started_at: float
    finished_at: float
    message: str = ""

    def to_json(self, container_id: str) -> JSON:
        out: JSON = {
            "exitCode": self.exit_code,
            "reason": self.reason,
            "startedAt": rfc3339(self.started_at),
            "finishedAt": rfc3339(self.finished_at),
            "containerID": container_id,
        }
        if self.message:
            out["message"] = self.message
        return out


@dataclass
class ContainerRecord:
    """One container's runtime memory; `state` only moves through lifecycle.transition."""

    name: str
    image: str
    init: bool = False
    sidecar: bool = False  # an init container with restartPolicy Always (a native sidecar)
    initialized: bool = False  # sidecar: started once, so the next init container may run
    state: State = State.WAITING
    restart_count: int = 0
    pid: int | None = None
    started_at: float | None = None  # wall clock of the current/last start
    started_mono: float | None = None
    current: Terminated | None = None  # set while DONE or BACKOFF (the run that just ended)
    last: Terminated | None = None  # the run before the current one
    ready: bool = False
    started: bool = False  # startup probe passed (or none), kubelet's `started`
    waiting_reason: str = "ContainerCreating"
    waiting_message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def container_id(self) -> str:
        return f"devnode://{self.pid or 0}"

    def finished(self, term: Terminated) -> None:
        """Record an exit: the previous run becomes lastState, this one the current result."""
        if self.current is not None:
            self.last = self.current
        self.current = term
        self.pid = None
        self.ready = False
        self.started = False

    def state_json(self) -> JSON:
        if self.state in (State.RUNNING, State.KILLING, State.STOPPING) and self.started_at:
            return {"running": {"startedAt": rfc3339(self.started_at)}}
        if self.state is State.DONE and self.current is not None:
            return {"terminated": self.current.to_json(self.container_id)}
        if self.state is State.BACKOFF:
            return {"waiting": {"reason": "CrashLoopBackOff", "message": self.waiting_message}}
        waiting: JSON = {"reason": self.waiting_reason}
        if self.waiting_message:
            waiting["message"] = self.waiting_message
        return {"waiting": waiting}

    def last_state_json(self) -> JSON:
        # While running again after a crash, the crash is lastState; while in backoff, the run
        # before the crash is (the crash itself shows as the waiting reason's cause).
        if self.state in (
            State.RUNNING,
            State.KILLING,
            State.STOPPING,
            State.WAITING,
            State.BACKOFF,
        ):
            prev = self.current
        else:
            prev = self.last
        return {"terminated": prev.to_json(self.container_id)} if prev else {}

    def status_json(self) -> JSON:
        out: JSON = {
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "ready": self.ready,
            "restartCount": self.restart_count,
            "started": self.state in (State.RUNNING, State.KILLING) and self.started,
            "state": self.state_json(),
            "lastState": self.last_state_json(),
        }
        if self.pid or self.current:
            out["containerID"] = self.container_id
        return out

    @property
    def ever_ran(self) -> bool:
        return self.current is not None or self.state in (
            State.RUNNING,
            State.KILLING,
            State.STOPPING,
        )

    @property
    def init_done(self) -> bool:
        """What lets the next init container start: success, or a sidecar that has started."""
        return self.initialized if self.sidecar else self.succeeded

    @property
    def succeeded(self) -> bool:
        return self.state is State.DONE and self.current is not None and self.current.exit_code == 0

    @property
    def running(self) -> bool:
        return self.state in (State.RUNNING, State.KILLING, State.STOPPING)


def phase(policy: str, inits: Sequence[ContainerRecord], mains: Sequence[ContainerRecord]) -> str:
    """Kubelet's getPhase for the records we hold."""
    for c in inits:
        if c.init_done:
            continue
        if c.state is State.DONE and c.current is not None:
            return "Failed"  # an init container failed and will not be retried
        return "Pending"
    running = sum(1 for c in mains if c.running)
    waiting = sum(1 for c in mains if not c.running and not c.ever_ran)
    stopped = sum(1 for c in mains if not c.running and c.ever_ran)
    succeeded = sum(
        1 for c in mains if not c.running and c.current is not None and c.current.exit_code == 0
    )
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never" or all(c.state is State.DONE for c in mains):
            return "Failed"
        return "Running"
    return "Pending"


def init_ok_all(inits: Sequence[ContainerRecord]) -> bool:
    return all(c.init_done for c in inits)


def _condition(
    kind: str, ok: bool, now: float, prev: Mapping[str, JSON], reason: str = "", message: str = ""
) -> JSON:
    status = "True" if ok else "False"
    old = prev.get(kind)
    since = old.get("lastTransitionTime") if old and old.get("status") == status else None
    cond: JSON = {
        "type": kind,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": since or rfc3339(now),
    }
    if not ok and reason:
        cond["reason"] = reason
        if message:
            cond["message"] = message
    return cond


def conditions(
    inits: Sequence[ContainerRecord],
    mains: Sequence[ContainerRecord],
    *,
    sandbox_ready: bool,
    terminal: bool,
    gates: Mapping[str, bool],
    prev: Sequence[JSON],
    now: float,
) -> list[JSON]:
    old = {c.get("type", ""): c for c in prev}
    pending_inits = [c.name for c in inits if not c.init_done]
    # Native sidecars count for readiness once initialization is over (kubelet since 1.29).
    watched = [*(c for c in inits if c.sidecar and init_ok_all(inits)), *mains]
    unready = [c.name for c in watched if not c.ready]
    gates_unready = [g for g, ok in gates.items() if not ok]
    init_ok = not pending_inits
    ready_reason = "PodCompleted" if terminal else "ContainersNotReady"
    out = [
        _condition("PodReadyToStartContainers", sandbox_ready, now, old),
        _condition(
            "Initialized",
            init_ok,
            now,
            old,
            "ContainersNotInitialized",
            f"containers with incomplete status: [{' '.join(pending_inits)}]",
        ),
        _condition(
            "Ready",
            not unready and not gates_unready and not terminal,
            now,
            old,
            "ReadinessGatesNotReady"
            if not unready and gates_unready and not terminal
            else ready_reason,
            f"containers with unready status: [{' '.join(unready)}]" if unready else "",
        ),
        _condition(
            "ContainersReady",
            not unready and not terminal,
            now,
            old,
            ready_reason,
            f"containers with unready status: [{' '.join(unready)}]" if unready else "",
        ),
    ]
    if "PodScheduled" in old:
        out.append(old["PodScheduled"])
    return out


def pod_status(
    *,
    policy: str,
    inits: Sequence[ContainerRecord],
    mains: Sequence[ContainerRecord],
    pod_ip: str | None,
    host_ip: str,
    start_time: float,
    sandbox_ready: bool,
    gates: Mapping[str, bool],
    prev_conditions: Sequence[JSON],
    now: float,
) -> JSON:
    ph = phase(policy, inits, mains)
    status: JSON = {
        "phase": ph,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": rfc3339(start_time),
        "conditions": conditions(
            inits,
            mains,
            sandbox_ready=sandbox_ready,
            terminal=ph in ("Succeeded", "Failed"),
            gates=gates,
            prev=prev_conditions,
            now=now,
        ),
        "containerStatuses": [c.status_json() for c in mains],
    }
    if inits:
        status["initContainerStatuses"] = [c.status_json() for c in inits]
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    return status
