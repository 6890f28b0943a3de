"""The IO shell: one worker per Rollout/Canary, carrying out what the machine decides.

Each `sync` reads the resource from the store, takes the measurements that are due,
asks the machine for a decision, carries out its effects (analysis runs, webhooks, load
tests) and applies the resources the new state implies (replica sets, routes, subsets)
through the store with actor "rollout" and the decision as the reason. Then it persists
the record and writes an Argo- or Flagger-shaped status. Time comes from the injected
clock, so tests drive a worker on a FakeClock.

Readiness (how many replicas of each replica set are ready) comes from `ready_counts`
(`tollway up` passes its supervisor's), else from probing the sidecars' `/ready`; with
neither (tests on a FakeClock) every replica counts as ready at once. A basic canary's
replica counts take one maxSurge/maxUnavailable-bounded step per sync on that readiness.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from tollway.config import load
from tollway.config.resource import Resource, ResourceSet
from tollway.control.store import ConfigStore, Key
from tollway.kit.clock import Clock
from tollway.rollout import hooks, machine, measure, plans, status, traffic
from tollway.rollout import replicas as sizing
from tollway.rollout.analysis import runs
from tollway.rollout.analysis.providers.mesh import MeshMetrics, Target
from tollway.rollout.model import Effect, Inputs, Plan, RolloutState
from tollway.rollout.persist import StateFile

log = logging.getLogger(__name__)
TICK = 1.0
KEEP_RUNS = 6
ReadyCounts = Callable[[], Mapping[tuple[str, str], int]]  # (namespace, workload) -> ready


def _copy(value: Any) -> dict[str, Any]:
    """A plain deep copy (specs hold only JSON values)."""
    out: dict[str, Any] = json.loads(json.dumps(value))
    return out


@dataclass(slots=True)
class Record:
    """Everything persisted for one rollout."""

    state: RolloutState | None = None
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> run + templates
    judges: dict[str, dict[str, Any]] = field(default_factory=dict)
    scale_down: dict[str, float] = field(default_factory=dict)  # revision -> until (wall)
    checks: list[dict[str, Any]] = field(default_factory=list)
    restarted_at: str = ""
    replicas: dict[str, int] = field(default_factory=dict)  # basic canary: revision -> count
    target_replicas: int = 0  # Flagger: the target's own replicas (we scale it to zero)

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state.to_dict() if self.state else None,
                "templates": self.templates, "runs": self.runs, "judges": self.judges,
                "scale_down": self.scale_down, "checks": self.checks[-50:],
                "restarted_at": self.restarted_at, "replicas": self.replicas,
                "target_replicas": self.target_replicas}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Record:
        st = raw.get("state")
        return cls(RolloutState.from_dict(st) if st else None, dict(raw.get("templates", {})),
                   dict(raw.get("runs", {})), dict(raw.get("judges", {})),
                   dict(raw.get("scale_down", {})), list(raw.get("checks", [])),
                   str(raw.get("restarted_at", "")),
                   {str(k): int(v) for k, v in (raw.get("replicas") or {}).items()},
                   int(raw.get("target_replicas", 0) or 0))


class Worker:
    """One rollout (kind Rollout or Canary) and its persisted record."""

    def __init__(self, key: Key, store: ConfigStore, clock: Clock, state_file: StateFile,
                 client: httpx.AsyncClient, mesh: MeshMetrics, prometheus_url: str | None,
                 loadtester: hooks.LoadTester,
                 targets: Callable[[], list[Target]] | None = None,
                 ready_counts: ReadyCounts | None = None,
                 error_retry: float = runs.ERROR_RETRY_SECONDS) -> None:
        self.targets = targets
        self.error_retry = error_retry  # seconds before measuring again after an Error
        self.ready_counts = ready_counts
        self.key = key
        self.store = store
        self.clock = clock
        self.file = state_file
        self.client = client
        self.mesh = mesh
        self.prometheus_url = prometheus_url
        self.loadtester = loadtester
        saved = state_file.load()
        self.record = Record.from_dict(saved) if saved else Record()
        self.commands: deque[tuple[str, str, str, int | None]] = deque()
        self.plan: Plan | None = None
        self.error = ""

    @property
    def kind(self) -> str:
        return self.key[0]

    def command(self, cmd: str, actor: str, why: str, weight: int | None = None) -> None:
        self.commands.append((cmd, actor, why, weight))

    # ---- one pass ------------------------------------------------------------------------

    async def sync(self) -> float:
        """Decide and act once; returns the monotonic time of the next wanted sync."""
        now = self.clock.monotonic()
        res = self.store.get(self.key)
        if res is None:
            return now + TICK
        current = self.store.current()
        try:
            plan = (plans.flagger_plan if self.kind == "Canary" else plans.argo_plan)(
                res.name, res.namespace, res.spec)
        except plans.PlanError as exc:
            self._fail_status(res, str(exc))
            return now + TICK
        self.plan = plan
        template = self._template(res, current)
        if template is None:
            return now + TICK
        revision = traffic.template_hash(template)
        self.record.templates.setdefault(revision, template)
        rec = self.record
        if rec.state is None:
            rec.state = machine.initial_state(plan, revision)
        state = rec.state
        self._observe_target(res, current)
        ctx = self._context(res, state)
        active = self._runs(current, res.namespace)
        await self._measure(ctx, active, now)
        avail = await self._availability(res, self._workloads(res, state))
        ready, primary_ready = self._ready(res, plan, state, revision, avail)
        check, gates = await self._flagger_inputs(ctx, res, plan, state, current, now, ready)
        cmd, actor, why, weight = (self.commands.popleft() if self.commands
                                   else (None, "", "", None))
        if cmd == "restart":
            rec.restarted_at = str(self.clock.wall())
            cmd = None
        inputs = Inputs(revision=revision, command=cmd, actor=actor, why=why,
                        analysis={n: r.phase.value for n, r in active.items()},
                        check=check, gates=gates, ready=ready, weight=weight,
                        primary_ready=primary_ready)
        new, effects, reason = machine.step(state, plan, inputs, now)
        rec.state = new
        await self._effects(effects, active, current, res, now)
        if traffic.is_basic_canary(res.spec, plan):
            self._step_counts(res, new, current, avail)
        keep = list(active)[-KEEP_RUNS:]  # finished runs of old revisions age out
        rec.runs = {n: {**runs.run_to_dict(active[n]),
                        **{k: rec.runs.get(n, {}).get(k, []) for k in ("templates", "dry_run")}}
                    for n in keep}
        rec.judges = {k: v for k, v in ctx.judges.items() if k.split("/")[0] in rec.runs}
        self._apply(res, plan, new, current, reason)
        self._prune_templates(new)
        self.file.save(rec.to_dict())
        self._status(res, plan, new, active)
        if reason:
            log.info("%s/%s: %s", res.kind, res.name, reason)
            await self._event_hooks(res, plan, new, reason)
        wakes = [now + TICK] + [t for t in (machine.wake_at(new, plan),) if t is not None]
        wakes += [t for r in active.values()
                  if (t := runs.wake_at(r, self.error_retry)) is not None]
        return max(min(wakes), now + 0.05)

    # ---- inputs --------------------------------------------------------------------------

    def _template(self, res: Resource, current: ResourceSet) -> dict[str, Any] | None:
        if self.kind == "Rollout":
            tmpl = res.spec.get("template")
            if not tmpl:
                self._fail_status(res, "spec.template is required (workloadRef is not supported)")
                return None
            return _copy(tmpl)
        target = str((res.spec.get("targetRef") or {}).get("name", res.name))
        dep = current.get("Deployment", res.namespace, target)
        if dep is None:
            self._fail_status(res, f"targetRef Deployment {target} not found in namespace "
                                   f"{res.namespace}")
            return None
        return _copy(dep.spec.get("template") or {})

    def _context(self, res: Resource, state: RolloutState) -> measure.Context:
        if self.kind == "Canary":
            target = str((res.spec.get("targetRef") or {}).get("name", res.name))
            canary, stable = (res.namespace, target), (res.namespace, f"{target}-primary")
        else:
            canary = (res.namespace, f"{res.name}-{state.revision}")
            stable = (res.namespace, f"{res.name}-{state.stable_revision}")
        return measure.Context(self.client, self.mesh, self.prometheus_url, canary, stable,
                               dict(self.record.judges))

    def _runs(self, current: ResourceSet, namespace: str) -> dict[str, runs.AnalysisRun]:
        out = {}
        for name, raw in self.record.runs.items():
            templates = tuple(raw.get("templates", []))
            try:
                metrics, _ = measure.metrics_for(templates, namespace, current,
                                                 tuple(raw.get("dry_run", [])),
                                                 dict(raw.get("args") or {}))
            except measure.DryRunError:  # the run ended in Error when it started
                metrics, _ = measure.metrics_for(templates, namespace, current)
            out[name] = runs.run_from_dict(raw, metrics)
        return out

    # ---- readiness ------------------------------------------------------------------------

    def _target(self, res: Resource) -> str:
        return str((res.spec.get("targetRef") or {}).get("name", res.name))

    def _observe_target(self, res: Resource, current: ResourceSet) -> None:
        """Flagger: remember the target's own replicas, last seen above zero (zero is
        what we set it to between analyses; scaling up restores this count)."""
        if self.kind != "Canary":
            return
        dep = current.get("Deployment", res.namespace, self._target(res))
        n = dep.spec.get("replicas", 1) if dep is not None else None
        if isinstance(n, int) and n > 0:
            self.record.target_replicas = n

    def _workloads(self, res: Resource, state: RolloutState) -> list[str]:
        if self.kind == "Canary":
            target = self._target(res)
            return [target, f"{target}-primary"]
        revisions = dict.fromkeys([state.revision, state.stable_revision, *self.record.replicas])
        return [f"{res.name}-{h}" for h in revisions if h]

    async def _availability(self, res: Resource, workloads: list[str]) -> dict[str, int] | None:
        """Ready replicas per workload; None when nothing can be observed."""
        if self.ready_counts is not None:
            counts = self.ready_counts()
            return {w: int(counts.get((res.namespace, w), 0)) for w in workloads}
        if self.targets is None:
            return None
        wanted = set(workloads)
        admins = [(a, labels["workload"]) for a, labels in self.targets()
                  if labels.get("workload") in wanted
                  and labels.get("namespace", res.namespace) == res.namespace]
        answers = await asyncio.gather(*(self._probe(a) for a, _ in admins))
        out = dict.fromkeys(workloads, 0)
        for (_, workload), up in zip(admins, answers, strict=True):
            out[workload] += up
        return out

    async def _probe(self, admin: str) -> bool:
        try:
            resp = await self.client.get(f"http://{admin}/ready", timeout=1.0)
        except httpx.HTTPError:
            return False
        return resp.status_code == 200

    def _ready(self, res: Resource, plan: Plan, state: RolloutState, revision: str,
               avail: dict[str, int] | None) -> tuple[bool, bool]:
        """(canary ready, primary ready) as the machine needs them; both True when
        readiness cannot be observed.

        Argo: enough canary replicas for the next weight (a basic canary: every set at the
        step's counts, all available). Flagger: the target, and the primary, have at least
        their ready threshold (canary/primaryReadyThreshold, 100%) of replicas ready."""
        if avail is None:
            return True, True
        if plan.flagger is not None:
            fa = plan.flagger
            target = self._target(res)
            size = self.record.target_replicas or 1
            return (avail.get(target, 0) >= max(1, size * fa.canary_ready_threshold // 100),
                    avail.get(f"{target}-primary", 0)
                    >= max(1, size * fa.primary_ready_threshold // 100))
        nxt = [s.weight or 0 for s in plan.steps[state.step_index:] if s.kind == "setWeight"]
        weight = max([state.weight, state.scale_weight, *nxt[:1]])
        if traffic.is_basic_canary(res.spec, plan):
            try:
                b = sizing.bounds(res.spec)
            except sizing.StrategyError:
                return False, True
            return self._at_counts(res, b, weight, state, revision, avail), True
        total = int(res.spec.get("replicas", 1) or 1)
        needed = max(1, math.ceil(total * weight / 100))
        if state.canary_scale.get("replicas") is not None:
            needed = int(state.canary_scale["replicas"])
        if plan.bluegreen is not None:
            needed = (total if plan.bluegreen.preview_replicas is None
                      else int(plan.bluegreen.preview_replicas))
        return avail.get(f"{res.name}-{revision}", 0) >= needed, True

    def _sets(self, res: Resource, state: RolloutState, avail: Mapping[str, int] | None
              ) -> tuple[str, str, dict[str, int], dict[str, int]]:
        """(canary, stable, spec counts, ready counts) of a basic canary's replica sets."""
        spec = dict(self.record.replicas)
        ready = ({h: min(n, avail.get(f"{res.name}-{h}", 0)) for h, n in spec.items()}
                 if avail is not None else dict(spec))
        return state.revision, state.stable_revision, spec, ready

    def _at_counts(self, res: Resource, b: sizing.Bounds, weight: int, state: RolloutState,
                   revision: str, avail: Mapping[str, int]) -> bool:
        """Every set at the counts for `weight` with all replicas ready; `revision` is the
        template now (a new one has no replicas yet, whatever the state still says)."""
        _, stable, spec, ready = self._sets(res, state, avail)
        canary = revision
        if canary == stable:
            return True
        older = [sizing.Counts(n, ready[h]) for h, n in spec.items() if h not in (canary, stable)]
        return sizing.at_desired(b, weight,
                                 sizing.Counts(spec.get(canary, 0), ready.get(canary, 0)),
                                 sizing.Counts(spec.get(stable, 0), ready.get(stable, 0)),
                                 older)

    def _step_counts(self, res: Resource, state: RolloutState, current: ResourceSet,
                     avail: Mapping[str, int] | None) -> None:
        """A basic canary's next replica counts (one bounded step on what is ready now;
        without readiness, as many steps as make no further change)."""
        rec = self.record
        if not rec.replicas:  # first sight or a record from before: adopt what runs
            owner = f"{res.kind}/{res.namespace}/{res.name}"
            for d in current.of_kind("Deployment"):
                h = d.labels.get(traffic.HASH_LABEL)
                if d.annotations.get(traffic.OWNER) == owner and h:
                    rec.replicas[h] = int(d.spec.get("replicas", 0) or 0)
        try:
            b = sizing.bounds(res.spec)
        except sizing.StrategyError:
            return  # the plan error is already in the status
        canary, stable, spec, ready = self._sets(res, state, avail)
        weight = 0 if state.abort else max(state.weight, state.scale_weight)
        if avail is None:
            rec.replicas = sizing.settle(b, weight, canary, stable, spec)
        else:
            rec.replicas = sizing.step_sets(b, weight, canary, stable, spec, ready)

    async def _measure(self, ctx: measure.Context, active: dict[str, runs.AnalysisRun],
                       now: float) -> None:
        for run in active.values():
            for spec in runs.due(run, now, self.error_retry):
                m = await measure.argo_measure(ctx, run, spec, now)
                runs.record(run, spec, m)

    async def _flagger_inputs(self, ctx: measure.Context, res: Resource, plan: Plan,
                              state: RolloutState, current: ResourceSet, now: float,
                              ready: bool = True
                              ) -> tuple[tuple[bool, str] | None, dict[str, bool]]:
        fa = plan.flagger
        if fa is None:
            return None, {}
        payload: dict[str, Any] = {"name": res.name, "namespace": res.namespace,
                                   "phase": state.phase.value,
                   "checksum": state.revision, "metadata": {}}
        gates = await hooks.gates(self.client, fa.webhooks, payload) if fa.webhooks else {}
        if not machine.wants_check(state, plan, now, ready):
            return None, gates
        target = ctx.canary[1]
        ok, detail = True, []
        for hook in fa.webhooks:
            if hooks.hook_type(hook) != "rollout":
                continue
            cmd = hooks.load_command(hook)
            if cmd:
                detail.append(self.loadtester.ensure(f"{res.namespace}/{res.name}", cmd))
                continue
            passed, why = await hooks.call(self.client, hook, payload)
            ok = ok and passed
            detail.append(why)
        m_ok, m_detail = await measure.flagger_check(ctx, fa.metrics, res.namespace, target,
                                                     current, now)
        result = (ok and m_ok, "; ".join([m_detail, *[d for d in detail if not ok]]))
        self.record.checks.append({"at": self.clock.wall(), "ok": result[0],
                                   "detail": m_detail, "weight": state.weight})
        return result, gates

    # ---- effects -------------------------------------------------------------------------

    async def _effects(self, effects: list[Effect], active: dict[str, runs.AnalysisRun],
                       current: ResourceSet, res: Resource, now: float) -> None:
        for e in effects:
            if e.kind == "start-analysis":
                invalid = ""
                args = measure.template_args(e.templates, res.namespace, current, e.args)
                try:
                    metrics, missing = measure.metrics_for(e.templates, res.namespace, current,
                                                           e.dry_run, args)
                except measure.DryRunError as exc:
                    metrics, missing = measure.metrics_for(e.templates, res.namespace, current)
                    invalid = f"Analysis spec invalid: {exc}"  # Argo's words for it
                run = runs.AnalysisRun(e.name, metrics, started_at=now, args=args)
                if missing or invalid:
                    run.phase = runs.AnalysisPhase.ERROR
                    run.message = invalid or f"AnalysisTemplate {', '.join(missing)} not found"
                active[e.name] = run
                self.record.runs[e.name] = {"templates": list(e.templates),
                                            "dry_run": list(e.dry_run)}
            elif e.kind == "stop-analysis" and e.name in active:
                runs.terminate(active[e.name])
            elif e.kind == "scale-down" and e.revision:
                self.record.scale_down[e.revision] = self.clock.wall() + e.delay
            elif e.kind == "webhook" and e.name == "post-rollout":
                await self.loadtester.stop(f"{res.namespace}/{res.name}")
                await self._post_hooks(res, e.name)
            elif e.kind == "webhook":
                await self._post_hooks(res, e.name)

    async def _event_hooks(self, res: Resource, plan: Plan, state: RolloutState,
                           reason: str) -> None:
        """Flagger `event` webhooks: every decision, as Flagger posts its events."""
        if plan.flagger is None:
            return
        payload = {"name": res.name, "namespace": res.namespace, "phase": state.phase.value,
                   "checksum": state.revision, "metadata": {"eventMessage": reason,
                                                            "eventType": "Normal"}}
        for hook in plan.flagger.webhooks:
            if hooks.hook_type(hook) == "event":
                await hooks.call(self.client, hook, payload)

    async def _post_hooks(self, res: Resource, kind: str) -> None:
        plan = self.plan
        if plan is None or plan.flagger is None:
            return
        state = self.record.state
        payload: dict[str, Any] = {"name": res.name, "namespace": res.namespace,
                                   "phase": state.phase.value if state else "",
                                   "checksum": "", "metadata": {}}
        for hook in plan.flagger.webhooks:
            if hooks.hook_type(hook) == kind:
                await hooks.call(self.client, hook, payload)

    # ---- resources -----------------------------------------------------------------------

    def desired(self, res: Resource, plan: Plan, state: RolloutState,
                current: ResourceSet) -> list[dict[str, Any]]:
        tmpls = {h: self._restarted(t) for h, t in self.record.templates.items()}
        if self.kind == "Canary":
            if not state.stable_revision:
                return []
            return traffic.flagger_resources(res, plan, state, tmpls, current,
                                             self.record.target_replicas)
        if plan.bluegreen is not None:
            out = traffic.bluegreen_resources(res, plan, state, tmpls, current)
        elif traffic.is_basic_canary(res.spec, plan):
            # sets are sized by the stepped counts, the old ones included: no delayed copies
            self.record.scale_down.clear()
            return traffic.argo_resources(res, plan, state, tmpls, current,
                                          counts=self.record.replicas)
        else:
            out = traffic.argo_resources(res, plan, state, tmpls, current)
        wall = self.clock.wall()
        total = int(res.spec.get("replicas", 1) or 1)
        for h, until in list(self.record.scale_down.items()):
            if until <= wall or h in (state.stable_revision,) or h not in tmpls:
                self.record.scale_down.pop(h, None)
                continue
            if h != state.revision or state.abort:
                out.append(traffic.replica_set(res, tmpls[h], h, total))
        return out

    def _restarted(self, template: dict[str, Any]) -> dict[str, Any]:
        if not self.record.restarted_at:
            return template
        t = _copy(template)
        meta = t.setdefault("metadata", {})
        meta["annotations"] = {**(meta.get("annotations") or {}),
                               "tollway.dev/restartedAt": self.record.restarted_at}
        return t

    def _apply(self, res: Resource, plan: Plan, state: RolloutState, current: ResourceSet,
               reason: str) -> None:
        # read again: the user may have applied while we measured (a clone of their target
        # Deployment must carry their latest template, never the one read before)
        current = self.store.current()
        manifests = self.desired(res, plan, state, current)
        owner = f"{res.kind}/{res.namespace}/{res.name}"
        names = {(m["kind"], m["metadata"]["namespace"], m["metadata"]["name"])
                 for m in manifests}
        stale = [r.key for r in current.of_kind("Deployment")
                 if r.annotations.get(traffic.OWNER) == owner and r.key not in names]
        loaded = load.load_text("\n---\n".join(json.dumps(m) for m in manifests),
                                file=f"<rollout {res.name}>") if manifests else None
        if loaded is not None and not loaded.ok:
            self.error = "; ".join(f.message for f in loaded.errors)[:500]
            return
        why = reason or "keep traffic as the rollout state says"
        if loaded is not None:
            result = self.store.apply(list(loaded.resources), actor="rollout", reason=why)
            if not result.ok:
                self.error = "; ".join(f.message for f in result.findings if f.is_error)[:500]
                return
        if stale:
            self.store.delete(stale, actor="rollout", reason="replica set no longer needed")
        self.error = ""

    def _prune_templates(self, state: RolloutState) -> None:
        keep = {state.revision, state.stable_revision, *self.record.scale_down,
                *(h for h, n in self.record.replicas.items() if n > 0)}
        for h in [h for h in self.record.templates if h not in keep]:
            del self.record.templates[h]

    # ---- status --------------------------------------------------------------------------

    def _status(self, res: Resource, plan: Plan, state: RolloutState,
                active: dict[str, runs.AnalysisRun]) -> None:
        wall = self.clock.wall()
        if self.kind == "Canary":
            body = status.flagger_status(state, plan, self.record.checks, wall)
        else:
            body = status.argo_status(state, plan, {n: runs.run_to_dict(r)
                                                    for n, r in active.items()}, wall)
        if self.error:
            body["error"] = self.error
        self.store.set_status(res.key, body)

    def _fail_status(self, res: Resource, message: str) -> None:
        self.error = message
        self.store.set_status(res.key, {"phase": "Degraded" if self.kind == "Rollout"
                                        else "Failed", "message": message, "error": message})
