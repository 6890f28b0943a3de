"""The shape every rollout style's machine has: events classified first, then a table.

A style (Argo canary, Argo blue-green, Flagger) gives two pieces of data:

- `PRECEDENCE`: (event, guard) pairs in order. The event of a step is the first whose
  guard holds *and* for which the current phase has a transition, so precedence is data
  (a phase that ignores an event lets the next one through, as the if-chains this
  replaced did).
- `TABLE`: (phase, event) -> Transition(to, action, does): the phases the action may
  leave the rollout in (checked by tests/rollout/test_transition_table.py on every entry
  and over random event sequences) and what it does, in words docs/rollouts.md prints.

Actions are pure: (state, plan, inputs, now) -> (state, effects, reason).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tollway.rollout.model import Effect, Event, Inputs, Phase, Plan, RolloutState

Result = tuple[RolloutState, list[Effect], str]
Handler = Callable[[RolloutState, Plan, Inputs, float], Result]
Guard = Callable[[RolloutState, Plan, Inputs, float], bool]


@dataclass(frozen=True, slots=True)
class Transition:
    to: tuple[Phase, ...]  # every phase the action can end in
    action: Handler
    does: str  # one line for the docs' table


Precedence = tuple[tuple[Event, Guard], ...]
Table = Mapping[tuple[Phase, Event], Transition]


def classify(precedence: Precedence, table: Table, state: RolloutState, plan: Plan,
             inputs: Inputs, now: float) -> Event | None:
    """The step's event: the first in precedence order that the phase handles and whose
    guard holds; None when nothing happened that the phase acts on."""
    for event, guard in precedence:
        if (state.phase, event) in table and guard(state, plan, inputs, now):
            return event
    return None


def command(*names: str) -> Guard:
    """A guard: the step carries one of these commands."""
    return lambda state, plan, inputs, now: inputs.command in names


def always(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> bool:
    return True
