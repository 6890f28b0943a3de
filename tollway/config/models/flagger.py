"""Flagger: Canary and MetricTemplate (flagger.app/v1beta1)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from tollway.config.models.common import GoDuration, NonNegInt, PortNumber, Strict, Weight
from tollway.config.models.istio_vs import HTTPMatchRequest

Blob = dict[str, Any]
BUILTIN_METRICS = ("request-success-rate", "request-duration")


class TargetRef(Strict):
    api_version: str | None = None
    kind: str
    name: str


class CanaryService(Strict):
    port: PortNumber
    name: str | None = None
    port_name: str | None = None
    target_port: int | str | None = None
    port_discovery: bool | None = None
    app_protocol: str | None = None
    timeout: GoDuration | None = None
    gateways: list[str] | None = None
    gateway_refs: list[Blob] | None = None  # Gateway API parentRefs (provider gatewayapi)
    hosts: list[str] | None = None
    backend_timeout: GoDuration | None = None
    mesh_name: str | None = None  # App Mesh
    backends: list[str] | None = None  # App Mesh
    unmanaged_metadata: Blob | None = None
    headless: bool | None = None
    mirror: list[Blob] | None = None  # Gateway API request mirror filters
    traffic_distribution: str | None = None
    traffic_policy: Blob | None = None
    match: list[Blob] | None = None
    rewrite: Blob | None = None
    retries: Blob | None = None
    headers: Blob | None = None
    cors_policy: Blob | None = None
    apex: Blob | None = None
    primary: Blob | None = None
    canary: Blob | None = None
    delegation: bool | None = None


class SessionAffinity(Strict):
    cookie_name: str | None = None
    primary_cookie_name: str | None = None
    max_age: NonNegInt | None = None
    domain: str | None = None
    http_only: bool | None = None
    partitioned: bool | None = None
    path: str | None = None
    same_site: str | None = None
    secure: bool | None = None


class ThresholdRange(Strict):
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _some(self) -> ThresholdRange:
        if self.min is None and self.max is None:
            raise ValueError("thresholdRange needs min or max")
        return self


class MetricRef(Strict):
    name: str
    namespace: str | None = None
    api_version: str | None = None
    kind: str | None = None


class CanaryMetric(Strict):
    name: str = Field(min_length=1)
    interval: GoDuration | None = None
    threshold: float | None = None
    threshold_range: ThresholdRange | None = None
    query: str | None = None
    template_ref: MetricRef | None = None
    template_variables: dict[str, str] | None = None

    @model_validator(mode="after")
    def _source(self) -> CanaryMetric:
        if self.name not in BUILTIN_METRICS and not self.template_ref and not self.query:
            raise ValueError(f"metric '{self.name}' is not a builtin "
                             f"({', '.join(BUILTIN_METRICS)}); give it a templateRef")
        return self


WebhookType = Literal["confirm-rollout", "pre-rollout", "rollout", "confirm-traffic-increase",
                      "confirm-promotion", "post-rollout", "rollback", "event"]


class Webhook(Strict):
    name: str
    type: WebhookType | None = None
    url: str
    timeout: GoDuration | None = None
    metadata: dict[str, str] | None = None
    retries: NonNegInt | None = None
    mute_alert: bool | None = None
    disable_tls: bool | None = Field(None, alias="disableTLS")


class CanaryAnalysis(Strict):
    interval: GoDuration | None = None
    iterations: NonNegInt | None = None
    threshold: NonNegInt | None = None
    max_weight: Weight | None = None
    step_weight: Weight | None = None
    step_weights: list[Weight] | None = None
    step_weight_promotion: Weight | None = None
    primary_ready_threshold: Weight | None = None
    canary_ready_threshold: Weight | None = None
    mirror: bool | None = None
    mirror_weight: Weight | None = None
    match: list[HTTPMatchRequest] | None = None
    metrics: list[CanaryMetric] | None = None
    webhooks: list[Webhook] | None = None
    alerts: list[Blob] | None = None
    session_affinity: SessionAffinity | None = None

    @model_validator(mode="after")
    def _steps(self) -> CanaryAnalysis:
        if self.step_weight is not None and self.step_weights is not None:
            raise ValueError("set stepWeight or stepWeights, not both")
        return self


class CanarySpec(Strict):
    target_ref: TargetRef
    service: CanaryService | None = None  # Flagger's Go type has no omitempty; CRD optional
    analysis: CanaryAnalysis | None = None
    canary_analysis: CanaryAnalysis | None = None  # deprecated name of analysis; lint warns
    provider: str | None = None
    metrics_server: str | None = None
    autoscaler_ref: Blob | None = None
    ingress_ref: Blob | None = None
    route_ref: Blob | None = None
    upstream_ref: Blob | None = None
    skip_analysis: bool | None = None
    progress_deadline_seconds: NonNegInt | None = None
    revert_on_deletion: bool | None = None
    suspend: bool | None = None


class MetricProvider(Strict):
    type: str
    address: str | None = None
    secret_ref: dict[str, str] | None = None
    insecure_skip_verify: bool | None = None
    region: str | None = None
    headers: dict[str, list[str]] | None = None  # Go http.Header: name -> values


class MetricTemplateSpec(Strict):
    provider: MetricProvider
    query: str = Field(min_length=1)
