"""Kubernetes objects -> what the control plane reads [pure].

- `to_resource`: an object from the API server -> the same validated `Resource` (and
  findings) `tollway validate` makes from a file, named `k8s:KIND/NS/NAME` in findings;
- `replica_of`: a Pod Running and Ready with an IP -> a `registry.Replica` at its pod IP
  (mTLS when it has a Tollway sidecar, plaintext otherwise); `pod_info`: what a pod's
  sidecar gets from its pod (labels, workload, container ports);
- `reconciled`: the `Reconciled` condition for an accepted or refused resource, and
  `merge_conditions` to put it among the conditions other writers keep there.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tollway.config.findings import Finding
from tollway.config.resource import Resource
from tollway.config.source import Document
from tollway.config.validate import validate_document
from tollway.control.registry import Replica

SIDECAR_CONTAINER = "tollway-proxy"  # the injected sidecar's container name
DEFAULT_APP_PORT = 8080  # a pod that declares no container port (Service targetPorts rule)
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


def _named_ports(containers: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    return {str(p["name"]): int(p["containerPort"]) for c in containers
            for p in c.get("ports") or []
            if p.get("name") and isinstance(p.get("containerPort"), int)}


def _apps(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [c for c in (pod.get("spec") or {}).get("containers") or []
            if c.get("name") != SIDECAR_CONTAINER]


def has_sidecar(pod: Mapping[str, Any]) -> bool:
    return any(c.get("name") == SIDECAR_CONTAINER
               for c in (pod.get("spec") or {}).get("containers") or [])


def replica_of(pod: Mapping[str, Any]) -> Replica | None:
    """The pod as an endpoint of the mesh, or None (not ready, no IP, leaving).

    As an EndpointSlice lists it: the pod IP at the Service's targetPort (a named one
    looked up in the containers' ports). A pod with a Tollway sidecar is an mTLS endpoint
    (its capture rules send the connection to the sidecar's inbound 15006, which serves
    it by that original port); a pod without one is a plaintext endpoint, so meshed
    clients reach non-meshed services too.
    """
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    ip = (pod.get("status") or {}).get("podIP")
    if not ip or meta.get("deletionTimestamp") or not _ready(pod):
        return None
    apps = _apps(pod)
    app_ports = _container_ports(apps)
    workload, kind = _workload(pod)
    return Replica(
        workload=workload, kind=kind, namespace=str(meta.get("namespace") or "default"),
        labels=dict(meta.get("labels") or {}),
        service_account=str(spec.get("serviceAccountName") or "default"),
        address=str(ip), port=app_ports[0] if app_ports else DEFAULT_APP_PORT,
        app_port=app_ports[0] if app_ports else DEFAULT_APP_PORT,
        name=replica_name(pod), target_ports=True, named_ports=_named_ports(apps),
        sidecar=has_sidecar(pod),
    )


@dataclass(frozen=True)
class PodInfo:
    """What the control plane knows of a pod whose sidecar asks for config: the
    sidecar's node carries the pod's labels and workload (from the API server, not from
    the sidecar's word) and its inbound listener a chain per container port."""

    labels: Mapping[str, str]
    workload: str
    app_ports: tuple[int, ...]


def pod_info(pod: Mapping[str, Any]) -> PodInfo | None:
    """None for a pod without a Tollway sidecar."""
    if not has_sidecar(pod):
        return None
    meta = pod.get("metadata") or {}
    return PodInfo(labels=dict(meta.get("labels") or {}), workload=_workload(pod)[0],
                   app_ports=tuple(sorted(set(_container_ports(_apps(pod))))))


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
