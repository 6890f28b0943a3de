"""The rollout machine's transition table, walked.

Every (style, phase, event) entry must be reached by a seeded random walk over the
machine's inputs (commands, templates, analysis run phases, Flagger checks and gates,
readiness, time), and every step must end in one of the phases its entry declares.
Hypothesis does the same over short event sequences, with the invariants a status
reader relies on. docs/rollouts.md prints the table; a test keeps it current.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tollway.rollout import machine, plans
from tollway.rollout.model import Event, Inputs, Phase, Plan, RolloutState

DOC = Path(__file__).resolve().parents[2] / "docs" / "rollouts.md"
BEGIN, END = "<!-- transition table: begin -->", "<!-- transition table: end -->"

_ANALYSIS = {"templates": [{"templateName": "t"}]}
PLANS: list[Plan] = [
    plans.argo_plan("web", "default", {"strategy": {"canary": {
        "analysis": _ANALYSIS,
        "steps": [{"setWeight": 20}, {"pause": {"duration": "10s"}}, {"analysis": _ANALYSIS},
                  {"setWeight": 50}, {"pause": {}}, {"setWeight": 80}]}}}),
    plans.argo_plan("web", "default", {"strategy": {"canary": {"steps": [{"setWeight": 50}]}}}),
    plans.argo_plan("web", "default", {"strategy": {"blueGreen": {
        "activeService": "web", "prePromotionAnalysis": _ANALYSIS,
        "postPromotionAnalysis": _ANALYSIS, "autoPromotionSeconds": 10}}}),
    plans.argo_plan("web", "default", {"strategy": {"blueGreen": {
        "activeService": "web", "autoPromotionEnabled": False}}}),
    plans.argo_plan("web", "default", {"strategy": {"blueGreen": {"activeService": "web"}}}),
    plans.flagger_plan("api", "default", {"analysis": {
        "interval": "10s", "threshold": 2, "stepWeight": 25, "maxWeight": 50}}),
    plans.flagger_plan("api", "default", {"analysis": {
        "interval": "10s", "threshold": 2, "iterations": 2, "match": [{"headers": {}}]}}),
    plans.flagger_plan("api", "default", {"analysis": {
        "interval": "10s", "threshold": 3, "iterations": 2, "mirror": True}}),
    plans.flagger_plan("api", "default", {"skipAnalysis": True, "analysis": {
        "interval": "10s", "stepWeight": 50}}),
]
COMMANDS = [None] * 8 + ["promote", "promote-full", "abort", "retry", "pause", "resume",
                         "set-weight"]
RUN_PHASES = ["Running", "Running", "Successful", "Inconclusive", "Failed", "Error"]
GATES = ["confirm-rollout", "confirm-promotion", "confirm-traffic-increase", "rollback"]
STEPS = [0.0, 0.5, 1.0, 5.0, 10.0, 11.0, 61.0, 700.0]


@dataclass
class Move:
    """One step's inputs, as choices (so random and hypothesis share the generator)."""

    revision: int  # 0: the state's, 1: the stable one, 2+: a new one
    command: int
    runs: tuple[int, int]
    check: int  # 0 none, 1 passed, 2 failed
    gates: tuple[int, ...]  # per gate: 0 unset, 1 True, 2 False
    ready: bool
    primary_ready: bool
    weight: int
    dt: int


def _inputs(m: Move, state: RolloutState, serial: int) -> Inputs:
    revision = {0: state.revision, 1: state.stable_revision or state.revision}.get(
        m.revision, f"r{serial % 4}")
    analysis = {name: RUN_PHASES[i % len(RUN_PHASES)]
                for name, i in zip((state.step_run, state.background_run), m.runs, strict=True)
                if name}
    check = (None, (True, "ok"), (False, "bad"))[m.check % 3]
    gates = {g: v == 1 for g, v in zip(GATES, m.gates, strict=True) if v}
    cmd = COMMANDS[m.command % len(COMMANDS)]
    return Inputs(revision=revision, command=cmd, actor="test" if cmd else "",
                  analysis=analysis, check=check, gates=gates, ready=m.ready,
                  primary_ready=m.primary_ready,
                  weight=m.weight if cmd == "set-weight" else None)


def _random_move(rng: random.Random, prev: Move | None = None) -> Move:
    """Webhooks and readiness hold for a while in the real world: most moves keep the
    previous move's gates and readiness (so WaitingPromotion and deadlines are reached)."""
    m = _fresh_move(rng)
    if prev is not None and rng.random() < 0.7:
        m.gates, m.ready, m.primary_ready = prev.gates, prev.ready, prev.primary_ready
    return m


def _moves_for(rng: random.Random, n: int) -> list[Move]:
    out: list[Move] = []
    for _ in range(n):
        out.append(_random_move(rng, out[-1] if out else None))
    return out


def _fresh_move(rng: random.Random) -> Move:
    return Move(rng.choice([0] * 7 + [1, 2, 3]), rng.randrange(len(COMMANDS)),
                (rng.randrange(6), rng.randrange(6)), rng.randrange(3),
                (*(rng.choice([0, 0, 1, 2, 2, 2]) for _ in GATES[:3]),  # confirm-*: sticky
                 rng.choice([0] * 19 + [1])),  # rollback: rare, or nothing would progress
                rng.random() < 0.8, rng.random() < 0.8, rng.randrange(101),
                rng.randrange(len(STEPS)))


def _walk(plan: Plan, moves: list[Move], seen: set[tuple[Any, ...]] | None = None) -> None:
    state, now = machine.initial_state(plan, "r0"), 0.0
    for serial, m in enumerate(moves):
        now += STEPS[m.dt % len(STEPS)]
        inputs = _inputs(m, state, serial)
        event = machine.event_of(state, plan, inputs, now)
        before = state.phase
        state, effects, reason = machine.step(state, plan, inputs, now)
        if event is None:
            assert state.phase is before and effects == [] and reason == ""
            continue
        t = machine.TABLE[(plan.style, before, event)]
        assert state.phase in t.to, (plan.style, before, event, state.phase, reason)
        if seen is not None:
            seen.add((plan.style, before, event))
        _invariants(state, plan)


def _invariants(state: RolloutState, plan: Plan) -> None:
    assert 0 <= state.weight <= 100
    assert state.paused == (state.phase is Phase.PAUSED) or plan.style == "flagger"
    if state.phase in (Phase.HEALTHY, Phase.DEGRADED, Phase.FAILED):
        assert state.weight == 0 or plan.style == "argo-bluegreen"
    if state.abort:
        assert state.phase in (Phase.DEGRADED, Phase.FAILED)
    assert len(state.history) <= 200


def test_a_seeded_walk_reaches_every_table_entry_and_each_ends_where_declared() -> None:
    rng = random.Random(18)
    seen: set[tuple[Any, ...]] = set()
    for plan in PLANS:
        for _ in range(60):
            _walk(plan, _moves_for(rng, 200), seen)
    missing = sorted(str(k) for k in set(machine.TABLE) - seen)
    assert not missing, "table entries no walk reached:\n" + "\n".join(missing)


_moves = st.builds(Move, st.integers(0, 3), st.integers(0, len(COMMANDS) - 1),
                   st.tuples(st.integers(0, 5), st.integers(0, 5)), st.integers(0, 2),
                   st.tuples(*[st.integers(0, 2) for _ in GATES]), st.booleans(),
                   st.booleans(), st.integers(0, 100), st.integers(0, len(STEPS) - 1))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(range(len(PLANS))), st.lists(_moves, max_size=40))
def test_any_event_sequence_keeps_to_the_table(which: int, moves: list[Move]) -> None:
    _walk(PLANS[which], moves)


def test_every_phase_handles_what_users_send() -> None:
    """No rollout is stuck on a command: where a style rolls, abort is in the table."""
    for style, (_, table) in machine.STYLES.items():
        rolling = {p for p, _ in table} & {Phase.PROGRESSING, Phase.PAUSED,
                                           Phase.WAITING_PROMOTION}
        for phase in rolling:
            assert (phase, Event.ABORT) in table, (style, phase)


def test_docs_print_the_current_table() -> None:
    text = DOC.read_text()
    assert BEGIN in text and END in text, f"{DOC} lacks the table markers"
    shown = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert shown == machine.table_markdown().strip(), (
        "docs/rollouts.md's transition table is stale: regenerate it with "
        "`python -m tollway.rollout.machine --write-docs`")
