"""Kinds Tollway accepts but does not act on: their top-level shape, typed.

Users keep HPAs, Gateway API routes, EnvoyFilters and the like in the same folders as
their VirtualServices. Refusing them as unknown made whole folders unusable; accepting
them silently would hide that they have no effect. So each is validated to the depth
that catches real mistakes (wrong types in the fields every manifest has, misspelled
top-level fields), kept out of the resource set, and reported with one warning naming
what Tollway does not enforce (the reason lives in `kinds.py`, beside the kind).
Nested blocks Tollway never reads are `Blob`s: their insides are the upstream
controller's business, not ours.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, model_validator

from tollway.config.models.common import (
    IntOrString,
    Labels,
    LabelSelector,
    NonNegInt,
    PortNumber,
    Strict,
    WorkloadSelector,
)
from tollway.config.models.k8s import PodTemplate

Blob = dict[str, Any]
PositiveInt = Annotated[int, Field(ge=1)]

# --- plain Kubernetes --------------------------------------------------------------


class ConfigMapBody(Strict):
    data: dict[str, str] | None = None
    binary_data: dict[str, str] | None = None
    immutable: bool | None = None


class HorizontalPodAutoscalerSpec(Strict):
    scale_target_ref: Blob
    min_replicas: PositiveInt | None = None
    max_replicas: NonNegInt
    metrics: list[Blob] | None = None
    behavior: Blob | None = None
    target_cpu_utilization_percentage: NonNegInt | None = Field(
        None, alias="targetCPUUtilizationPercentage")


class PodDisruptionBudgetSpec(Strict):
    min_available: IntOrString | None = None
    max_unavailable: IntOrString | None = None
    selector: LabelSelector | None = None
    unhealthy_pod_eviction_policy: Literal["IfHealthyBudget", "AlwaysAllow"] | None = None


class IngressSpec(Strict):
    ingress_class_name: str | None = None
    default_backend: Blob | None = None
    backend: Blob | None = None  # networking.k8s.io/v1beta1
    tls: list[Blob] | None = None
    rules: list[Blob] | None = None


class IngressClassSpec(Strict):
    controller: str | None = None
    parameters: Blob | None = None


class NetworkPolicySpec(Strict):
    # Optional since Kubernetes 1.31 (absent = all pods, like `{}`); Istio's ambient
    # tests apply policies without it.
    pod_selector: LabelSelector | None = None
    policy_types: list[Literal["Ingress", "Egress"]] | None = None
    ingress: list[Blob] | None = None
    egress: list[Blob] | None = None


class RoleBody(Strict):
    rules: list[Blob] | None = None


class ClusterRoleBody(Strict):
    rules: list[Blob] | None = None
    aggregation_rule: Blob | None = None


class RoleBindingBody(Strict):
    subjects: list[Blob] | None = None
    role_ref: Blob


class StatefulSetSpec(Strict):
    replicas: NonNegInt | None = None
    selector: LabelSelector
    template: PodTemplate
    service_name: str | None = None
    volume_claim_templates: list[Blob] | None = None
    pod_management_policy: Literal["OrderedReady", "Parallel"] | None = None
    update_strategy: Blob | None = None
    revision_history_limit: NonNegInt | None = None
    min_ready_seconds: NonNegInt | None = None
    persistent_volume_claim_retention_policy: Blob | None = None
    ordinals: Blob | None = None


class DaemonSetSpec(Strict):
    selector: LabelSelector
    template: PodTemplate
    update_strategy: Blob | None = None
    min_ready_seconds: NonNegInt | None = None
    revision_history_limit: NonNegInt | None = None


class ReplicaSetSpec(Strict):
    replicas: NonNegInt | None = None
    selector: LabelSelector
    template: PodTemplate | None = None
    min_ready_seconds: NonNegInt | None = None


class JobSpec(Strict):
    template: PodTemplate
    parallelism: NonNegInt | None = None
    completions: NonNegInt | None = None
    active_deadline_seconds: NonNegInt | None = None
    backoff_limit: NonNegInt | None = None
    backoff_limit_per_index: NonNegInt | None = None
    max_failed_indexes: NonNegInt | None = None
    selector: LabelSelector | None = None
    manual_selector: bool | None = None
    ttl_seconds_after_finished: NonNegInt | None = None
    completion_mode: Literal["NonIndexed", "Indexed"] | None = None
    suspend: bool | None = None
    pod_failure_policy: Blob | None = None
    pod_replacement_policy: str | None = None
    success_policy: Blob | None = None
    managed_by: str | None = None


class CronJobSpec(Strict):
    schedule: str = Field(min_length=1)
    time_zone: str | None = None
    starting_deadline_seconds: NonNegInt | None = None
    concurrency_policy: Literal["Allow", "Forbid", "Replace"] | None = None
    suspend: bool | None = None
    job_template: Blob
    successful_jobs_history_limit: NonNegInt | None = None
    failed_jobs_history_limit: NonNegInt | None = None


class PersistentVolumeClaimSpec(Strict):
    access_modes: list[str] | None = None
    resources: Blob | None = None
    storage_class_name: str | None = None
    volume_mode: Literal["Filesystem", "Block"] | None = None
    volume_name: str | None = None
    selector: LabelSelector | None = None
    data_source: Blob | None = None
    data_source_ref: Blob | None = None
    volume_attributes_class_name: str | None = None


class LimitRangeSpec(Strict):
    limits: list[Blob]


class ResourceQuotaSpec(Strict):
    hard: dict[str, str | int] | None = None
    scopes: list[str] | None = None
    scope_selector: Blob | None = None


class PriorityClassBody(Strict):
    value: int
    global_default: bool | None = None
    description: str | None = None
    preemption_policy: str | None = None


# --- Gateway API (gateway.networking.k8s.io) -----------------------------------------


class GatewayClassSpec(Strict):
    controller_name: str = Field(min_length=1)
    parameters_ref: Blob | None = None
    description: str | None = None


class K8sGatewaySpec(Strict):
    gateway_class_name: str = Field(min_length=1)
    listeners: list[Blob] = Field(min_length=1, max_length=64)
    addresses: list[Blob] | None = None
    infrastructure: Blob | None = None
    backend_tls: Blob | None = Field(None, alias="backendTLS")  # experimental <= v1.3
    allowed_listeners: Blob | None = None
    tls: Blob | None = None  # v1.4+: frontend validation, backend client certificate
    default_scope: str | None = None


class ListenerSetSpec(Strict):
    """Gateway API ListenerSet (v1.6 standard): listeners attached to a parent Gateway."""

    parent_ref: Blob
    listeners: list[Blob] = Field(min_length=1, max_length=64)


class RouteSpec(Strict):
    """HTTPRoute, GRPCRoute, TLSRoute, TCPRoute, UDPRoute share this top level."""

    parent_refs: list[Blob] | None = None
    hostnames: list[str] | None = None
    rules: list[Blob] | None = None
    use_default_gateways: str | None = None  # v1.6 experimental


class ReferenceGrantSpec(Strict):
    from_: list[Blob] = Field(alias="from", min_length=1)
    to: list[Blob] = Field(min_length=1)


class BackendTLSPolicySpec(Strict):
    target_refs: list[Blob] = Field(min_length=1)
    validation: Blob
    options: dict[str, str] | None = None


# --- Istio kinds Tollway does not implement ------------------------------------------


class LabelsSelector(Strict):
    labels: Labels | None = None


class EnvoyFilterSpec(Strict):
    workload_selector: LabelsSelector | None = None
    target_refs: list[Blob] | None = None
    config_patches: list[Blob] | None = None
    priority: int | None = None


_WASM_SCHEMES = ("http", "https", "oci", "file")


def _wasm_url(value: str) -> str:
    # The WasmPlugin CRD's rule: a URL whose scheme is http, https, oci or file, or a
    # scheme-less reference (`ghcr.io/org/plugin:v1`) that parses with http:// in front.
    scheme, sep, _ = value.partition("://")
    if sep and scheme not in _WASM_SCHEMES:
        raise ValueError(f"url '{value}' must use one of the schemes {', '.join(_WASM_SCHEMES)}")
    if not sep and not urlsplit("http://" + value).hostname:
        raise ValueError(f"url '{value}' is not a URL or an image reference")
    return value


class WasmEnvVar(Strict):
    name: str = Field(min_length=1, max_length=256)
    value: str | None = Field(None, max_length=2048)
    value_from: Literal["INLINE", "HOST"] | None = None

    @model_validator(mode="after")
    def _inline(self) -> WasmEnvVar:
        if self.value_from == "HOST" and self.value is not None:
            raise ValueError("value may only be set when valueFrom is INLINE")
        return self


class WasmVmConfig(Strict):
    env: list[WasmEnvVar] | None = Field(None, max_length=256)

    @model_validator(mode="after")
    def _unique(self) -> WasmVmConfig:
        names = [e.name for e in self.env or ()]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"env name '{dup[0]}' is listed twice")
        return self


class WasmPluginSpec(Strict):
    selector: WorkloadSelector | None = None
    target_ref: Blob | None = None
    target_refs: list[Blob] | None = None
    url: Annotated[str, AfterValidator(_wasm_url)] = Field(min_length=1)
    sha256: str | None = Field(None, pattern=r"(^$|^[a-f0-9]{64}$)")
    image_pull_policy: Literal["UNSPECIFIED_POLICY", "IfNotPresent", "Always"] | None = None
    image_pull_secret: str | None = Field(None, min_length=1, max_length=253)
    plugin_config: Blob | None = None
    plugin_name: str | None = Field(None, min_length=1, max_length=256)
    phase: Literal["UNSPECIFIED_PHASE", "AUTHN", "AUTHZ", "STATS"] | None = None
    priority: int | None = None
    fail_strategy: Literal["FAIL_CLOSE", "FAIL_OPEN", "FAIL_RELOAD"] | None = None
    vm_config: WasmVmConfig | None = None
    match: list[Blob] | None = None
    type: Literal["UNSPECIFIED_PLUGIN_TYPE", "HTTP", "NETWORK"] | None = None
    verification_key: str | None = None


class TrafficExtensionSpec(Strict):
    """Istio's TrafficExtension (extensions.istio.io/v1alpha1): Lua or Wasm code."""

    selector: WorkloadSelector | None = None
    target_refs: list[Blob] | None = None
    phase: Literal["UNSPECIFIED", "AUTHN", "AUTHZ", "STATS"] | None = None
    priority: int | None = None
    match: list[Blob] | None = None
    lua: Blob | None = None
    wasm: Blob | None = None


class ProxyConfigSpec(Strict):
    selector: WorkloadSelector | None = None
    concurrency: NonNegInt | None = None
    environment_variables: dict[str, str] | None = None
    image: Blob | None = None


class WorkloadGroupMeta(Strict):
    labels: Labels | None = None
    annotations: dict[str, str] | None = None


class ProbeExec(Strict):
    command: list[Annotated[str, Field(min_length=1)]]


class ProbeHeader(Strict):
    name: str | None = Field(None, pattern=r"^[-_A-Za-z0-9]+$")
    value: str | None = None


class ProbeHttpGet(Strict):
    path: str | None = None
    port: PortNumber
    host: str | None = None
    scheme: Literal["", "HTTP", "HTTPS"] | None = None
    http_headers: list[ProbeHeader] | None = None


class ProbeTcpSocket(Strict):
    host: str | None = None
    port: PortNumber


class ProbeGrpc(Strict):
    port: PortNumber | None = None
    service: str | None = None


class ReadinessProbe(Strict):
    """Istio's WorkloadGroup probe (the CRD's schema: one action, ports 1-65535)."""

    initial_delay_seconds: NonNegInt | None = None
    timeout_seconds: NonNegInt | None = None
    period_seconds: NonNegInt | None = None
    success_threshold: NonNegInt | None = None
    failure_threshold: NonNegInt | None = None
    http_get: ProbeHttpGet | None = None
    tcp_socket: ProbeTcpSocket | None = None
    exec: ProbeExec | None = None
    grpc: ProbeGrpc | None = None

    @model_validator(mode="after")
    def _one(self) -> ReadinessProbe:
        set_ = [k for k in ("http_get", "tcp_socket", "exec", "grpc") if getattr(self, k)]
        if len(set_) > 1:
            raise ValueError("a probe sets one of httpGet, tcpSocket, exec or grpc")
        return self


class WorkloadGroupSpec(Strict):
    metadata: WorkloadGroupMeta | None = None
    template: Blob
    probe: ReadinessProbe | None = None


# --- Argo and Flagger ----------------------------------------------------------------


class ExperimentSpec(Strict):
    templates: list[Blob] = Field(min_length=1)
    duration: str | None = None
    progress_deadline_seconds: NonNegInt | None = None
    terminate: bool | None = None
    analyses: list[Blob] | None = None
    scale_down_delay_seconds: NonNegInt | None = None
    dry_run: list[Blob] | None = None
    measurement_retention: list[Blob] | None = None
    analysis_run_metadata: Blob | None = None


class AlertProviderSpec(Strict):
    type: str = Field(min_length=1)
    channel: str | None = None
    username: str | None = None
    address: str | None = None
    proxy: str | None = None
    secret_ref: Blob | None = None
    cert_secret_ref: Blob | None = None
