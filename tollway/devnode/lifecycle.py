"""A container's lifecycle as a transition table, plus kubelet's restart rules and backoff.

Why a table: the worker that runs processes must never decide on its own whether a container
restarts, waits or stays down; it feeds events in and carries out the effects that come back.
The same table is drawn in docs/devnode.md.

Kubelet facts kept here: restartPolicy Always restarts every exit, OnFailure only non-zero
exits, Never nothing; init containers restart on failure unless the policy is Never; crash
backoff is 10 s doubling to 5 min (the first restart is immediate) and resets once a container
ran 10 minutes cleanly.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class State(enum.Enum):
    WAITING = "waiting"  # not started yet (or about to be started again)
    RUNNING = "running"
    BACKOFF = "backoff"  # exited, restart scheduled after a delay (CrashLoopBackOff)
    KILLING = "killing"  # liveness failed: SIGTERM sent, waiting for the exit, then restart
    STOPPING = "stopping"  # pod is going away: SIGTERM sent, will not restart
    DONE = "done"  # exited for good (or never started because the pod went away)


class Event(enum.Enum):
    STARTED = "started"
    START_FAILED = "start-failed"  # the command could not be executed
    EXIT_RESTART = "exit-restart"  # exited and the policy says restart
    EXIT_FINAL = "exit-final"  # exited and the policy says stay down
    BACKOFF_ELAPSED = "backoff-elapsed"
    UNHEALTHY = "unhealthy"  # liveness probe crossed its failure threshold
    STOP = "stop"  # pod deletion / agent shutdown


class Effect(enum.Enum):
    SPAWN = "spawn"
    SCHEDULE_RESTART = "schedule-restart"
    SIGTERM = "sigterm"
    NONE = "none"


# (state, event) -> (next state, effect). Anything missing is an impossible event for that state
# and is ignored (e.g. a late BACKOFF_ELAPSED after STOP).
TABLE: dict[tuple[State, Event], tuple[State, Effect]] = {
    (State.WAITING, Event.STARTED): (State.RUNNING, Effect.NONE),
    (State.WAITING, Event.START_FAILED): (State.BACKOFF, Effect.SCHEDULE_RESTART),
    (State.WAITING, Event.STOP): (State.DONE, Effect.NONE),
    (State.RUNNING, Event.EXIT_RESTART): (State.BACKOFF, Effect.SCHEDULE_RESTART),
    (State.RUNNING, Event.EXIT_FINAL): (State.DONE, Effect.NONE),
    (State.RUNNING, Event.UNHEALTHY): (State.KILLING, Effect.SIGTERM),
    (State.RUNNING, Event.STOP): (State.STOPPING, Effect.SIGTERM),
    (State.KILLING, Event.EXIT_RESTART): (State.BACKOFF, Effect.SCHEDULE_RESTART),
    (State.KILLING, Event.EXIT_FINAL): (State.DONE, Effect.NONE),
    (State.KILLING, Event.STOP): (State.STOPPING, Effect.NONE),
    (State.BACKOFF, Event.BACKOFF_ELAPSED): (State.WAITING, Effect.SPAWN),
    (State.BACKOFF, Event.STOP): (State.DONE, Effect.NONE),
    (State.STOPPING, Event.EXIT_RESTART): (State.DONE, Effect.NONE),
    (State.STOPPING, Event.EXIT_FINAL): (State.DONE, Effect.NONE),
}

RESTART_POLICIES = ("Always", "OnFailure", "Never")


def transition(state: State, event: Event) -> tuple[State, Effect]:
    """The next state and what to do; unknown pairs leave the state unchanged and do nothing."""
    return TABLE.get((state, event), (state, Effect.NONE))


def should_restart(policy: str, exit_code: int, *, init: bool = False) -> bool:
    """Kubelet's rule: init containers restart only on failure, and never under Never."""
    if policy not in RESTART_POLICIES:
        raise ValueError(f"spec.restartPolicy {policy!r} is not one of {RESTART_POLICIES}")
    if policy == "Never":
        return False
    if init or policy == "OnFailure":
        return exit_code != 0
    return True


def exit_event(policy: str, exit_code: int, *, init: bool = False) -> Event:
    if should_restart(policy, exit_code, init=init):
        return Event.EXIT_RESTART
    return Event.EXIT_FINAL


@dataclass
class CrashBackoff:
    """Kubelet's per-container restart delay: 0, base, 2*base ... cap; resets after a long run.

    `base` is 10 s in a real kubelet; tests and `--backoff-base` make it small.
    """

    base: float = 10.0
    cap: float = 300.0
    failures: int = 0
    stable_after: float = field(default=0.0)

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base:
            raise ValueError("crash backoff needs 0 < base <= cap")
        if not self.stable_after:
            self.stable_after = 2 * self.cap

    def delay_after_exit(self, ran_for: float) -> float:
        """The wait before the next start, given how long the exited run lasted."""
        if ran_for >= self.stable_after:
            self.failures = 0
        delay = 0.0 if self.failures == 0 else min(self.cap, self.base * 2 ** (self.failures - 1))
        self.failures += 1
        return delay


def exit_reason(exit_code: int) -> str:
    """The `terminated.reason` kubelet reports: Completed for 0, Error otherwise."""
    return "Completed" if exit_code == 0 else "Error"


def signal_exit_code(returncode: int) -> int:
    """asyncio reports a signal death as -N; a container runtime reports 128+N."""
    return 128 - returncode if returncode < 0 else returncode
