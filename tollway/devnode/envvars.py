"""A container's environment and argv, computed as the kubelet computes them; no API calls here.

Order (kubelet `makeEnvironmentVariables`): Service link variables first (when
enableServiceLinks is not false), then `envFrom`, then `env` in order; `$(VAR)` in values,
`command` and `args` expands against what is defined so far (`$$` escapes). ConfigMap and
Secret values are looked up by the caller and passed in, so this stays testable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from lightkube.models.core_v1 import Container, EnvVar, ObjectFieldSelector

from tollway.kit import fieldref

_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class EnvError(ValueError):
    """A variable that cannot be computed; the message names container, variable and fix."""


@dataclass(frozen=True)
class PodFacts:
    """What fieldRef can read: metadata and the addresses this agent assigned."""

    name: str
    namespace: str
    uid: str
    node_name: str
    service_account: str
    pod_ip: str
    host_ip: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]


@dataclass(frozen=True)
class ServicePort:
    name: str
    port: int
    protocol: str


@dataclass(frozen=True)
class ServiceFacts:
    name: str
    cluster_ip: str
    ports: tuple[ServicePort, ...]


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: unknown references stay as written, `$$` becomes `$`."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _REF.sub(sub, text)


def field_value(ref: ObjectFieldSelector, pod: PodFacts, where: str) -> str:
    path = ref.fieldPath
    simple = {
        "metadata.name": pod.name,
        "metadata.namespace": pod.namespace,
        "metadata.uid": pod.uid,
        "spec.nodeName": pod.node_name,
        "spec.serviceAccountName": pod.service_account,
        "status.podIP": pod.pod_ip,
        "status.podIPs": pod.pod_ip,
        "status.hostIP": pod.host_ip,
        "status.hostIPs": pod.host_ip,
    }
    if path in simple:
        return simple[path]
    if path.startswith(("metadata.labels[", "metadata.annotations[")):
        try:
            return fieldref.metadata_value({"labels": pod.labels,
                                            "annotations": pod.annotations}, path)
        except ValueError as e:
            raise EnvError(f"{where}: fieldRef.fieldPath {path!r}: {e}") from e
    raise EnvError(
        f"{where}: fieldRef.fieldPath {path!r} is not supported; use one of {sorted(simple)}"
    )


def service_env(services: list[ServiceFacts]) -> dict[str, str]:
    """Docker-link style variables for every Service with a ClusterIP (kubelet `envvars.go`)."""
    out: dict[str, str] = {}
    for svc in sorted(services, key=lambda s: s.name):
        if not svc.cluster_ip or svc.cluster_ip == "None" or not svc.ports:
            continue
        prefix = svc.name.upper().replace("-", "_")
        first = svc.ports[0]
        out[f"{prefix}_SERVICE_HOST"] = svc.cluster_ip
        out[f"{prefix}_SERVICE_PORT"] = str(first.port)
        for p in svc.ports:
            if p.name:
                out[f"{prefix}_SERVICE_PORT_{p.name.upper().replace('-', '_')}"] = str(p.port)
        proto = first.protocol.lower()
        out[f"{prefix}_PORT"] = f"{proto}://{svc.cluster_ip}:{first.port}"
        for p in svc.ports:
            base = f"{prefix}_PORT_{p.port}_{p.protocol.upper()}"
            out[base] = f"{p.protocol.lower()}://{svc.cluster_ip}:{p.port}"
            out[f"{base}_PROTO"] = p.protocol.lower()
            out[f"{base}_PORT"] = str(p.port)
            out[f"{base}_ADDR"] = svc.cluster_ip
    return out


def _one(
    var: EnvVar,
    pod: PodFacts,
    env: Mapping[str, str],
    maps: Mapping[str, Mapping[str, str]],
    secrets: Mapping[str, Mapping[str, str]],
    where: str,
) -> str | None:
    if var.valueFrom is None:
        return expand(var.value or "", env)
    src = var.valueFrom
    if src.fieldRef is not None:
        return field_value(src.fieldRef, pod, where)
    for ref, store, kind in (
        (src.configMapKeyRef, maps, "configMap"),
        (src.secretKeyRef, secrets, "secret"),
    ):
        if ref is None:
            continue
        data = store.get(ref.name or "")
        if data is None or ref.key not in data:
            if ref.optional:
                return None
            raise EnvError(f"{where}: {kind} {ref.name!r} key {ref.key!r} not found; create it")
        return data[ref.key]
    raise EnvError(f"{where}: valueFrom needs fieldRef, configMapKeyRef or secretKeyRef here")


def container_env(
    container: Container,
    pod: PodFacts,
    *,
    services: list[ServiceFacts] = (),  # type: ignore[assignment]
    config_maps: Mapping[str, Mapping[str, str]] | None = None,
    secrets: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, str]:
    maps = config_maps or {}
    secs = secrets or {}
    env = service_env(list(services))
    for source in container.envFrom or []:
        prefix = source.prefix or ""
        if source.configMapRef is not None:
            env.update(
                {prefix + k: v for k, v in maps.get(source.configMapRef.name or "", {}).items()}
            )
        if source.secretRef is not None:
            env.update(
                {prefix + k: v for k, v in secs.get(source.secretRef.name or "", {}).items()}
            )
    for var in container.env or []:
        where = f"container {container.name!r} env {var.name!r}"
        value = _one(var, pod, env, maps, secs, where)
        if value is not None:
            env[var.name] = value
    return env


def container_argv(container: Container, env: Mapping[str, str]) -> list[str]:
    """command + args, expanded. No command means 'the image's entrypoint', which devnode lacks."""
    if not container.command:
        raise EnvError(
            f"container {container.name!r} has no command: devnode runs the container's command on "
            f"the host and does not pull image {container.image!r}; set spec.containers[].command"
        )
    return [expand(x, env) for x in [*container.command, *(container.args or [])]]
