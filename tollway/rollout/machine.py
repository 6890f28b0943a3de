"""The rollout state machine: step(state, plan, inputs, now) -> (state, effects, reason).

Each step first classifies what happened into one Event (commands, the template, runs,
checks, readiness, time), in the style's precedence order, then looks up
(style, phase, event) in the transition table and runs that action. Actions are small
pure functions; the IO shell (controller.py) carries out their effects and feeds back
what it observed. The three styles' tables live in canary.py (Argo canary),
bluegreen.py (Argo blue-green) and flagger.py (Flagger); `TABLE` is all of them, and
docs/rollouts.md prints it (`table_markdown`, kept current by a test).
"""

from __future__ import annotations

from dataclasses import replace

from tollway.rollout import bluegreen, canary, flagger
from tollway.rollout.model import HISTORY_LIMIT, Event, Inputs, Phase, Plan, RolloutState, Style
from tollway.rollout.transitions import Precedence, Result, Table, Transition, classify

STYLES: dict[Style, tuple[Precedence, Table]] = {
    "argo-canary": (canary.PRECEDENCE, canary.TABLE),
    "argo-bluegreen": (bluegreen.PRECEDENCE, bluegreen.TABLE),
    "flagger": (flagger.PRECEDENCE, flagger.TABLE),
}
TABLE: dict[tuple[Style, Phase, Event], Transition] = {
    (style, phase, event): t for style, (_, table) in STYLES.items()
    for (phase, event), t in table.items()}


def initial_state(plan: Plan, revision: str) -> RolloutState:
    """A first sight of a rollout: Argo adopts the current template as stable; Flagger
    starts Initializing (creates the primary)."""
    if plan.style == "flagger":
        return RolloutState(style=plan.style, phase=Phase.INITIALIZING, revision=revision)
    return RolloutState(style=plan.style, phase=Phase.HEALTHY, revision=revision,
                        stable_revision=revision)


def event_of(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Event | None:
    precedence, table = STYLES[plan.style]
    return classify(precedence, table, state, plan, inputs, now)


def step(state: RolloutState, plan: Plan, inputs: Inputs, now: float) -> Result:
    """One decision. Always returns a new state; the reason is "" when nothing happened."""
    state = replace(state, history=list(state.history), header_routes=dict(state.header_routes),
                    mirror_routes=dict(state.mirror_routes))
    event = event_of(state, plan, inputs, now)
    if event is None:
        return state, [], ""
    new, effects, reason = TABLE[(plan.style, state.phase, event)].action(
        state, plan, inputs, now)
    if reason:
        actor = inputs.actor if inputs.command else "controller"
        why = f" ({inputs.why})" if inputs.command and inputs.why else ""
        new.message = reason
        new.history.append({"at": now, "phase": new.phase.value, "step": new.step_index,
                            "weight": new.weight, "reason": reason + why, "actor": actor})
        del new.history[:-HISTORY_LIMIT]
    return new, effects, reason


STYLE_TITLES: dict[Style, str] = {"argo-canary": "Argo canary (Rollout, strategy.canary)",
                                  "argo-bluegreen": "Argo blue-green (Rollout, strategy.blueGreen)",
                                  "flagger": "Flagger (Canary)"}


def table_markdown() -> str:
    """The transition table as docs/rollouts.md shows it: per style, the events in
    precedence order, then one row per (phase, event)."""
    out: list[str] = []
    for style, (precedence, table) in STYLES.items():
        order = [e for e, _ in precedence]
        out += [f"**{STYLE_TITLES[style]}** — events in precedence order: "
                + ", ".join(f"`{e.value}`" for e in order if any(k[1] is e for k in table)),
                "", "| phase | event | next phase | does |", "|---|---|---|---|"]
        phases = list(dict.fromkeys(p for p, _ in table))
        for phase in phases:
            for event in order:
                t = table.get((phase, event))
                if t is not None:
                    to = " / ".join(p.value for p in t.to)
                    out.append(f"| {phase.value} | {event.value} | {to} | {t.does} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def wants_check(state: RolloutState, plan: Plan, now: float, ready: bool = True) -> bool:
    """Flagger: is a metric check due at this tick? (the controller measures, then steps)

    Not while the canary is not ready, has yet to be routed to, or skips its analysis:
    Flagger checks the canary Deployment before it runs any check. Nor once failedChecks
    has reached the threshold: Flagger rolls back before it runs the tick's analysis
    (scheduler.go advanceCanary), so no metric is queried on the tick that rolls back."""
    return (plan.style == "flagger" and plan.flagger is not None
            and ready and not state.awaiting_ready and not plan.flagger.skip_analysis
            and state.failed_checks < plan.flagger.threshold
            and state.phase in (Phase.PROGRESSING, Phase.WAITING_PROMOTION)
            and now >= state.next_tick)


def wake_at(state: RolloutState, plan: Plan) -> float | None:
    """The next time the machine needs a step without any new input."""
    if plan.style == "flagger":
        if state.phase in (Phase.PROGRESSING, Phase.WAITING_PROMOTION, Phase.PROMOTING,
                           Phase.FINALISING):
            return state.next_tick
        return None
    return state.pause_until if state.paused else None


def write_docs(path: str = "docs/rollouts.md") -> bool:
    """Replace the table between the markers in docs/rollouts.md; True when it changed."""
    from pathlib import Path

    doc = Path(path)
    text = doc.read_text()
    begin, end = "<!-- transition table: begin -->", "<!-- transition table: end -->"
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    new = f"{head}{begin}\n{table_markdown()}{end}{tail}"
    if new != text:
        doc.write_text(new)
    return new != text


if __name__ == "__main__":  # python -m tollway.rollout.machine --write-docs
    import sys

    if sys.argv[1:] == ["--write-docs"]:
        print("docs/rollouts.md:", "updated" if write_docs() else "current")
