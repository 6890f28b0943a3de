"""The rollout controller's decisions as Kubernetes objects and writes [pure].

The machine and the styles decide exactly what they decide for `tollway up`: the
manifests `Style.desired` returns for a state. This module only says how each one is
written to an API server, as Argo Rollouts and Flagger write theirs:

- an Argo replica set (a generated `NAME-<hash>` "Deployment" in local mode) is an
  `apps/v1` ReplicaSet labelled `rollouts-pod-template-hash`, owned by the Rollout;
- what the controller generates (Flagger's `-primary` Deployment, the `-canary`/
  `-primary`/apex Services, its VirtualService) is server-side applied with our field
  manager, owned by the Canary when we create it (never a user's existing object);
- what the user owns (Argo's VirtualService weights, DestinationRule subsets, the
  stable/canary Services' selectors, Flagger's target replicas) is merge-patched: only the
  top-level spec fields that differ, with the resourceVersion read, so a concurrent edit
  makes the write fail (409) and the next sync recomputes instead of overwriting it;
- status goes through the status subresource with Argo's (or Flagger's) field names and
  RFC 3339 times; analysis runs become `AnalysisRun` objects with Argo's status.

User commands (`tollway rollout promote|abort|...` against a cluster) arrive as an
annotation on the Rollout/Canary, consumed once (its id remembered) and then removed.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tollway.rollout import traffic

FIELD_MANAGER = "tollway-rollout"
COMMAND_ANNOTATION = "tollway.dev/rollout-command"
ROLLOUT_LABEL = "tollway.dev/rollout"  # on what we create: the Rollout/Canary's name
RECORD_SUFFIX = "-tollway-rollout"  # the ConfigMap holding a rollout's record
ARGO_GROUP = "argoproj.io/v1alpha1"
Manifest = dict[str, Any]
Live = Callable[[str, str, str], Mapping[str, Any] | None]  # (kind, namespace, name)
Method = Literal["apply", "patch", "delete"]

_API_VERSIONS = {"ReplicaSet": "apps/v1", "Deployment": "apps/v1", "Service": "v1",
                 "ConfigMap": "v1"}


@dataclass(frozen=True, slots=True)
class Write:
    """One API write: server-side apply of `body`, a merge patch, or a delete."""

    method: Method
    api_version: str
    kind: str
    namespace: str
    name: str
    body: Mapping[str, Any] | None = None

    def describe(self) -> str:
        return f"{self.method} {self.kind} {self.namespace}/{self.name}"


def rfc3339(wall: float | None) -> str | None:
    if wall is None:
        return None
    return dt.datetime.fromtimestamp(wall, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def owner_reference(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    return {"apiVersion": str(obj.get("apiVersion") or ""), "kind": str(obj.get("kind") or ""),
            "name": str(meta.get("name") or ""), "uid": str(meta.get("uid") or ""),
            "controller": True, "blockOwnerDeletion": True}


def _generated(m: Mapping[str, Any]) -> bool:
    return traffic.OWNER in ((m.get("metadata") or {}).get("annotations") or {})


def _is_replica_set(m: Mapping[str, Any]) -> bool:
    """An Argo replica set: a generated Deployment owned by a Rollout."""
    ann = (m.get("metadata") or {}).get("annotations") or {}
    return m.get("kind") == "Deployment" and str(ann.get(traffic.OWNER, "")).startswith(
        "Rollout/")


def _apply_body(m: Mapping[str, Any], kind: str, owner: Mapping[str, Any],
                owned: bool) -> dict[str, Any]:
    meta = m.get("metadata") or {}
    name = str((owner.get("metadata") or {}).get("name") or "")
    out_meta: dict[str, Any] = {
        "name": meta["name"], "namespace": meta["namespace"],
        "labels": {**(meta.get("labels") or {}), ROLLOUT_LABEL: name},
        "annotations": dict(meta.get("annotations") or {}),
    }
    if owned:
        out_meta["ownerReferences"] = [owner_reference(owner)]
    api_version = _API_VERSIONS.get(kind, str(m.get("apiVersion") or ""))
    return {"apiVersion": api_version, "kind": kind, "metadata": out_meta,
            "spec": dict(m.get("spec") or {})}


def spec_changes(desired: Mapping[str, Any], live: Mapping[str, Any]) -> dict[str, Any]:
    """The top-level spec fields whose desired value differs from the live one."""
    return {k: v for k, v in desired.items() if live.get(k) != v}


def plan_writes(owner: Mapping[str, Any], manifests: Sequence[Mapping[str, Any]],
                live: Live, owned_replica_sets: Sequence[Mapping[str, Any]]) -> list[Write]:
    """The writes that bring the cluster to `manifests` (what the state implies):
    replica sets and generated objects applied, the user's objects patched where they
    differ, and the rollout's replica sets no longer wanted deleted."""
    writes: list[Write] = []
    wanted_rs: set[str] = set()
    for m in manifests:
        meta = m.get("metadata") or {}
        ns, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        if _is_replica_set(m):
            wanted_rs.add(name)
            body = _apply_body(m, "ReplicaSet", owner, owned=True)
            if _needs_apply(body, live("ReplicaSet", ns, name)):
                writes.append(Write("apply", "apps/v1", "ReplicaSet", ns, name, body))
            continue
        kind = str(m.get("kind") or "")
        current = live(kind, ns, name)
        if _generated(m) and (current is None or _ours(current)):
            body = _apply_body(m, kind, owner, owned=current is None or _owned(current, owner))
            if _needs_apply(body, current):
                writes.append(Write("apply", body["apiVersion"], kind, ns, name, body))
            continue
        if current is None:
            continue  # the user's object is gone: nothing to edit (the status says why)
        changes = spec_changes(m.get("spec") or {}, current.get("spec") or {})
        if changes:
            rv = str((current.get("metadata") or {}).get("resourceVersion") or "")
            body = {"metadata": {"resourceVersion": rv}, "spec": changes}
            writes.append(Write("patch", str(current.get("apiVersion") or m.get("apiVersion")),
                                kind, ns, name, body))
    for rs in owned_replica_sets:
        meta = rs.get("metadata") or {}
        if str(meta.get("name")) not in wanted_rs and not meta.get("deletionTimestamp"):
            writes.append(Write("delete", "apps/v1", "ReplicaSet", str(meta.get("namespace")),
                                str(meta.get("name"))))
    return writes


def _ours(obj: Mapping[str, Any]) -> bool:
    return ROLLOUT_LABEL in ((obj.get("metadata") or {}).get("labels") or {}) or _generated(obj)


def _owned(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    uid = (owner.get("metadata") or {}).get("uid")
    return any(r.get("uid") == uid for r in (obj.get("metadata") or {}).get("ownerReferences")
               or [])


def _needs_apply(body: Mapping[str, Any], current: Mapping[str, Any] | None) -> bool:
    """Skip an apply that would change nothing we set (spec fields and our labels)."""
    if current is None:
        return True
    spec = current.get("spec") or {}
    if any(spec.get(k) != v for k, v in (body.get("spec") or {}).items()
           if k not in ("template", "ports")):
        return True
    if "template" in (body.get("spec") or {}):
        want = body["spec"]["template"]
        have = spec.get("template") or {}
        if not _subset(want, have):
            return True
    if "ports" in (body.get("spec") or {}) and not _subset(body["spec"]["ports"],
                                                           spec.get("ports") or []):
        return True
    labels = (current.get("metadata") or {}).get("labels") or {}
    want_labels = (body.get("metadata") or {}).get("labels") or {}
    return any(labels.get(k) != v for k, v in want_labels.items())


def _subset(want: Any, have: Any) -> bool:
    """Everything in `want` is in `have` (the API server adds defaults to what we send)."""
    if isinstance(want, Mapping):
        return isinstance(have, Mapping) and all(
            k in have and _subset(v, have[k]) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(have, list) and len(want) == len(have) and all(
            _subset(a, b) for a, b in zip(want, have, strict=True))
    return bool(want == have)


# ---- status ----------------------------------------------------------------------------------


def spec_step_index(kinds: Sequence[str], index: int) -> int:
    """A plan step index as an index into the Rollout's `steps` (Argo's currentStepIndex):
    Tollway's manual gate (autoPromotionEnabled: false) is a plan step, not a spec step."""
    return index - sum(1 for k in kinds[:index] if k == "gate")


def plan_step_index(kinds: Sequence[str], index: int) -> int:
    """Back from Argo's currentStepIndex to the plan's (the first step it can be)."""
    return next((i for i in range(len(kinds) + 1) if spec_step_index(kinds, i) == index),
                len(kinds))


def deployment_ready(obj: Mapping[str, Any]) -> int:
    """A Deployment's ready replicas as Flagger counts them (IsPrimaryReady/IsCanaryReady,
    whose checks are `kubectl rollout status`'s): none while a rollout is under way - the
    generation not yet observed, fewer replicas on the current template than the spec asks
    (`N out of M new replicas have been updated`), or old replicas still up (`old replicas
    are pending termination`) - and after it the ready ones of the current template. So a
    promotion moves all traffic to the primary only once the old primary pods are gone
    from its ReplicaSets, not while one of the new pods is still starting (counting
    min(ready, updated) took 1 new + 1 old ready pod for 2 of 2)."""
    meta, spec, st = (obj.get("metadata") or {}, obj.get("spec") or {},
                      obj.get("status") or {})
    if int(st.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        return 0
    updated = int(st.get("updatedReplicas") or 0)
    wanted = spec.get("replicas")
    if (wanted is not None and updated < int(wanted)) \
            or int(st.get("replicas") or 0) > updated:
        return 0
    return min(int(st.get("readyReplicas") or 0), updated)


ARGO_CONDITION_TYPES = ("Progressing", "Available", "Paused", "Healthy", "Completed",
                        "InvalidSpec")


def _condition(kind: str, status: bool, reason: str, message: str, at: str,
               before: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    old = before.get(kind) or {}
    value = "True" if status else "False"
    changed = old.get("status") != value
    return {"type": kind, "status": value, "reason": reason, "message": message,
            "lastUpdateTime": at if changed or old.get("reason") != reason
            else old.get("lastUpdateTime", at),
            "lastTransitionTime": at if changed else old.get("lastTransitionTime", at)}


def keep_conditions(live_status: Mapping[str, Any], ours: Sequence[Mapping[str, Any]],
                    our_types: Sequence[str]) -> list[dict[str, Any]]:
    """Ours replace our types; another writer's conditions (the control plane's
    `Reconciled`) stay as they are."""
    others = [dict(c) for c in live_status.get("conditions") or []
              if isinstance(c, Mapping) and c.get("type") not in our_types]
    return [*others, *(dict(c) for c in ours)]


@dataclass(frozen=True, slots=True)
class Replicas:
    """What the rollout's replica sets report (summed): Argo's status counts."""

    replicas: int = 0
    updated: int = 0
    ready: int = 0
    available: int = 0


def argo_status(local: Mapping[str, Any], live_status: Mapping[str, Any], generation: int,
                counts: Replicas, selector: str, mono_to_wall: Callable[[float], float],
                now: float, spec_replicas: int, runs_now: tuple[str, str] = ("", "")
                ) -> dict[str, Any]:
    """Argo's Rollout status from the controller's (tollway up's) status body: the same
    field names Argo's controller writes (types.go RolloutStatus), RFC 3339 times.
    `runs_now`: the names of the current step's and the background analysis runs."""
    phase = str(local.get("phase") or "Progressing")
    at = rfc3339(now) or ""
    before = {str(c.get("type")): c for c in live_status.get("conditions") or []
              if isinstance(c, Mapping)}
    runs = list(local.get("analysisRuns") or [])
    weights = ((local.get("canary") or {}).get("weights")) or {}
    canary: dict[str, Any] = {"weights": weights}
    step_run = _run_status(runs, runs_now[0])
    bg_run = _run_status(runs, runs_now[1])
    if step_run:
        canary["currentStepAnalysisRunStatus"] = step_run
    if bg_run:
        canary["currentBackgroundAnalysisRunStatus"] = bg_run
    pauses = [{"reason": p["reason"],
               "startTime": rfc3339(mono_to_wall(float(p.get("startTime") or 0)))}
              for p in local.get("pauseConditions") or []]
    abort = bool(local.get("abort"))
    message = str(local.get("message") or "")
    healthy = phase == "Healthy"
    conds = [
        _condition("Progressing", not abort and phase != "Degraded",
                   "RolloutAborted" if abort else
                   ("RolloutPaused" if phase == "Paused" else
                    ("NewReplicaSetAvailable" if healthy else "ReplicaSetUpdated")),
                   message, at, before),
        _condition("Available", counts.available >= spec_replicas, "AvailableReason",
                   "Rollout has minimum availability" if counts.available >= spec_replicas
                   else "Rollout does not have minimum availability", at, before),
        _condition("Paused", phase == "Paused", "RolloutPaused",
                   "Rollout is paused" if phase == "Paused" else "Rollout is not paused",
                   at, before),
        _condition("Healthy", healthy, "RolloutHealthy",
                   "Rollout is healthy" if healthy else "Rollout is not healthy", at, before),
        _condition("Completed", healthy, "RolloutCompleted" if healthy
                   else "RolloutNotCompleted", message, at, before),
    ]
    if local.get("error"):
        conds.append(_condition("InvalidSpec", True, "InvalidSpec", str(local["error"]), at,
                                before))
    out: dict[str, Any] = {
        "phase": phase,
        "message": message,
        "observedGeneration": str(generation),
        "currentPodHash": local.get("currentPodHash", ""),
        "stableRS": local.get("stableRS", ""),
        "currentStepIndex": local.get("currentStepIndex", 0),
        "currentStepHash": local.get("currentPodHash", ""),
        "canary": canary,
        "pauseConditions": pauses or None,
        "controllerPause": bool(local.get("controllerPause")),
        "abort": abort,
        "abortedAt": (live_status.get("abortedAt") or at) if abort else None,
        "replicas": counts.replicas,
        "updatedReplicas": counts.updated,
        "readyReplicas": counts.ready,
        "availableReplicas": counts.available,
        "HPAReplicas": counts.replicas,
        "selector": selector,
        "conditions": keep_conditions(live_status, conds, ARGO_CONDITION_TYPES),
    }
    return out


def _run_status(runs: Sequence[Mapping[str, Any]], name: str) -> dict[str, Any] | None:
    """Argo's RolloutAnalysisRunStatus (name, status, message) of the named run."""
    for run in runs:
        if name and run.get("name") == name:
            return {"name": name, "status": run.get("phase", "Running"),
                    "message": run.get("message", "")}
    return None


FLAGGER_CONDITION_TYPES = ("Promoted",)


def flagger_status(local: Mapping[str, Any], live_status: Mapping[str, Any],
                   now: float) -> dict[str, Any]:
    """Flagger's Canary status (status.go CanaryStatus): phase, canaryWeight,
    failedChecks, iterations, lastAppliedSpec, lastPromotedSpec, lastTransitionTime and
    the Promoted condition."""
    phase = str(local.get("phase") or "Initializing")
    at = rfc3339(now) or ""
    before = {str(c.get("type")): c for c in live_status.get("conditions") or []
              if isinstance(c, Mapping)}
    promoted = phase in ("Succeeded", "Initialized")
    message = str(local.get("message") or "")
    cond = _condition("Promoted", promoted, phase, message, at, before)
    changed = live_status.get("phase") != phase
    return {
        "phase": phase,
        "canaryWeight": int(local.get("canaryWeight") or 0),
        "failedChecks": int(local.get("failedChecks") or 0),
        "iterations": int(local.get("iterations") or 0),
        "lastAppliedSpec": local.get("lastAppliedSpec", ""),
        "lastPromotedSpec": local.get("lastPromotedSpec", ""),
        "lastTransitionTime": at if changed else live_status.get("lastTransitionTime", at),
        "conditions": keep_conditions(live_status, [cond], FLAGGER_CONDITION_TYPES),
    }


def same_status(new: Mapping[str, Any], live: Mapping[str, Any]) -> bool:
    """Equal but for the times a condition carries (no write, no watch event, no loop)."""
    def strip(s: Mapping[str, Any]) -> str:
        body = {k: v for k, v in s.items() if k not in ("conditions", "abortedAt",
                                                        "lastTransitionTime")}
        conds = sorted((str(c.get("type")), str(c.get("status")), str(c.get("reason")),
                        str(c.get("message"))) for c in s.get("conditions") or []
                       if isinstance(c, Mapping))
        return json.dumps([body, conds], sort_keys=True, default=str)
    return strip(new) == strip(live)


# ---- analysis runs ---------------------------------------------------------------------------


def analysis_run(name: str, owner: Mapping[str, Any], revision: str,
                 metrics: Sequence[Mapping[str, Any]], args: Mapping[str, str],
                 templates: Sequence[str]) -> dict[str, Any]:
    """The AnalysisRun object Argo creates for a run: the templates' metrics and the
    resolved args, labelled with the canary's pod template hash, owned by the Rollout."""
    meta = owner.get("metadata") or {}
    return {
        "apiVersion": ARGO_GROUP, "kind": "AnalysisRun",
        "metadata": {"name": name, "namespace": meta.get("namespace"),
                     "labels": {traffic.HASH_LABEL: revision,
                                ROLLOUT_LABEL: str(meta.get("name") or "")},
                     "annotations": {"rollout.argoproj.io/templates": ",".join(templates)},
                     "ownerReferences": [owner_reference(owner)]},
        "spec": {"metrics": [dict(m) for m in metrics],
                 "args": [{"name": k, "value": str(v)} for k, v in sorted(args.items())]},
    }


def analysis_run_status(run: Mapping[str, Any],
                        mono_to_wall: Callable[[float], float]) -> dict[str, Any]:
    """Argo's AnalysisRunStatus from the controller's run record."""
    def when(t: Any) -> str | None:
        return rfc3339(mono_to_wall(float(t))) if isinstance(t, int | float) else None

    results = []
    for m in run.get("metricResults") or []:
        results.append({
            "name": m.get("name"), "phase": m.get("phase"), "count": m.get("count", 0),
            "successful": m.get("successful", 0), "failed": m.get("failed", 0),
            "inconclusive": m.get("inconclusive", 0), "error": m.get("error", 0),
            "consecutiveError": m.get("consecutiveError", 0),
            "message": m.get("message") or None,
            "measurements": [{"phase": x.get("phase"), "startedAt": when(x.get("startedAt")),
                              "finishedAt": when(x.get("finishedAt")),
                              "value": _value(x.get("value")),
                              "message": x.get("message") or None}
                             for x in (m.get("measurements") or [])[-10:]],
        })
    return {"phase": run.get("phase", "Running"), "message": run.get("message") or None,
            "startedAt": when(run.get("startedAt")), "metricResults": results,
            "runSummary": run.get("runSummary") or {},
            "dryRunSummary": run.get("dryRunSummary") or None}


def _value(v: Any) -> str | None:
    """Argo keeps a measurement's value as a string (`[0.998]`)."""
    if v is None:
        return None
    return v if isinstance(v, str) else json.dumps(v)


# ---- commands --------------------------------------------------------------------------------


ACTIONS = ("promote", "abort", "retry", "pause", "resume", "restart", "set-weight")


@dataclass(frozen=True, slots=True)
class Command:
    id: str
    action: str
    actor: str
    reason: str
    full: bool = False
    weight: int | None = None

    @property
    def machine_command(self) -> str:
        return "promote-full" if self.action == "promote" and self.full else self.action


def command_annotation(cmd: Command) -> str:
    body: dict[str, Any] = {"id": cmd.id, "action": cmd.action, "actor": cmd.actor,
                            "reason": cmd.reason}
    if cmd.full:
        body["full"] = True
    if cmd.weight is not None:
        body["weight"] = cmd.weight
    return json.dumps(body, sort_keys=True)


def read_command(obj: Mapping[str, Any]) -> Command | str | None:
    """The pending command on a Rollout/Canary: a Command, an error sentence, or None."""
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(COMMAND_ANNOTATION)
    if not raw:
        return None
    try:
        body = json.loads(raw)
        action = str(body["action"])
        cmd_id = str(body["id"])
    except (ValueError, KeyError, TypeError):
        return f"annotation {COMMAND_ANNOTATION} is not a JSON command with id and action"
    if action not in ACTIONS:
        return f"annotation {COMMAND_ANNOTATION}: unknown action {action!r}"
    weight = body.get("weight")
    if action == "set-weight" and not (isinstance(weight, int) and 0 <= weight <= 100):
        return f"annotation {COMMAND_ANNOTATION}: set-weight needs a weight from 0 to 100"
    return Command(cmd_id, action, str(body.get("actor") or "kubectl"),
                   str(body.get("reason") or ""), bool(body.get("full")),
                   weight if isinstance(weight, int) else None)
