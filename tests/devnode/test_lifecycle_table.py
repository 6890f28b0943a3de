"""The container lifecycle table, kubelet's restart rules and the crash backoff."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollway.devnode.lifecycle import (
    TABLE,
    CrashBackoff,
    Effect,
    Event,
    State,
    exit_event,
    exit_reason,
    should_restart,
    signal_exit_code,
    transition,
)


@pytest.mark.parametrize(
    ("policy", "code", "init", "restart"),
    [
        ("Always", 0, False, True),
        ("Always", 1, False, True),
        ("OnFailure", 0, False, False),
        ("OnFailure", 2, False, True),
        ("Never", 1, False, False),
        ("Always", 0, True, False),  # a finished init container is done, whatever the policy
        ("Always", 1, True, True),
        ("Never", 1, True, False),
    ],
)
def test_restart_rules(policy: str, code: int, init: bool, restart: bool) -> None:
    assert should_restart(policy, code, init=init) is restart
    assert exit_event(policy, code, init=init) is (
        Event.EXIT_RESTART if restart else Event.EXIT_FINAL
    )


def test_unknown_policy_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"spec\.restartPolicy 'Sometimes'"):
        should_restart("Sometimes", 0)


def test_crash_loop_path() -> None:
    s, e = transition(State.WAITING, Event.STARTED)
    assert (s, e) == (State.RUNNING, Effect.NONE)
    s, e = transition(s, Event.EXIT_RESTART)
    assert (s, e) == (State.BACKOFF, Effect.SCHEDULE_RESTART)
    s, e = transition(s, Event.BACKOFF_ELAPSED)
    assert (s, e) == (State.WAITING, Effect.SPAWN)


def test_liveness_kill_then_restart_or_stay_down() -> None:
    s, e = transition(State.RUNNING, Event.UNHEALTHY)
    assert (s, e) == (State.KILLING, Effect.SIGTERM)
    assert transition(s, Event.EXIT_RESTART)[0] is State.BACKOFF
    assert transition(s, Event.EXIT_FINAL)[0] is State.DONE


def test_stop_wins_over_everything() -> None:
    assert transition(State.RUNNING, Event.STOP) == (State.STOPPING, Effect.SIGTERM)
    # SIGTERM already went out for the liveness kill: no second signal.
    assert transition(State.KILLING, Event.STOP) == (State.STOPPING, Effect.NONE)
    assert transition(State.STOPPING, Event.EXIT_RESTART) == (State.DONE, Effect.NONE)
    assert transition(State.BACKOFF, Event.STOP)[0] is State.DONE
    assert transition(State.WAITING, Event.STOP)[0] is State.DONE


@given(st.sampled_from(list(State)), st.sampled_from(list(Event)))
def test_table_is_total_and_done_is_final(state: State, event: Event) -> None:
    nxt, effect = transition(state, event)
    if (state, event) not in TABLE:
        assert (nxt, effect) == (state, Effect.NONE)
    if state is State.DONE:
        assert nxt is State.DONE


def test_backoff_follows_kubelet() -> None:
    b = CrashBackoff(base=10, cap=300)
    delays = [b.delay_after_exit(ran_for=1) for _ in range(8)]
    assert delays == [0, 10, 20, 40, 80, 160, 300, 300]
    # A run longer than 2 * cap counts as healthy: the next crash restarts at once.
    assert b.delay_after_exit(ran_for=601) == 0
    assert b.delay_after_exit(ran_for=1) == 10


@given(st.floats(0.01, 50), st.integers(1, 40))
def test_backoff_never_exceeds_cap_and_never_shrinks(base: float, n: int) -> None:
    b = CrashBackoff(base=base, cap=base * 30)
    delays = [b.delay_after_exit(0) for _ in range(n)]
    assert all(0 <= d <= base * 30 for d in delays)
    assert delays == sorted(delays)


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="0 < base <= cap"):
        CrashBackoff(base=0)


def test_exit_codes_and_reasons() -> None:
    assert signal_exit_code(-15) == 143 and signal_exit_code(-9) == 137
    assert signal_exit_code(3) == 3
    assert exit_reason(0) == "Completed" and exit_reason(1) == "Error"
