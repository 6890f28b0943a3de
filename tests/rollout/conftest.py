"""Rollout fixtures: seed plans and a driver that steps the machine on a fake clock."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tollway.config import load
from tollway.rollout import machine, plans
from tollway.rollout.model import Effect, Inputs, Plan, RolloutState

SEED = Path(__file__).resolve().parent.parent / "data" / "seed"


def seed_spec(name: str, kind: str) -> Mapping[str, Any]:
    res = load.load_paths([SEED / name])
    assert res.ok, res.findings
    (found,) = res.resources.of_kind(kind)
    return found.spec


class Driver:
    """Steps a plan like the controller does, recording effects and reasons."""

    def __init__(self, plan: Plan, revision: str = "v1", now: float = 0.0) -> None:
        self.plan = plan
        self.now = now
        self.revision = revision
        self.state: RolloutState = machine.initial_state(plan, revision)
        self.effects: list[Effect] = []
        self.reasons: list[str] = []
        self.analysis: dict[str, str] = {}

    def step(self, **kw: Any) -> str:
        inputs = Inputs(revision=self.revision, analysis=dict(self.analysis), **kw)
        self.state, effects, reason = machine.step(self.state, self.plan, inputs, self.now)
        self.effects += effects
        if reason:
            self.reasons.append(reason)
        return reason

    def advance(self, seconds: float, **kw: Any) -> str:
        self.now += seconds
        return self.step(**kw)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.effects]

    def last_weight(self) -> int | None:
        weights = [e.weight for e in self.effects if e.kind == "set-weight"]
        return weights[-1] if weights else None

    def started_runs(self) -> list[str]:
        return [e.name for e in self.effects if e.kind == "start-analysis"]


@pytest.fixture
def seed14_plan() -> Plan:
    return plans.argo_plan("payment-service", "payments",
                           seed_spec("14-argo-rollout.yaml", "Rollout"))


@pytest.fixture
def seed08_plan() -> Plan:
    return plans.flagger_plan("api", "default", seed_spec("08-flagger-canary.yaml", "Canary"))
