"""Sidecar injection: a Pod -> the RFC 6902 JSONPatch that adds Tollway's two containers.

Pure. Istio's switches, in its order (pkg/kube/inject/inject.go `injectRequired`):
hostNetwork pods and the system namespaces are never injected; the pod label
`sidecar.istio.io/inject` beats the deprecated annotation of the same name; "true"/"yes"/
"on"/"y" inject, any other value does not, no value follows the namespace; the namespace
label `istio-injection=enabled|disabled` (when the caller knows it: the webhook's
namespaceSelector has already applied it on a cluster). A pod carrying
`sidecar.istio.io/status` or a `tollway-proxy` container is never injected twice.

What is added (the app containers only get their probes rewritten):
- init container `tollway-init`: `tollway iptables` with the pod's
  `traffic.sidecar.istio.io/*` annotations rendered into flags (a malformed one refuses
  the pod with a sentence naming it, as Istio does); root with NET_ADMIN + NET_RAW only;
- container `tollway-proxy`: `tollway proxy --control-plane http://tollway-control-plane.
  <ns>.svc:15010 --token-file <projected token> --capture-port 15006 --status-port 15020
  --drain-seconds 5` (Istio's terminationDrainDuration) as uid/gid 1337 (the uid the
  capture rules exempt), ports 15001/15006/15020/15090, readiness from the status
  port, the pod's name, namespace, IP and service account from the downward API;
- volume `tollway-token`: a projected service-account token with audience `tollway`,
  which the control plane checks with a TokenReview (tollway.kube.tokenreview);
- Istio's probe rewriting: httpGet probes of the app go to the status port
  (`/app-health/<container>/livez|readyz|startupz`), the originals to the sidecar in
  ISTIO_KUBE_APP_PROBERS (tollway.proxy.status answers them by probing the app locally),
  unless `sidecar.istio.io/rewriteAppHTTPProbers: "false"`.

Image, pull policy, command and resources are the chart's `sidecar` values (`Settings`,
read by `from_config` from the control plane's --injection-config file).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
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


STATUS_PORT = 15020  # Istio's pilot-agent port: sidecar readiness and the app's probes
REWRITE_KEY = "sidecar.istio.io/rewriteAppHTTPProbers"
PROBES = (("livenessProbe", "livez"), ("readinessProbe", "readyz"),
          ("startupProbe", "startupz"))
SCRAPE = {"prometheus.io/scrape": "true", "prometheus.io/port": str(STATUS_PORT),
          "prometheus.io/path": "/stats/prometheus"}
DEFAULT_CAPTURE = rules.Capture(exclude_inbound_ports=f"{rules.ADMIN_PORT},{STATUS_PORT}")
DEFAULT_PROXY_RESOURCES: Mapping[str, Any] = {"requests": {"cpu": "100m", "memory": "128Mi"}}
DEFAULT_INIT_RESOURCES: Mapping[str, Any] = {"requests": {"cpu": "10m", "memory": "40Mi"}}


@dataclass(frozen=True)
class Settings:
    """Mesh-wide injection settings: the chart's `sidecar` values, which the control
    plane reads from its `--injection-config` file (see `from_config`)."""

    control_plane_namespace: str = "tollway-system"
    image: str = "tollway:latest"
    image_pull_policy: str = "IfNotPresent"
    # how the image runs Tollway: the sidecar runs `<command> proxy ...`, the init
    # container `<command> iptables ...`
    command: tuple[str, ...] = ("tollway",)
    proxy_resources: Mapping[str, Any] = field(
        default_factory=lambda: dict(DEFAULT_PROXY_RESOURCES))
    init_resources: Mapping[str, Any] = field(
        default_factory=lambda: dict(DEFAULT_INIT_RESOURCES))
    rewrite_probes: bool = True  # Istio's sidecarInjectorWebhook.rewriteAppHTTPProbe
    capture: rules.Capture = DEFAULT_CAPTURE
    # Istio's terminationDrainDuration: after SIGTERM the sidecar keeps serving this long
    # (keep-alive off) while the other sidecars learn the pod is gone (proxy --drain-seconds)
    drain_seconds: float = 5.0

    @property
    def control_plane_url(self) -> str:
        return (f"http://tollway-control-plane.{self.control_plane_namespace}.svc:"
                f"{CONTROL_PLANE_PORT}")


CONFIG_KEYS = ("image", "imagePullPolicy", "command", "resources", "initResources",
               "rewriteAppHTTPProbers", "terminationDrainSeconds")


def from_config(data: Any, source: str, control_plane_namespace: str) -> Settings:
    """The injector's config (the chart renders it from `.Values.sidecar`) -> Settings;
    InjectError naming the file and key when a value is not what it must be."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise InjectError(f"{source}: must be a mapping of {', '.join(CONFIG_KEYS)}")
    unknown = sorted(set(map(str, data)) - set(CONFIG_KEYS))
    if unknown:
        raise InjectError(f"{source}: unknown key {unknown[0]!r}; "
                          f"known: {', '.join(CONFIG_KEYS)}")
    out = Settings(control_plane_namespace=control_plane_namespace)
    changes: dict[str, Any] = {}
    image = data.get("image")
    if image is not None:
        if not isinstance(image, str) or not image.strip():
            raise InjectError(f"{source}: image must be a non-empty image reference")
        changes["image"] = image.strip()
    policy = data.get("imagePullPolicy")
    if policy is not None:
        if policy not in ("Always", "IfNotPresent", "Never"):
            raise InjectError(f"{source}: imagePullPolicy must be Always, IfNotPresent "
                              f"or Never, not {policy!r}")
        changes["image_pull_policy"] = policy
    command = data.get("command")
    if command is not None:
        if (not isinstance(command, list) or not command
                or not all(isinstance(c, str) and c for c in command)):
            raise InjectError(f"{source}: command must be a non-empty list of strings "
                              "(for example [tollway])")
        changes["command"] = tuple(command)
    for key, attr in (("resources", "proxy_resources"), ("initResources", "init_resources")):
        value = data.get(key)
        if value is None:
            continue
        if not isinstance(value, Mapping) or set(map(str, value)) - {"requests", "limits"}:
            raise InjectError(f"{source}: {key} must be a mapping with requests and/or "
                              "limits (as a container's resources)")
        changes[attr] = {str(k): dict(v or {}) for k, v in value.items()}
    rewrite = data.get("rewriteAppHTTPProbers")
    if rewrite is not None:
        if not isinstance(rewrite, bool):
            raise InjectError(f"{source}: rewriteAppHTTPProbers must be true or false")
        changes["rewrite_probes"] = rewrite
    drain = data.get("terminationDrainSeconds")
    if drain is not None:
        if isinstance(drain, bool) or not isinstance(drain, (int, float)) or drain < 0:
            raise InjectError(f"{source}: terminationDrainSeconds must be a number of "
                              f"seconds, 0 or more (Istio's default is 5), not {drain!r}")
        changes["drain_seconds"] = float(drain)
    return replace(out, **changes)


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
        "imagePullPolicy": settings.image_pull_policy,
        "command": [*settings.command, "iptables", *rules.flags(capture)],
        "securityContext": {
            "runAsUser": 0, "runAsGroup": 0, "runAsNonRoot": False, "privileged": False,
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
        },
        "resources": _copy(settings.init_resources),
    }


def _copy(resources: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): dict(v) for k, v in resources.items()}


def _field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}


def _proxy_container(settings: Settings, capture: rules.Capture,
                     probers: Mapping[str, Any]) -> dict[str, Any]:
    env = [
        _field_env("POD_NAME", "metadata.name"),
        _field_env("POD_NAMESPACE", "metadata.namespace"),
        _field_env("INSTANCE_IP", "status.podIP"),
        _field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
    ]
    if probers:
        env.append({"name": "ISTIO_KUBE_APP_PROBERS",
                    "value": json.dumps(probers, separators=(",", ":"), sort_keys=True)})
    return {
        "name": PROXY_NAME,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": [
            *settings.command, "proxy", "--control-plane", settings.control_plane_url,
            "--token-file", f"{TOKEN_DIR}/{TOKEN_FILE}",
            "--workload", "$(POD_NAME)", "--namespace", "$(POD_NAMESPACE)",
            "--service-account", "$(SERVICE_ACCOUNT)",
            "--node-name", "$(POD_NAME).$(POD_NAMESPACE)", "--address", "$(INSTANCE_IP)",
            "--port", str(capture.outbound_port), "--capture-port", str(capture.inbound_port),
            "--status-port", str(STATUS_PORT), "--admin-port", str(rules.ADMIN_PORT),
            "--drain-seconds", f"{settings.drain_seconds:g}",
        ],
        "env": env,
        "ports": [
            {"name": "tollway-out", "containerPort": capture.outbound_port, "protocol": "TCP"},
            {"name": "tollway-in", "containerPort": capture.inbound_port, "protocol": "TCP"},
            {"name": "tollway-status", "containerPort": STATUS_PORT, "protocol": "TCP"},
            {"name": "http-envoy-prom", "containerPort": rules.ADMIN_PORT, "protocol": "TCP"},
        ],
        # The status port is excluded from capture: the kubelet reaches it directly.
        "readinessProbe": {
            "httpGet": {"path": "/healthz/ready", "port": STATUS_PORT, "scheme": "HTTP"},
            "initialDelaySeconds": 1, "periodSeconds": 2, "timeoutSeconds": 3,
            "failureThreshold": 30,
        },
        "securityContext": {
            "runAsUser": capture.proxy_uid, "runAsGroup": capture.proxy_gid,
            "runAsNonRoot": True, "privileged": False, "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True}],
        "resources": _copy(settings.proxy_resources),
    }


def rewrites_probes(pod: Mapping[str, Any], settings: Settings) -> bool:
    """The pod annotation `sidecar.istio.io/rewriteAppHTTPProbers` over the mesh default."""
    value = _meta(pod, "annotations").get(REWRITE_KEY)
    if value is None or not value.strip():
        return settings.rewrite_probes
    return value.strip().lower() in YES


def _probe_port(container: Mapping[str, Any], port: Any) -> int | None:
    """An httpGet port as a number: a named port is looked up in the container's ports."""
    if isinstance(port, bool):
        return None
    if isinstance(port, int):
        return port
    if isinstance(port, str):
        if port.isdigit():
            return int(port)
        for p in container.get("ports") or []:
            if p.get("name") == port and isinstance(p.get("containerPort"), int):
                return int(p["containerPort"])
    return None


def probe_rewrites(pod: Mapping[str, Any], settings: Settings
                   ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Istio's probe rewriting: each app container's httpGet liveness/readiness/startup
    probe is pointed at the sidecar's status port, path `/app-health/<container>/<livez|
    readyz|startupz>`, and the original is returned (ISTIO_KUBE_APP_PROBERS) for the
    sidecar to run against the app on the pod's loopback. Probes whose port cannot be
    resolved, and exec/tcpSocket/grpc probes, stay as they are."""
    if not rewrites_probes(pod, settings):
        return [], {}
    ops: list[dict[str, Any]] = []
    probers: dict[str, Any] = {}
    for i, container in enumerate((pod.get("spec") or {}).get("containers") or []):
        name = str(container.get("name") or "")
        for key, kind in PROBES:
            probe = container.get(key)
            get = probe.get("httpGet") if isinstance(probe, Mapping) else None
            if not isinstance(get, Mapping):
                continue
            port = _probe_port(container, get.get("port"))
            if port is None:
                continue
            path = f"/app-health/{name}/{kind}"
            original = {k: v for k, v in get.items() if k != "host"}
            original["port"] = port
            probers[path] = {"httpGet": original,
                             "timeoutSeconds": probe.get("timeoutSeconds") or 1}
            new = dict(probe)
            new["httpGet"] = {"path": path, "port": STATUS_PORT, "scheme": "HTTP"}
            ops.append({"op": "replace", "path": f"/spec/containers/{i}/{key}", "value": new})
    return ops, probers


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

    probe_ops, probers = probe_rewrites(pod, settings)
    ops += probe_ops
    append("/spec/initContainers", spec.get("initContainers"),
           _init_container(settings, capture))
    append("/spec/containers", spec.get("containers"),
           _proxy_container(settings, capture, probers))
    append("/spec/volumes", spec.get("volumes"), _token_volume())
    status = json.dumps({"initContainers": [INIT_NAME], "containers": [PROXY_NAME],
                         "volumes": [TOKEN_VOLUME]}, separators=(",", ":"))
    existing = _meta(pod, "annotations")
    # Istio's scrape annotations (unless the pod has its own): Prometheus reads the
    # sidecar's metrics on the status port
    added = {STATUS_KEY: status, **{k: v for k, v in SCRAPE.items() if k not in existing}}
    if (pod.get("metadata") or {}).get("annotations"):
        for key, value in added.items():
            ops.append({"op": "add", "path": f"/metadata/annotations/{_escape(key)}",
                        "value": value})
    else:
        ops.append({"op": "add", "path": "/metadata/annotations", "value": added})
    return ops
