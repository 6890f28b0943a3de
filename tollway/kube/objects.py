"""Kubernetes objects -> what the control plane reads [pure].

- `to_resource`: an object from the API server -> the same validated `Resource` (and
  findings) `tollway validate` makes from a file, named `k8s:KIND/NS/NAME` in findings;
- `replica_of`: a Pod with a Tollway sidecar, Running and Ready, with an IP -> a
  `registry.Replica` at its pod IP;
- `reconciled`: the `Reconciled` condition for an accepted or refused resource, and
  `merge_conditions` to put it among the conditions other writers keep there.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from tollway.config.findings import Finding
from tollway.config.resource import Resource
from tollway.config.source import Document
from tollway.config.validate import validate_document
from tollway.control.registry import Replica

SIDECAR_CONTAINER = "tollway-proxy"  # the injected sidecar's container name
INBOUND_PORT_NAME = "tw-inbound"  # the sidecar's inbound listener, when it declares one
DEFAULT_INBOUND = 15006  # Istio's inbound capture port
CONDITION = "Reconciled"
_KEEP_META = ("name", "namespace", "labels", "annotations", "generateName")


def source_name(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"k8s:{obj.get('kind')}/{ns + '/' if ns else ''}{meta.get('name')}"


def to_resource(obj: Mapping[str, Any]) -> tuple[Resource | None, list[Finding]]:
    """Validate an API object as `tollway validate` would; status and server metadata
    are not the user's and are left out."""
    meta = obj.get("metadata") or {}
    data = {k: v for k, v in obj.items() if k != "status"}
    data["metadata"] = {k: meta[k] for k in _KEEP_META if k in meta}
    return validate_document(Document(source_name(obj), 0, data, 0, {}))


def _ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in status.get("conditions") or [])


def _workload(pod: Mapping[str, Any]) -> tuple[str, str]:
    """(workload, kind): the Deployment or Rollout behind the pod's ReplicaSet."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    for owner in meta.get("ownerReferences") or []:
        if owner.get("kind") == "ReplicaSet":
            name = str(owner.get("name") or "")
            for label, kind in (("pod-template-hash", "Deployment"),
                                ("rollouts-pod-template-hash", "Rollout")):
                suffix = labels.get(label)
                if suffix and name.endswith("-" + suffix):
                    return name[: -len(suffix) - 1], kind
            return name, "Deployment"
    return str(labels.get("app") or meta.get("name") or ""), "Deployment"


def _container_ports(containers: Sequence[Mapping[str, Any]]) -> list[int]:
    return [int(p["containerPort"]) for c in containers for p in c.get("ports") or []
            if isinstance(p.get("containerPort"), int)]


def replica_of(pod: Mapping[str, Any]) -> Replica | None:
    """The pod as an endpoint of the mesh, or None (no sidecar, not ready, no IP, leaving).

    Other sidecars connect to the pod IP at the sidecar's inbound port: the port the
    sidecar container names `tw-inbound`, else 15006, where istio-init's rules would
    capture inbound traffic.
    """
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    ip = (pod.get("status") or {}).get("podIP")
    containers = spec.get("containers") or []
    sidecars = [c for c in containers if c.get("name") == SIDECAR_CONTAINER]
    if not sidecars or not ip or meta.get("deletionTimestamp") or not _ready(pod):
        return None
    inbound = next((int(p["containerPort"]) for p in sidecars[0].get("ports") or []
                    if p.get("name") == INBOUND_PORT_NAME), DEFAULT_INBOUND)
    app_ports = _container_ports([c for c in containers if c.get("name") != SIDECAR_CONTAINER])
    workload, kind = _workload(pod)
    return Replica(
        workload=workload, kind=kind, namespace=str(meta.get("namespace") or "default"),
        labels=dict(meta.get("labels") or {}),
        service_account=str(spec.get("serviceAccountName") or "default"),
        address=str(ip), port=inbound, app_port=app_ports[0] if app_ports else inbound,
        name=replica_name(pod),
    )


def replica_name(pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('name')}.{meta.get('namespace') or 'default'}"


def reconciled(findings: Sequence[Finding], accepted: bool, generation: int,
               now: str) -> dict[str, Any]:
    """`status.conditions[type=Reconciled]`: True with the warnings, or False with the
    findings that refused it (each `FIELD.PATH: message`, as `tollway validate` says)."""
    shown = [f for f in findings if f.is_error] if not accepted else list(findings)
    message = "; ".join(f"{f.path}: {f.message}" if f.path else f.message for f in shown)
    return {
        "type": CONDITION,
        "status": "True" if accepted else "False",
        "reason": "Accepted" if accepted else "Refused",
        "message": message or ("accepted by the Tollway control plane" if accepted else
                               "refused by the Tollway control plane"),
        "observedGeneration": generation,
        "lastTransitionTime": now,
    }


def _same(a: Mapping[str, Any], b: Mapping[str, Any], generation: bool) -> bool:
    fields = ("status", "reason", "message") + (("observedGeneration",) if generation else ())
    return all(a.get(f) == b.get(f) for f in fields)


def merge_conditions(obj: Mapping[str, Any], condition: Mapping[str, Any], *,
                     same_content: bool = False) -> list[dict[str, Any]] | None:
    """The object's conditions with ours replaced, or None when it already says so
    (no write, so our own status update does not start another round).

    `same_content`: the spec is the one we last wrote status for, so a newer generation
    is our own doing (a CRD without a status subresource bumps `generation` on every
    write, status included) and is not a reason to write again."""
    status = obj.get("status") if isinstance(obj.get("status"), Mapping) else {}
    current = [dict(c) for c in (status or {}).get("conditions") or [] if isinstance(c, Mapping)]
    ours = next((c for c in current if c.get("type") == CONDITION), None)
    if ours is not None and _same(ours, condition, not same_content):
        return None
    new = dict(condition)
    if ours is not None and ours.get("status") == condition.get("status"):
        new["lastTransitionTime"] = ours.get("lastTransitionTime", new["lastTransitionTime"])
    return [c for c in current if c.get("type") != CONDITION] + [new]


def content_digest(obj: Mapping[str, Any]) -> str:
    """What the user wrote (spec and the rest, metadata labels/annotations), not status."""
    meta = obj.get("metadata") or {}
    body = {k: v for k, v in obj.items() if k not in ("status", "metadata")}
    body["_meta"] = {k: meta.get(k) for k in ("labels", "annotations")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
