"""Sidecar injection: a Pod -> the RFC 6902 JSONPatch that adds Tollway's two containers.

Pure. Istio's switches, in its order (pkg/kube/inject/inject.go `injectRequired`):
hostNetwork pods and the system namespaces are never injected; the pod label
`sidecar.istio.io/inject` beats the deprecated annotation of the same name; "true"/"yes"/
"on"/"y" inject, any other value does not, no value follows the namespace; the namespace
label `istio-injection=enabled|disabled` (when the caller knows it: the webhook's
namespaceSelector has already applied it on a cluster). A pod carrying
`sidecar.istio.io/status` or a `tollway-proxy` container is never injected twice.

What is added (the app containers are not touched):
- init container `tollway-init`: `tollway iptables` with the pod's
  `traffic.sidecar.istio.io/*` annotations rendered into flags (a malformed one refuses
  the pod with a sentence naming it, as Istio does); root with NET_ADMIN + NET_RAW only;
- container `tollway-proxy`: `tollway proxy --control-plane http://tollway-control-plane.
  <ns>.svc:15010 --token-file <projected token>` as uid/gid 1337 (the uid the capture rules
  exempt), ports 15001/15006/15090, readiness from the proxy's admin, the pod's name,
  namespace, IP and service account from the downward API;
- volume `tollway-token`: a projected service-account token with audience `tollway`,
  which the control plane checks with a TokenReview (tollway.kube.tokenreview).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tollway.capture import rules

INJECT_KEY = "sidecar.istio.io/inject"
STATUS_KEY = "sidecar.istio.io/status"
NAMESPACE_LABEL = "istio-injection"
IGNORED_NAMESPACES = frozenset(("kube-system", "kube-public", "kube-node-lease",
                                "local-path-storage"))
YES = frozenset(("y", "yes", "true", "on"))
PROXY_NAME = "tollway-proxy"
INIT_NAME = "tollway-init"
TOKEN_VOLUME = "tollway-token"
TOKEN_DIR = "/var/run/secrets/tokens"
TOKEN_FILE = "tollway-token"
TOKEN_AUDIENCE = "tollway"
TOKEN_SECONDS = 43200  # Istio's istio-token lifetime; the kubelet refreshes it at 80 %
CONTROL_PLANE_PORT = 15010


class InjectError(ValueError):
    """The pod cannot be injected as written; the message names the field to fix."""


@dataclass(frozen=True)
class Settings:
    """Mesh-wide injection settings (the chart's values)."""

    control_plane_namespace: str = "tollway-system"
    image: str = "tollway:latest"
    capture: rules.Capture = field(default_factory=rules.Capture)

    @property
    def control_plane_url(self) -> str:
        return (f"http://tollway-control-plane.{self.control_plane_namespace}.svc:"
                f"{CONTROL_PLANE_PORT}")


def _meta(pod: Mapping[str, Any], key: str) -> dict[str, str]:
    value = (pod.get("metadata") or {}).get(key) or {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


def decision(pod: Mapping[str, Any], namespace: str,
             namespace_labels: Mapping[str, str] | None = None) -> tuple[bool, str]:
    """(inject?, why) by Istio's precedence. `namespace_labels` None: the webhook's
    namespaceSelector already matched, so the namespace counts as enabled."""
    spec = pod.get("spec") or {}
    if spec.get("hostNetwork"):
        return False, "hostNetwork pods are never injected"
    if namespace in IGNORED_NAMESPACES:
        return False, f"namespace {namespace} is never injected"
    labels, annotations = _meta(pod, "labels"), _meta(pod, "annotations")
    if STATUS_KEY in annotations or any(
            c.get("name") in (PROXY_NAME, INIT_NAME)
            for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]):
        return False, "already injected"
    value = labels.get(INJECT_KEY, annotations.get(INJECT_KEY))
    if namespace_labels is not None:
        ns_switch = namespace_labels.get(NAMESPACE_LABEL)
        if ns_switch == "disabled":
            return False, f"namespace {namespace} has {NAMESPACE_LABEL}=disabled"
        if ns_switch != "enabled":
            if value is not None and value.strip().lower() in YES:
                return True, f"pod {INJECT_KEY}={value}"
            return False, f"namespace {namespace} is not labelled {NAMESPACE_LABEL}=enabled"
    if value is None or not value.strip():
        return True, "the namespace enables injection"
    if value.strip().lower() in YES:
        return True, f"pod {INJECT_KEY}={value}"
    return False, f"pod {INJECT_KEY}={value}"


def _init_container(settings: Settings, capture: rules.Capture) -> dict[str, Any]:
    return {
        "name": INIT_NAME,
        "image": settings.image,
        "command": ["tollway", "iptables", *rules.flags(capture)],
        "securityContext": {
            "runAsUser": 0, "runAsGroup": 0, "runAsNonRoot": False, "privileged": False,
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
        },
        "resources": {"requests": {"cpu": "10m", "memory": "40Mi"}},
    }


def _field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}


def _proxy_container(settings: Settings, capture: rules.Capture) -> dict[str, Any]:
    ready = (f"import urllib.request; urllib.request.urlopen("
             f"'http://127.0.0.1:{rules.ADMIN_PORT}/healthz/ready', timeout=2)")
    return {
        "name": PROXY_NAME,
        "image": settings.image,
        "command": [
            "tollway", "proxy", "--control-plane", settings.control_plane_url,
            "--token-file", f"{TOKEN_DIR}/{TOKEN_FILE}",
            "--workload", "$(POD_NAME)", "--namespace", "$(POD_NAMESPACE)",
            "--service-account", "$(SERVICE_ACCOUNT)",
            "--node-name", "$(POD_NAME).$(POD_NAMESPACE)",
            "--port", str(capture.outbound_port), "--admin-port", str(rules.ADMIN_PORT),
        ],
        "env": [
            _field_env("POD_NAME", "metadata.name"),
            _field_env("POD_NAMESPACE", "metadata.namespace"),
            _field_env("INSTANCE_IP", "status.podIP"),
            _field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        ],
        "ports": [
            {"name": "tollway-out", "containerPort": capture.outbound_port, "protocol": "TCP"},
            {"name": "tollway-in", "containerPort": capture.inbound_port, "protocol": "TCP"},
            {"name": "http-envoy-prom", "containerPort": rules.ADMIN_PORT, "protocol": "TCP"},
        ],
        # The admin listens on the pod's loopback only (its /config_dump is not for the
        # network), so readiness is asked from inside the pod.
        "readinessProbe": {
            "exec": {"command": ["python3", "-c", ready]},
            "initialDelaySeconds": 1, "periodSeconds": 2, "timeoutSeconds": 3,
            "failureThreshold": 30,
        },
        "securityContext": {
            "runAsUser": capture.proxy_uid, "runAsGroup": capture.proxy_gid,
            "runAsNonRoot": True, "privileged": False, "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True}],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
    }


def _token_volume() -> dict[str, Any]:
    return {"name": TOKEN_VOLUME, "projected": {"sources": [{"serviceAccountToken": {
        "audience": TOKEN_AUDIENCE, "expirationSeconds": TOKEN_SECONDS, "path": TOKEN_FILE}}]}}


def _escape(key: str) -> str:
    """A JSON Pointer reference token (RFC 6901): `~` and `/` escaped."""
    return key.replace("~", "~0").replace("/", "~1")


def patch(pod: Mapping[str, Any], settings: Settings) -> list[dict[str, Any]]:
    """The JSONPatch adding the init container, the sidecar, the token volume and the
    status annotation. Raises InjectError for a malformed capture annotation."""
    try:
        capture = rules.from_annotations(_meta(pod, "annotations"), settings.capture)
    except rules.CaptureError as exc:
        raise InjectError(f"pod metadata.annotations: {exc}") from None
    spec = pod.get("spec") or {}
    ops: list[dict[str, Any]] = []

    def append(path: str, existing: Any, item: dict[str, Any]) -> None:
        if existing:
            ops.append({"op": "add", "path": f"{path}/-", "value": item})
        else:
            ops.append({"op": "add", "path": path, "value": [item]})

    append("/spec/initContainers", spec.get("initContainers"),
           _init_container(settings, capture))
    append("/spec/containers", spec.get("containers"), _proxy_container(settings, capture))
    append("/spec/volumes", spec.get("volumes"), _token_volume())
    status = json.dumps({"initContainers": [INIT_NAME], "containers": [PROXY_NAME],
                         "volumes": [TOKEN_VOLUME]}, separators=(",", ":"))
    if (pod.get("metadata") or {}).get("annotations"):
        ops.append({"op": "add", "path": f"/metadata/annotations/{_escape(STATUS_KEY)}",
                    "value": status})
    else:
        ops.append({"op": "add", "path": "/metadata/annotations", "value": {STATUS_KEY: status}})
    return ops
