"""Kubernetes core kinds: Service, Deployment, Namespace, ServiceAccount, Secret.

Structure is strict (unknown fields are typos), but every field people paste from real
Deployments is accepted; blocks Tollway never reads (affinity, volumes, probes' insides)
are accepted as written.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from tollway.config.models.common import (
    IntOrString,
    Labels,
    LabelSelector,
    NonNegInt,
    PortNumber,
    Strict,
)

Blob = dict[str, Any]


class ContainerPort(Strict):
    container_port: PortNumber
    name: str | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] | None = None
    host_port: PortNumber | None = None
    host_ip: str | None = Field(None, alias="hostIP")


class EnvVar(Strict):
    name: str
    value: str | None = None
    value_from: Blob | None = None


class Resources(Strict):
    limits: dict[str, str | int | float] | None = None
    requests: dict[str, str | int | float] | None = None
    claims: list[Blob] | None = None


class Container(Strict):
    name: str
    image: str | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    env: list[EnvVar] | None = None
    env_from: list[Blob] | None = None
    ports: list[ContainerPort] | None = None
    resources: Resources | None = None
    readiness_probe: Blob | None = None
    liveness_probe: Blob | None = None
    startup_probe: Blob | None = None
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    volume_mounts: list[Blob] | None = None
    volume_devices: list[Blob] | None = None
    working_dir: str | None = None
    security_context: Blob | None = None
    lifecycle: Blob | None = None
    termination_message_path: str | None = None
    termination_message_policy: str | None = None
    stdin: bool | None = None
    stdin_once: bool | None = None
    tty: bool | None = None
    resize_policy: list[Blob] | None = None
    restart_policy: str | None = None
    restart_policy_rules: list[Blob] | None = None  # Kubernetes 1.34+


class PodSpec(Strict):
    containers: list[Container] = Field(min_length=1)
    init_containers: list[Container] | None = None
    volumes: list[Blob] | None = None
    service_account_name: str | None = None
    service_account: str | None = None
    automount_service_account_token: bool | None = None
    node_selector: dict[str, str] | None = None
    node_name: str | None = None
    affinity: Blob | None = None
    tolerations: list[Blob] | None = None
    topology_spread_constraints: list[Blob] | None = None
    restart_policy: Literal["Always", "OnFailure", "Never"] | None = None
    termination_grace_period_seconds: NonNegInt | None = None
    active_deadline_seconds: NonNegInt | None = None
    security_context: Blob | None = None
    image_pull_secrets: list[Blob] | None = None
    hostname: str | None = None
    hostname_override: str | None = None  # Kubernetes 1.34+
    subdomain: str | None = None
    dns_policy: str | None = None
    dns_config: Blob | None = None
    host_aliases: list[Blob] | None = None
    host_network: bool | None = None
    host_pid: bool | None = Field(None, alias="hostPID")
    host_ipc: bool | None = Field(None, alias="hostIPC")
    share_process_namespace: bool | None = None
    priority_class_name: str | None = None
    priority: int | None = None
    preemption_policy: str | None = None
    scheduler_name: str | None = None
    runtime_class_name: str | None = None
    enable_service_links: bool | None = None
    readiness_gates: list[Blob] | None = None
    overhead: Blob | None = None
    os: Blob | None = None
    ephemeral_containers: list[Blob] | None = None
    scheduling_gates: list[Blob] | None = None
    resource_claims: list[Blob] | None = None
    resources: Blob | None = None  # pod-level resources (Kubernetes 1.32+)
    host_users: bool | None = None
    set_hostname_as_fqdn: bool | None = Field(None, alias="setHostnameAsFQDN")


class PodMeta(Strict):
    labels: Labels | None = None
    annotations: dict[str, str] | None = None
    name: str | None = None
    namespace: str | None = None
    generate_name: str | None = None
    creation_timestamp: str | None = None  # `kubectl get -o yaml` prints null here


class PodTemplate(Strict):
    metadata: PodMeta | None = None
    spec: PodSpec


class DeploymentSpec(Strict):
    replicas: NonNegInt | None = None
    selector: LabelSelector
    template: PodTemplate
    strategy: Blob | None = None
    min_ready_seconds: NonNegInt | None = None
    revision_history_limit: NonNegInt | None = None
    progress_deadline_seconds: NonNegInt | None = None
    paused: bool | None = None

    @model_validator(mode="after")
    def _rolling_update(self) -> DeploymentSpec:
        # Kubernetes: counts or "N%"; maxSurge and maxUnavailable may not both be 0
        rolling = (self.strategy or {}).get("rollingUpdate") or {}
        if not isinstance(rolling, dict):
            raise ValueError("strategy.rollingUpdate must be a map")
        values = [rolling.get("maxSurge"), rolling.get("maxUnavailable")]
        for name, value in zip(("maxSurge", "maxUnavailable"), values, strict=True):
            ok = value is None or (isinstance(value, int) and not isinstance(value, bool)
                                   and value >= 0) or (
                isinstance(value, str) and value.endswith("%") and value[:-1].isdigit())
            if not ok:
                raise ValueError(f"strategy.rollingUpdate.{name} {value!r} must be a count "
                                 "or a percentage like '25%'")
        if all(v is not None and str(v).rstrip("%") == "0" for v in values):
            raise ValueError("strategy.rollingUpdate.maxSurge and maxUnavailable cannot both "
                             "be 0 (no replica could be replaced); set maxSurge: 1")
        return self

    @model_validator(mode="after")
    def _selector_matches(self) -> DeploymentSpec:
        want = self.selector.match_labels or {}
        have = (self.template.metadata.labels if self.template.metadata else None) or {}
        missing = {k: v for k, v in want.items() if have.get(k) != v}
        if missing:
            shown = ", ".join(f"{k}: {v}" for k, v in missing.items())
            raise ValueError(
                f"selector.matchLabels ({shown}) must also be in template.metadata.labels"
            )
        return self


class ServicePort(Strict):
    port: PortNumber
    name: str | None = None
    target_port: IntOrString | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] | None = None
    node_port: PortNumber | None = None
    app_protocol: str | None = None


class ServiceSpec(Strict):
    selector: Labels | None = None
    ports: list[ServicePort] | None = None
    type: Literal["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"] | None = None
    cluster_ip: str | None = Field(None, alias="clusterIP")
    cluster_ips: list[str] | None = Field(None, alias="clusterIPs")
    external_name: str | None = None
    external_ips: list[str] | None = Field(None, alias="externalIPs")
    session_affinity: Literal["None", "ClientIP"] | None = None
    session_affinity_config: Blob | None = None
    external_traffic_policy: str | None = None
    internal_traffic_policy: str | None = None
    load_balancer_ip: str | None = Field(None, alias="loadBalancerIP")
    load_balancer_source_ranges: list[str] | None = None
    load_balancer_class: str | None = None
    ip_families: list[str] | None = None
    ip_family_policy: str | None = None
    publish_not_ready_addresses: bool | None = None
    health_check_node_port: int | None = None
    allocate_load_balancer_node_ports: bool | None = None
    traffic_distribution: str | None = None


class NamespaceSpec(Strict):
    finalizers: list[str] | None = None


class ServiceAccountBody(Strict):
    secrets: list[Blob] | None = None
    image_pull_secrets: list[Blob] | None = None
    automount_service_account_token: bool | None = None


class SecretBody(Strict):
    type: str | None = None
    data: dict[str, str] | None = None
    string_data: dict[str, str] | None = None
    immutable: bool | None = None

    @field_validator("data")
    @classmethod
    def _base64(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for key, blob in (value or {}).items():
            try:
                base64.b64decode("".join(blob.split()), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(
                    f"data.{key} is not base64; put plain text under stringData instead"
                ) from None
        return value

    @model_validator(mode="after")
    def _tls_keys(self) -> SecretBody:
        # The keys the API server requires for each built-in Secret type.
        keys = set(self.data or {}) | set(self.string_data or {})
        needed = _SECRET_KEYS.get(self.type or "", ())
        missing = [k for k in needed if k not in keys]
        if self.type == "kubernetes.io/basic-auth":
            missing = [] if keys & {"username", "password"} else ["username or password"]
        if missing:
            raise ValueError(f"a {self.type} Secret needs {' and '.join(missing)} in data")
        return self


_SECRET_KEYS = {
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
}
