"""The IO shell: one worker per Rollout/Canary, carrying out what the machine decides.

Each `sync` is flat: **read** the resource and the store (the kind's `Style` gives the
plan and the template), **measure** what is due (analysis metrics, readiness, Flagger's
check and gates), **step** the machine, **apply** (its effects, then the resources the
new state implies, through the store with actor "rollout" and the decision as the
reason) and **persist** (the record, then an Argo- or Flagger-shaped status). Every
decision that differs by kind is a pure function of a `Style` (styles.py); this module
only reads, calls and writes. Time comes from the injected clock, so tests drive a
worker on a FakeClock.

Readiness (how many replicas of each replica set are ready) comes from `ready_counts`
(`tollway up` passes its supervisor's), else from probing the sidecars' `/ready`; with
neither (tests on a FakeClock) every replica counts as ready at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from tollway.config import load
from tollway.config.resource import Resource, ResourceSet
from tollway.control.store import ConfigStore, Key
from tollway.kit.clock import Clock
from tollway.rollout import hooks, machine, measure, plans, traffic
from tollway.rollout.analysis import runs
from tollway.rollout.analysis.providers.mesh import MeshMetrics, Target
from tollway.rollout.model import Effect, Inputs, Plan, RolloutState
from tollway.rollout.persist import RecordFile
from tollway.rollout.styles import Sizing, Style, copy_json, style_for

log = logging.getLogger(__name__)
TICK = 1.0
KEEP_RUNS = 6
ReadyCounts = Callable[[], Mapping[tuple[str, str], int]]  # (namespace, workload) -> ready
# Where the resources a state implies go, when not into the local store: (the rollout, the
# manifests, why) -> an error to show, or "". The cluster edge (rollout/onkube.py) passes
# one that turns them into API writes; the decisions that made them are the same.
Outlet = Callable[[Resource, list[dict[str, Any]], str], str]


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

    @property
    def sizing(self) -> Sizing:
        return Sizing(self.replicas, self.scale_down, self.target_replicas)

    @sizing.setter
    def sizing(self, sz: Sizing) -> None:
        self.replicas, self.scale_down = sz.replicas, sz.scale_down
        self.target_replicas = sz.target_replicas


@dataclass(slots=True)
class Seen:
    """What one sync read: the resource, the store, its style, plan and template."""

    res: Resource
    current: ResourceSet
    style: Style
    plan: Plan
    revision: str


@dataclass(slots=True)
class Measured:
    """What one sync measured before deciding."""

    ctx: measure.Context
    active: dict[str, runs.AnalysisRun]
    avail: dict[str, int] | None
    ready: bool
    primary_ready: bool
    check: tuple[bool, str] | None
    gates: dict[str, bool]


class Worker:
    """One rollout (kind Rollout or Canary) and its persisted record."""

    def __init__(self, key: Key, store: ConfigStore, clock: Clock, state_file: RecordFile,
                 client: httpx.AsyncClient, mesh: MeshMetrics, prometheus_url: str | None,
                 loadtester: hooks.LoadTester,
                 targets: Callable[[], list[Target]] | None = None,
                 ready_counts: ReadyCounts | None = None,
                 error_retry: float = runs.ERROR_RETRY_SECONDS,
                 outlet: Outlet | None = None) -> None:
        self.outlet = outlet
        self.in_cluster = outlet is not None  # the cluster edge: in-cluster addresses work
        self.targets = targets
        self.ready_counts = ready_counts
        self.error_retry = error_retry  # seconds before measuring again after an Error
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

    # ---- one pass: read, measure, step, apply, persist ------------------------------------

    async def sync(self) -> float:
        """Decide and act once; returns the monotonic time of the next wanted sync."""
        now = self.clock.monotonic()
        seen = self._read()
        if seen is None:
            return now + TICK
        state = self._state(seen)
        got = await self._measure(seen, state, now)
        new, effects, reason = machine.step(state, seen.plan, self._inputs(seen, got), now)
        self.record.state = new
        await self._apply(seen, got, new, effects, reason, now)
        self._persist(seen, got, new)
        if reason:
            log.info("%s/%s: %s", seen.res.kind, seen.res.name, reason)
            await self._event_hooks(seen.res, seen.plan, new, reason)
        wakes = [now + TICK] + [t for t in (machine.wake_at(new, seen.plan),) if t is not None]
        wakes += [t for r in got.active.values()
                  if (t := runs.wake_at(r, self.error_retry)) is not None]
        return max(min(wakes), now + 0.05)

    # ---- read ------------------------------------------------------------------------------

    def _read(self) -> Seen | None:
        res = self.store.get(self.key)
        if res is None:
            return None
        style = style_for(res)
        try:
            plan = style.plan(res)
        except plans.PlanError as exc:
            self._fail_status(res, style, str(exc))
            return None
        self.plan = plan
        current = self.store.current()
        template = style.template(res, current)
        if isinstance(template, str):
            self._fail_status(res, style, template)
            return None
        revision = traffic.template_hash(template)
        self.record.templates.setdefault(revision, template)
        return Seen(res, current, style, plan, revision)

    def _state(self, seen: Seen) -> RolloutState:
        rec = self.record
        if rec.state is None:
            rec.state = machine.initial_state(seen.plan, seen.revision)
        rec.sizing = seen.style.observe(seen.res, seen.current, rec.sizing)
        return rec.state

    # ---- measure ---------------------------------------------------------------------------

    async def _measure(self, seen: Seen, state: RolloutState, now: float) -> Measured:
        canary, stable = seen.style.subjects(seen.res, state)
        ctx = measure.Context(self.client, self.mesh, self.prometheus_url, canary, stable,
                              dict(self.record.judges), self.in_cluster)
        active = self._runs(seen.current, seen.res.namespace)
        for run in active.values():
            for spec in runs.due(run, now, self.error_retry):
                runs.record(run, spec, await measure.argo_measure(ctx, run, spec, now))
        avail = await self._availability(
            seen.res, seen.style.workloads(seen.res, state, self.record.sizing))
        ready, primary_ready = seen.style.readiness(seen.res, seen.plan, state, seen.revision,
                                                    avail, self.record.sizing)
        check, gates = await self._flagger_inputs(ctx, seen, state, now, ready)
        return Measured(ctx, active, avail, ready, primary_ready, check, gates)

    def _runs(self, current: ResourceSet, namespace: str) -> dict[str, runs.AnalysisRun]:
        out = {}
        for name, raw in self.record.runs.items():
            templates = tuple(raw.get("templates", []))
            try:
                metrics, _ = measure.metrics_for(
                    templates, namespace, current, tuple(raw.get("dry_run", [])),
                    dict(raw.get("args") or {}),
                    tuple((str(r), int(n)) for r, n in raw.get("retention", [])))
            except measure.DryRunError:  # the run ended in Error when it started
                metrics, _ = measure.metrics_for(templates, namespace, current)
            out[name] = runs.run_from_dict(raw, metrics)
        return out

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

    async def _flagger_inputs(self, ctx: measure.Context, seen: Seen, state: RolloutState,
                              now: float, ready: bool = True
                              ) -> tuple[tuple[bool, str] | None, dict[str, bool]]:
        """Flagger's webhook gates, and this tick's check when the machine wants one
        (rollout webhooks, the load test, then the metrics)."""
        res, plan = seen.res, seen.plan
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
                                                     seen.current, now)
        result = (ok and m_ok, "; ".join([m_detail, *[d for d in detail if not ok]]))
        self.record.checks.append({"at": self.clock.wall(), "ok": result[0],
                                   "detail": m_detail, "weight": state.weight})
        return result, gates

    # ---- step -----------------------------------------------------------------------------

    def _inputs(self, seen: Seen, got: Measured) -> Inputs:
        cmd, actor, why, weight = (self.commands.popleft() if self.commands
                                   else (None, "", "", None))
        if cmd == "restart":
            self.record.restarted_at = str(self.clock.wall())
            cmd = None
        return Inputs(revision=seen.revision, command=cmd, actor=actor, why=why,
                      analysis={n: r.phase.value for n, r in got.active.items()},
                      check=got.check, gates=got.gates, ready=got.ready, weight=weight,
                      primary_ready=got.primary_ready)

    # ---- apply ----------------------------------------------------------------------------

    async def _apply(self, seen: Seen, got: Measured, state: RolloutState,
                     effects: list[Effect], reason: str, now: float) -> None:
        await self._effects(effects, got.active, seen.current, seen.res, now)
        self.record.sizing = seen.style.after_step(seen.res, seen.plan, state, seen.current,
                                                   got.avail, self.record.sizing)
        self._apply_resources(seen, state, reason)

    async def _effects(self, effects: list[Effect], active: dict[str, runs.AnalysisRun],
                       current: ResourceSet, res: Resource, now: float) -> None:
        for e in effects:
            if e.kind == "start-analysis":
                invalid = ""
                args = measure.template_args(e.templates, res.namespace, current, e.args)
                try:
                    metrics, missing = measure.metrics_for(e.templates, res.namespace, current,
                                                           e.dry_run, args, e.retention)
                except measure.DryRunError as exc:
                    metrics, missing = measure.metrics_for(e.templates, res.namespace, current)
                    invalid = f"Analysis spec invalid: {exc}"  # Argo's words for it
                run = runs.AnalysisRun(e.name, metrics, started_at=now, args=args)
                if missing or invalid:
                    run.phase = runs.AnalysisPhase.ERROR
                    run.message = invalid or f"AnalysisTemplate {', '.join(missing)} not found"
                active[e.name] = run
                self.record.runs[e.name] = {"templates": list(e.templates),
                                            "dry_run": list(e.dry_run),
                                            "retention": [list(r) for r in e.retention]}
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

    def desired(self, res: Resource, plan: Plan, state: RolloutState,
                current: ResourceSet) -> list[dict[str, Any]]:
        """The resources the state implies (the style decides; the delayed scale-downs
        that are over are dropped from the record)."""
        tmpls = {h: self._restarted(t) for h, t in self.record.templates.items()}
        want = style_for(res).desired(res, plan, state, tmpls, current, self.record.sizing,
                                      self.clock.wall())
        self.record.scale_down = want.scale_down
        return want.manifests

    def _restarted(self, template: dict[str, Any]) -> dict[str, Any]:
        if not self.record.restarted_at:
            return template
        t = copy_json(template)
        meta = t.setdefault("metadata", {})
        meta["annotations"] = {**(meta.get("annotations") or {}),
                               "tollway.dev/restartedAt": self.record.restarted_at}
        return t

    def _apply_resources(self, seen: Seen, state: RolloutState, reason: str) -> None:
        res = seen.res
        # read again: the user may have applied while we measured (a clone of their target
        # Deployment must carry their latest template, never the one read before)
        current = self.store.current()
        manifests = self.desired(res, seen.plan, state, current)
        if self.outlet is not None:
            self.error = self.outlet(res, manifests, reason)
            return
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

    # ---- persist ---------------------------------------------------------------------------

    def _persist(self, seen: Seen, got: Measured, state: RolloutState) -> None:
        rec = self.record
        keep = list(got.active)[-KEEP_RUNS:]  # finished runs of old revisions age out
        rec.runs = {n: {**runs.run_to_dict(got.active[n]),
                        **{k: rec.runs.get(n, {}).get(k, [])
                           for k in ("templates", "dry_run", "retention")}}
                    for n in keep}
        rec.judges = {k: v for k, v in got.ctx.judges.items() if k.split("/")[0] in rec.runs}
        self._prune_templates(state)
        self.file.save(rec.to_dict())
        body = seen.style.status(state, seen.plan, {n: runs.run_to_dict(r)
                                                    for n, r in got.active.items()},
                                 rec.checks, self.clock.wall())
        if self.error:
            body["error"] = self.error
        self.store.set_status(seen.res.key, body)

    def _prune_templates(self, state: RolloutState) -> None:
        keep = {state.revision, state.stable_revision, *self.record.scale_down,
                *(h for h, n in self.record.replicas.items() if n > 0)}
        for h in [h for h in self.record.templates if h not in keep]:
            del self.record.templates[h]

    def _fail_status(self, res: Resource, style: Style, message: str) -> None:
        self.error = message
        self.store.set_status(res.key, {"phase": style.failed_phase, "message": message,
                                        "error": message})
