"""One `Style` per kind of rollout: Argo canary, Argo blue-green, Flagger.

Everything the controller decides that differs by kind, as pure functions of what it
read: the plan, the template being rolled out, the workloads whose readiness matters,
readiness itself, the resources the state implies (with the delayed scale-downs still
due) and the status shape. The IO shell (controller.py) reads, measures, steps the
machine, applies and persists without branching on the kind; a Kubernetes reconciler
can call the same functions with what it reads from the API server.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from tollway.config.resource import Resource, ResourceSet
from tollway.rollout import plans, status, traffic
from tollway.rollout import replicas as sizing
from tollway.rollout.model import Plan, RolloutState

Key = tuple[str, str]  # (namespace, workload)
Manifest = dict[str, Any]


def copy_json(value: Any) -> dict[str, Any]:
    """A plain deep copy (specs hold only JSON values)."""
    out: dict[str, Any] = json.loads(json.dumps(value))
    return out


@dataclass(slots=True)
class Sizing:
    """The replica bookkeeping the record keeps between syncs."""

    replicas: dict[str, int] = field(default_factory=dict)  # basic canary: revision -> count
    scale_down: dict[str, float] = field(default_factory=dict)  # revision -> until (wall)
    target_replicas: int = 0  # Flagger: the target's own replicas (we scale it to zero)


@dataclass(frozen=True, slots=True)
class Desired:
    manifests: list[Manifest]
    scale_down: dict[str, float]  # what is still to be scaled down later


class Style(Protocol):
    name: str
    failed_phase: str  # the phase a spec we cannot run shows

    def plan(self, res: Resource) -> Plan: ...

    def template(self, res: Resource, current: ResourceSet) -> dict[str, Any] | str: ...

    def subjects(self, res: Resource, state: RolloutState) -> tuple[Key, Key]: ...

    def workloads(self, res: Resource, state: RolloutState, sz: Sizing) -> list[str]: ...

    def observe(self, res: Resource, current: ResourceSet, sz: Sizing) -> Sizing: ...

    def readiness(self, res: Resource, plan: Plan, state: RolloutState, revision: str,
                  avail: Mapping[str, int] | None, sz: Sizing) -> tuple[bool, bool]: ...

    def after_step(self, res: Resource, plan: Plan, state: RolloutState,
                   current: ResourceSet, avail: Mapping[str, int] | None,
                   sz: Sizing) -> Sizing: ...

    def desired(self, res: Resource, plan: Plan, state: RolloutState,
                templates: Mapping[str, Mapping[str, Any]], current: ResourceSet,
                sz: Sizing, wall: float) -> Desired: ...

    def status(self, state: RolloutState, plan: Plan, runs: Mapping[str, Mapping[str, Any]],
               checks: list[dict[str, Any]], at: float) -> dict[str, Any]: ...


# ---- Argo (both strategies) ------------------------------------------------------------------


class _Argo:
    failed_phase = "Degraded"

    def plan(self, res: Resource) -> Plan:
        return plans.argo_plan(res.name, res.namespace, res.spec, {
            "labels": dict(res.labels), "annotations": dict(res.annotations),
            "uid": (res.raw.get("metadata") or {}).get("uid", "")})

    def template(self, res: Resource, current: ResourceSet) -> dict[str, Any] | str:
        tmpl = res.spec.get("template")
        if not tmpl:
            return "spec.template is required (workloadRef is not supported)"
        return copy_json(tmpl)

    def subjects(self, res: Resource, state: RolloutState) -> tuple[Key, Key]:
        return ((res.namespace, f"{res.name}-{state.revision}"),
                (res.namespace, f"{res.name}-{state.stable_revision}"))

    def workloads(self, res: Resource, state: RolloutState, sz: Sizing) -> list[str]:
        revisions = dict.fromkeys([state.revision, state.stable_revision, *sz.replicas])
        return [f"{res.name}-{h}" for h in revisions if h]

    def observe(self, res: Resource, current: ResourceSet, sz: Sizing) -> Sizing:
        return sz

    def after_step(self, res: Resource, plan: Plan, state: RolloutState,
                   current: ResourceSet, avail: Mapping[str, int] | None,
                   sz: Sizing) -> Sizing:
        return sz

    def status(self, state: RolloutState, plan: Plan, runs: Mapping[str, Mapping[str, Any]],
               checks: list[dict[str, Any]], at: float) -> dict[str, Any]:
        return status.argo_status(state, plan, runs, at)


def delayed_scale_downs(res: Resource, state: RolloutState,
                        templates: Mapping[str, Mapping[str, Any]],
                        scale_down: Mapping[str, float], wall: float
                        ) -> tuple[list[Manifest], dict[str, float]]:
    """Old replica sets kept running for their scaleDownDelay (Argo keeps the previous
    stable, and an aborted canary, up for a while): the ones still due, and the entries
    left (an expired one, the stable itself or one with no template is dropped)."""
    total = int(res.spec.get("replicas", 1) or 1)
    out: list[Manifest] = []
    left: dict[str, float] = {}
    for h, until in scale_down.items():
        if until <= wall or h == state.stable_revision or h not in templates:
            continue
        left[h] = until
        if h != state.revision or state.abort:
            out.append(traffic.replica_set(res, templates[h], h, total))
    return out, left


class ArgoCanary(_Argo):
    """A Rollout with strategy.canary: with trafficRouting (weights in the routes) or a
    basic canary (the weight is a share of replicas, stepped by maxSurge/maxUnavailable)."""

    name = "argo-canary"

    def readiness(self, res: Resource, plan: Plan, state: RolloutState, revision: str,
                  avail: Mapping[str, int] | None, sz: Sizing) -> tuple[bool, bool]:
        """Enough canary replicas for the next weight (a basic canary: every set at the
        step's counts, all available); True when readiness cannot be observed."""
        if avail is None:
            return True, True
        nxt = [s.weight or 0 for s in plan.steps[state.step_index:] if s.kind == "setWeight"]
        weight = max([state.weight, state.scale_weight, *nxt[:1]])
        if traffic.is_basic_canary(res.spec, plan):
            try:
                b = sizing.bounds(res.spec)
            except sizing.StrategyError:
                return False, True
            ready = _ready_counts(sz.replicas, res.name, avail)
            return _at_counts(b, weight, state, revision, sz.replicas, ready), True
        total = int(res.spec.get("replicas", 1) or 1)
        needed = max(1, math.ceil(total * weight / 100))
        if state.canary_scale.get("replicas") is not None:
            needed = int(state.canary_scale["replicas"])
        return avail.get(f"{res.name}-{revision}", 0) >= needed, True

    def after_step(self, res: Resource, plan: Plan, state: RolloutState,
                   current: ResourceSet, avail: Mapping[str, int] | None,
                   sz: Sizing) -> Sizing:
        """A basic canary's next replica counts: one bounded step on what is ready now
        (without readiness, as many steps as make no further change)."""
        if not traffic.is_basic_canary(res.spec, plan):
            return sz
        counts = dict(sz.replicas)
        if not counts:  # first sight or a record from before: adopt what runs
            owner = f"{res.kind}/{res.namespace}/{res.name}"
            for d in current.of_kind("Deployment"):
                h = d.labels.get(traffic.HASH_LABEL)
                if d.annotations.get(traffic.OWNER) == owner and h:
                    counts[h] = int(d.spec.get("replicas", 0) or 0)
        try:
            b = sizing.bounds(res.spec)
        except sizing.StrategyError:
            return Sizing(counts, sz.scale_down, sz.target_replicas)  # the status says why
        ready = _ready_counts(counts, res.name, avail)
        weight = 0 if state.abort else max(state.weight, state.scale_weight)
        if avail is None:
            counts = sizing.settle(b, weight, state.revision, state.stable_revision, counts)
        else:
            counts = sizing.step_sets(b, weight, state.revision, state.stable_revision,
                                      counts, ready)
        return Sizing(counts, sz.scale_down, sz.target_replicas)

    def desired(self, res: Resource, plan: Plan, state: RolloutState,
                templates: Mapping[str, Mapping[str, Any]], current: ResourceSet,
                sz: Sizing, wall: float) -> Desired:
        if traffic.is_basic_canary(res.spec, plan):
            # sets are sized by the stepped counts, the old ones included: no delayed copies
            return Desired(traffic.argo_resources(res, plan, state, templates, current,
                                                  counts=sz.replicas), {})
        out = traffic.argo_resources(res, plan, state, templates, current)
        more, left = delayed_scale_downs(res, state, templates, sz.scale_down, wall)
        return Desired(out + more, left)


def _ready_counts(spec: Mapping[str, int], name: str,
                  avail: Mapping[str, int] | None) -> dict[str, int]:
    return ({h: min(n, avail.get(f"{name}-{h}", 0)) for h, n in spec.items()}
            if avail is not None else dict(spec))


def _at_counts(b: sizing.Bounds, weight: int, state: RolloutState, revision: str,
               counts: Mapping[str, int], ready: Mapping[str, int]) -> bool:
    """Every set at the counts for `weight` with all replicas ready; `revision` is the
    template now (a new one has no replicas yet, whatever the state still says)."""
    stable = state.stable_revision
    if revision == stable:
        return True
    older = [sizing.Counts(n, ready[h]) for h, n in counts.items() if h not in (revision, stable)]
    return sizing.at_desired(b, weight,
                             sizing.Counts(counts.get(revision, 0), ready.get(revision, 0)),
                             sizing.Counts(counts.get(stable, 0), ready.get(stable, 0)),
                             older)


class ArgoBlueGreen(_Argo):
    """A Rollout with strategy.blueGreen: a preview replica set, then the activeService
    switch."""

    name = "argo-bluegreen"

    def readiness(self, res: Resource, plan: Plan, state: RolloutState, revision: str,
                  avail: Mapping[str, int] | None, sz: Sizing) -> tuple[bool, bool]:
        """The preview replica set has all its replicas (previewReplicaCount, else the
        Rollout's replicas) ready."""
        if avail is None or plan.bluegreen is None:
            return True, True
        total = int(res.spec.get("replicas", 1) or 1)
        bg = plan.bluegreen
        needed = total if bg.preview_replicas is None else int(bg.preview_replicas)
        return avail.get(f"{res.name}-{revision}", 0) >= needed, True

    def desired(self, res: Resource, plan: Plan, state: RolloutState,
                templates: Mapping[str, Mapping[str, Any]], current: ResourceSet,
                sz: Sizing, wall: float) -> Desired:
        out = traffic.bluegreen_resources(res, plan, state, templates, current)
        more, left = delayed_scale_downs(res, state, templates, sz.scale_down, wall)
        return Desired(out + more, left)


# ---- Flagger ----------------------------------------------------------------------------------


class Flagger:
    """A Canary: the target Deployment, its `-primary` copy, the canary/primary Services."""

    name = "flagger"
    failed_phase = "Failed"

    def plan(self, res: Resource) -> Plan:
        return plans.flagger_plan(res.name, res.namespace, res.spec)

    @staticmethod
    def target(res: Resource) -> str:
        return str((res.spec.get("targetRef") or {}).get("name", res.name))

    def template(self, res: Resource, current: ResourceSet) -> dict[str, Any] | str:
        target = self.target(res)
        dep = current.get("Deployment", res.namespace, target)
        if dep is None:
            return f"targetRef Deployment {target} not found in namespace {res.namespace}"
        return copy_json(dep.spec.get("template") or {})

    def subjects(self, res: Resource, state: RolloutState) -> tuple[Key, Key]:
        target = self.target(res)
        return (res.namespace, target), (res.namespace, f"{target}-primary")

    def workloads(self, res: Resource, state: RolloutState, sz: Sizing) -> list[str]:
        target = self.target(res)
        return [target, f"{target}-primary"]

    def observe(self, res: Resource, current: ResourceSet, sz: Sizing) -> Sizing:
        """The target's own replicas, last seen above zero (zero is what we set it to
        between analyses; scaling up restores this count)."""
        dep = current.get("Deployment", res.namespace, self.target(res))
        n = dep.spec.get("replicas", 1) if dep is not None else None
        if isinstance(n, int) and n > 0:
            return Sizing(sz.replicas, sz.scale_down, n)
        return sz

    def readiness(self, res: Resource, plan: Plan, state: RolloutState, revision: str,
                  avail: Mapping[str, int] | None, sz: Sizing) -> tuple[bool, bool]:
        """The target, and the primary, have at least their ready threshold
        (canary/primaryReadyThreshold, 100%) of replicas ready."""
        if avail is None or plan.flagger is None:
            return True, True
        fa = plan.flagger
        target = self.target(res)
        size = sz.target_replicas or 1
        return (avail.get(target, 0) >= max(1, size * fa.canary_ready_threshold // 100),
                avail.get(f"{target}-primary", 0)
                >= max(1, size * fa.primary_ready_threshold // 100))

    def after_step(self, res: Resource, plan: Plan, state: RolloutState,
                   current: ResourceSet, avail: Mapping[str, int] | None,
                   sz: Sizing) -> Sizing:
        return sz

    def desired(self, res: Resource, plan: Plan, state: RolloutState,
                templates: Mapping[str, Mapping[str, Any]], current: ResourceSet,
                sz: Sizing, wall: float) -> Desired:
        if not state.stable_revision:
            return Desired([], dict(sz.scale_down))
        return Desired(traffic.flagger_resources(res, plan, state, templates, current,
                                                 sz.target_replicas), dict(sz.scale_down))

    def status(self, state: RolloutState, plan: Plan, runs: Mapping[str, Mapping[str, Any]],
               checks: list[dict[str, Any]], at: float) -> dict[str, Any]:
        return status.flagger_status(state, plan, checks, at)


ARGO_CANARY, ARGO_BLUEGREEN, FLAGGER = ArgoCanary(), ArgoBlueGreen(), Flagger()


def style_for(res: Resource) -> Style:
    """Canary → Flagger; a Rollout with strategy.blueGreen → Argo blue-green; any other
    Rollout → Argo canary (no steps = a rolling update)."""
    if res.kind == "Canary":
        return FLAGGER
    if "blueGreen" in (res.spec.get("strategy") or {}):
        return ARGO_BLUEGREEN
    return ARGO_CANARY
