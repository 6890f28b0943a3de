"""The rollout controller on Kubernetes: the same Workers, writing to the API server.

`tollway control-plane --kubernetes` runs this on the replica that holds the Lease (so
two replicas never step one rollout twice). Its informers already feed the ConfigStore
every Rollout, Canary, AnalysisTemplate, VirtualService, DestinationRule, Service and
Deployment; each Rollout/Canary gets the `controller.Worker` that `tollway up` runs,
with three differences at the edge, none in the decisions:

- the resources a state implies go through `onkube.plan_writes` to API writes
  (ReplicaSets, patches of the user's VirtualService/DestinationRule/Services, Flagger's
  generated objects) instead of into the local store;
- readiness is the ReplicaSets' `status.readyReplicas` and, for Deployments, the ready replicas
  of the current template only (onkube.deployment_ready, as Flagger counts them);
- the record (machine state, templates by revision, runs) lives in a ConfigMap owned by
  the rollout, so a new leader resumes at the same step: Kubernetes is the only store.
  Time is wall time here (records cross processes; a monotonic clock does not).

After every sync the status is written through the status subresource in Argo's or
Flagger's shape, and each analysis run is an `AnalysisRun` object with Argo's status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from tollway.config.resource import Resource
from tollway.control.store import ConfigStore, Key
from tollway.kube.api import Api
from tollway.kube.informer import Event
from tollway.kube.kinds import Watched
from tollway.rollout import hooks, onkube, traffic
from tollway.rollout.analysis import runs
from tollway.rollout.analysis.providers.mesh import MeshMetrics
from tollway.rollout.controller import Worker

log = logging.getLogger(__name__)
KINDS = ("Rollout", "Canary")
TICK = 1.0
MIN_GAP = 0.5  # seconds between two syncs of one rollout (each may write to the API)
ERROR_GAP = 5.0  # after a refused write (RBAC, admission): said once per 5 s, not per tick
RawLookup = Callable[[str, str, str], Mapping[str, Any] | None]
GROUP_VERSIONS = {"Rollout": ("argoproj.io", "v1alpha1"), "AnalysisRun": ("argoproj.io",
                                                                          "v1alpha1"),
                  "Canary": ("flagger.app", "v1beta1"), "ReplicaSet": ("apps", "v1"),
                  "Deployment": ("apps", "v1"), "Service": ("", "v1"),
                  "ConfigMap": ("", "v1"),
                  "VirtualService": ("networking.istio.io", "v1beta1"),
                  "DestinationRule": ("networking.istio.io", "v1beta1")}


class WallClock:
    """Both readings are wall time: a rollout's record (timers included) is resumed by
    whichever replica leads next, where this process's monotonic clock means nothing."""

    def monotonic(self) -> float:
        return time.time()

    def wall(self) -> float:
        return time.time()


def path_of(kind: str, namespace: str, name: str | None = None, sub: str | None = None,
            api_version: str | None = None) -> str:
    if api_version:
        group, _, version = api_version.rpartition("/")
    else:
        group, version = GROUP_VERSIONS.get(kind, ("", "v1"))
    return Watched(group, version, kind, tollway=False).path(namespace, name, sub)


class ConfigMapRecord:
    """A Worker's record as a ConfigMap: loaded once before the worker starts, saved in
    memory by the worker, written by the reconciler after the sync (IO stays async)."""

    def __init__(self, initial: dict[str, Any] | None) -> None:
        self.data = initial
        self.written = json.dumps(initial, sort_keys=True, default=str) if initial else ""

    def load(self) -> dict[str, Any] | None:
        return self.data

    def save(self, record: dict[str, Any]) -> None:
        self.data = record

    def pending(self) -> str | None:
        text = json.dumps(self.data, sort_keys=True, default=str) if self.data else ""
        return text if text and text != self.written else None


def record_name(kind: str, name: str) -> str:
    return f"tollway-{kind.lower()}.{name}"


@dataclass
class Tracked:
    worker: Worker
    record: ConfigMapRecord
    writes: list[onkube.Write] = field(default_factory=list)
    error: str = ""
    next_at: float = 0.0
    runs_written: dict[str, str] = field(default_factory=dict)
    commands_seen: set[str] = field(default_factory=set)


class ClusterRollouts:
    """Every Rollout and Canary of the cluster, reconciled (run it on the leader only)."""

    def __init__(self, api: Api, store: ConfigStore, raw: RawLookup, *,
                 prometheus_url: str | None = None,
                 error_retry: float = runs.ERROR_RETRY_SECONDS) -> None:
        self.api = api
        self.store = store
        self.raw = raw
        self.clock = WallClock()
        self.prometheus_url = prometheus_url
        self.error_retry = error_retry
        self.replica_sets: dict[tuple[str, str], Mapping[str, Any]] = {}
        self.tracked: dict[Key, Tracked] = {}
        self.wake = asyncio.Event()
        self.mesh = MeshMetrics()
        self.loadtester = hooks.LoadTester(None)
        self.client: httpx.AsyncClient | None = None

    # ---- what the informers say ----------------------------------------------------------

    def on_events(self, watched: Watched, events: list[Event]) -> None:
        if watched.kind == "ReplicaSet":
            for e in events:
                if e.type == "DELETED":
                    self.replica_sets.pop(e.key, None)
                else:
                    self.replica_sets[e.key] = e.obj
        self.wake.set()

    def ready_counts(self) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        for (ns, name), rs in self.replica_sets.items():
            out[(ns, name)] = int((rs.get("status") or {}).get("readyReplicas") or 0)
        for res in self.store.current().of_kind("Deployment"):
            obj = self.raw("Deployment", res.namespace, res.name) or {}
            out[(res.namespace, res.name)] = onkube.deployment_ready(obj)
        return out

    def owned_replica_sets(self, owner: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        uid = (owner.get("metadata") or {}).get("uid")
        return [rs for rs in self.replica_sets.values()
                if any(r.get("uid") == uid for r in
                       (rs.get("metadata") or {}).get("ownerReferences") or [])]

    def _live(self, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        if kind == "ReplicaSet":
            return self.replica_sets.get((namespace, name))
        return self.raw(kind, namespace, name)

    # ---- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        """Reconcile until cancelled (when this replica stops leading)."""
        self.client = httpx.AsyncClient()
        self.tracked = {}  # a new term: records are read again from their ConfigMaps
        try:
            while True:
                now = self.clock.monotonic()
                await self._discover()
                for key, t in list(self.tracked.items()):
                    if self._command(key, t) or now >= t.next_at:
                        await self.reconcile(key, t)
                nxt = min([t.next_at for t in self.tracked.values()] + [now + TICK])
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(),
                                           max(0.05, nxt - self.clock.monotonic()))
        finally:
            await self.loadtester.stop()
            await self.client.aclose()

    async def _discover(self) -> None:
        assert self.client is not None
        current = self.store.current()
        present = {r.key for kind in KINDS for r in current.of_kind(kind)}
        for key in [k for k in self.tracked if k not in present]:
            del self.tracked[key]  # deleted: Kubernetes collects what it owned
        for key in sorted(present - set(self.tracked)):
            kind, ns, name = key
            code, cm = await self.api.request("GET", path_of("ConfigMap", ns,
                                                             record_name(kind, name)))
            initial = None
            if code == 200 and isinstance(cm, dict):
                with contextlib.suppress(ValueError, TypeError):
                    initial = json.loads((cm.get("data") or {}).get("record") or "null")
            record = ConfigMapRecord(initial if isinstance(initial, dict) else None)
            worker = Worker(key, self.store, self.clock, record,
                            self.client, self.mesh, self.prometheus_url, self.loadtester,
                            None, self.ready_counts, self.error_retry,
                            outlet=self._outlet(key))
            self.tracked[key] = Tracked(worker, record)

    def _outlet(self, key: Key) -> Callable[[Resource, list[dict[str, Any]], str], str]:
        def outlet(res: Resource, manifests: list[dict[str, Any]], reason: str) -> str:
            t = self.tracked[key]
            owner = self.raw(*key)
            if owner is None:
                return t.error
            t.writes = onkube.plan_writes(owner, manifests, self._live,
                                          self.owned_replica_sets(owner))
            return t.error
        return outlet

    def _command(self, key: Key, t: Tracked) -> bool:
        """A command annotation not yet handed to the worker: hand it over."""
        obj = self.raw(*key)
        if obj is None:
            return False
        cmd = onkube.read_command(obj)
        if cmd is None or (isinstance(cmd, onkube.Command) and cmd.id in t.commands_seen):
            return False
        if isinstance(cmd, str):
            t.error = cmd
            t.commands_seen.add(cmd)
            return True
        t.commands_seen.add(cmd.id)
        t.worker.command(cmd.machine_command, cmd.actor, cmd.reason, cmd.weight)
        return True

    async def reconcile(self, key: Key, t: Tracked) -> None:
        try:
            t.next_at = await t.worker.sync()
        except Exception:  # one bad rollout must not stop the others
            log.exception("rollout %s: sync failed", key)
            t.next_at = self.clock.monotonic() + 5.0
            return
        owner = self.raw(*key)
        if owner is None:
            return
        errors = [e for e in [await self._write(w) for w in t.writes] if e]
        t.writes = []
        t.error = "; ".join(errors)[:500]
        # API writes per sync: no faster than MIN_GAP, and back off while they are refused
        t.next_at = max(t.next_at, self.clock.monotonic() + (ERROR_GAP if errors else MIN_GAP))
        await self._analysis_runs(owner, t)
        await self._status(owner, t)
        await self._record(owner, t)
        await self._clear_command(owner, t)

    # ---- writes ----------------------------------------------------------------------------

    async def _write(self, w: onkube.Write) -> str:
        path = path_of(w.kind, w.namespace, w.name, api_version=w.api_version)
        if w.method == "apply":
            code, data = await self.api.request(
                "PATCH", path, body=w.body, content_type="application/apply-patch+yaml",
                params={"fieldManager": onkube.FIELD_MANAGER, "force": "true"})
        elif w.method == "patch":
            code, data = await self.api.request("PATCH", path, body=w.body,
                                                content_type="application/merge-patch+json")
        else:
            code, data = await self.api.request("DELETE", path)
            if code == 404:
                return ""
        if code in (200, 201):
            return ""
        if code == 409:
            return ""  # changed meanwhile: the next sync recomputes from what is there now
        why = data.get("message") if isinstance(data, dict) else ""
        log.warning("rollout write %s: HTTP %s %s", w.describe(), code, why)
        return f"{w.describe()}: HTTP {code} {why}".strip()

    async def _status(self, owner: Mapping[str, Any], t: Tracked) -> None:
        kind = str(owner.get("kind"))
        meta = owner.get("metadata") or {}
        ns, name = str(meta.get("namespace")), str(meta.get("name"))
        local = dict(self.store.status((kind, ns, name)))
        if t.error:
            local["error"] = t.error
        live = owner.get("status") if isinstance(owner.get("status"), Mapping) else {}
        body = self._status_body(owner, t, local, live or {})
        if onkube.same_status(body, live or {}):
            return
        # Another writer (the control plane's Reconciled condition) shares status.conditions:
        # build on the object as it is now and write with its resourceVersion, so neither
        # drops the other's condition (a 409 is retried at the next sync).
        code, fresh = await self.api.request("GET", path_of(kind, ns, name))
        if code != 200 or not isinstance(fresh, dict):
            return
        live = fresh.get("status") if isinstance(fresh.get("status"), Mapping) else {}
        body = self._status_body(fresh, t, local, live or {})
        if onkube.same_status(body, live or {}):
            return
        rv = (fresh.get("metadata") or {}).get("resourceVersion")
        code, _ = await self.api.request(
            "PATCH", path_of(kind, ns, name, "status"),
            body={"metadata": {"resourceVersion": rv}, "status": body},
            content_type="application/merge-patch+json")
        if code not in (200, 409):
            log.warning("status of %s %s/%s not written: HTTP %s", kind, ns, name, code)

    def _status_body(self, owner: Mapping[str, Any], t: Tracked, local: Mapping[str, Any],
                     live: Mapping[str, Any]) -> dict[str, Any]:
        meta = owner.get("metadata") or {}
        now = self.clock.wall()
        if owner.get("kind") == "Rollout":
            state = t.worker.record.state
            spec = owner.get("spec") or {}
            counts = self._counts(owner, str(local.get("currentPodHash") or ""))
            selector = ",".join(f"{k}={v}" for k, v in sorted(
                ((spec.get("selector") or {}).get("matchLabels") or {}).items()))
            plan = t.worker.plan
            if plan is not None:
                local = {**local, "currentStepIndex": onkube.spec_step_index(
                    [s.kind for s in plan.steps], int(local.get("currentStepIndex") or 0))}
            return onkube.argo_status(
                local, live, int(meta.get("generation") or 0), counts, selector,
                lambda x: x, now, int(spec.get("replicas", 1) or 1),
                (state.step_run, state.background_run) if state else ("", ""))
        return onkube.flagger_status(local, live, now)

    def _counts(self, owner: Mapping[str, Any], canary_hash: str) -> onkube.Replicas:
        replicas = updated = ready = available = 0
        for rs in self.owned_replica_sets(owner):
            st = rs.get("status") or {}
            n = int(st.get("replicas") or 0)
            replicas += n
            ready += int(st.get("readyReplicas") or 0)
            available += int(st.get("availableReplicas") or 0)
            labels = (rs.get("metadata") or {}).get("labels") or {}
            if labels.get(traffic.HASH_LABEL) == canary_hash:
                updated += n
        return onkube.Replicas(replicas, updated, ready, available)

    async def _analysis_runs(self, owner: Mapping[str, Any], t: Tracked) -> None:
        meta = owner.get("metadata") or {}
        ns = str(meta.get("namespace"))
        state = t.worker.record.state
        current = self.store.current()
        for name, run in t.worker.record.runs.items():
            if name not in t.runs_written:
                metrics: list[Mapping[str, Any]] = []
                for tmpl in run.get("templates") or []:
                    found = current.get("AnalysisTemplate", ns, tmpl) or next(
                        (r for r in current.of_kind("ClusterAnalysisTemplate")
                         if r.name == tmpl), None)
                    if found is not None:
                        metrics += list(found.spec.get("metrics") or [])
                revision = state.revision if state else ""
                body = onkube.analysis_run(name, owner, revision, metrics,
                                           dict(run.get("args") or {}),
                                           list(run.get("templates") or []))
                code, data = await self.api.request(
                    "PATCH", path_of("AnalysisRun", ns, name), body=body,
                    content_type="application/apply-patch+yaml",
                    params={"fieldManager": onkube.FIELD_MANAGER, "force": "true"})
                if code not in (200, 201):
                    log.warning("AnalysisRun %s/%s not created: HTTP %s %s", ns, name, code,
                                data.get("message") if isinstance(data, dict) else "")
                    continue
                t.runs_written[name] = ""
            status = onkube.analysis_run_status(run, lambda x: x)
            text = json.dumps(status, sort_keys=True, default=str)
            if text == t.runs_written[name]:
                continue
            if status["phase"] in ("Error", "Failed") and '"phase": "Running"' in \
                    (t.runs_written[name] or '"phase": "Running"'):
                last = [f"{m['name']}: {(m['measurements'] or [{}])[-1].get('message')}"
                        for m in status["metricResults"]]
                log.warning("AnalysisRun %s/%s %s: %s (%s)", ns, name, status["phase"],
                            status.get("message") or "", "; ".join(last))
            code, _ = await self.api.request(
                "PATCH", path_of("AnalysisRun", ns, name, "status"), body={"status": status},
                content_type="application/merge-patch+json")
            if code == 200:
                t.runs_written[name] = text
        for gone in [n for n in t.runs_written if n not in t.worker.record.runs]:
            await self.api.request("DELETE", path_of("AnalysisRun", ns, gone))
            del t.runs_written[gone]

    async def _record(self, owner: Mapping[str, Any], t: Tracked) -> None:
        text = t.record.pending()
        if text is None:
            return
        meta = owner.get("metadata") or {}
        kind, ns, name = str(owner.get("kind")), str(meta.get("namespace")), str(meta.get("name"))
        cm_name = record_name(kind, name)
        body = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": cm_name, "namespace": ns,
                             "labels": {onkube.ROLLOUT_LABEL: name},
                             "ownerReferences": [onkube.owner_reference(owner)]},
                "data": {"record": text}}
        code, _ = await self.api.request(
            "PATCH", path_of("ConfigMap", ns, cm_name), body=body,
            content_type="application/apply-patch+yaml",
            params={"fieldManager": onkube.FIELD_MANAGER, "force": "true"})
        if code in (200, 201):
            t.record.written = text

    async def _clear_command(self, owner: Mapping[str, Any], t: Tracked) -> None:
        ann = (owner.get("metadata") or {}).get("annotations") or {}
        if onkube.COMMAND_ANNOTATION not in ann:
            return
        cmd = onkube.read_command(owner)
        handled = cmd.id if isinstance(cmd, onkube.Command) else cmd
        if handled not in t.commands_seen:
            return
        meta = owner.get("metadata") or {}
        await self.api.request(
            "PATCH", path_of(str(owner.get("kind")), str(meta.get("namespace")),
                             str(meta.get("name"))),
            body={"metadata": {"annotations": {onkube.COMMAND_ANNOTATION: None}}},
            content_type="application/merge-patch+json")

