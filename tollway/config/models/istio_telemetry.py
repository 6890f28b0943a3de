"""Istio's Telemetry (telemetry.istio.io v1, v1alpha1): tracing, metrics, access logging.

Field names and checks follow Istio's API and its validation: one `tracing` entry per
resource, `randomSamplingPercentage` within 0-100, a metric selector names either an Istio
metric or a custom one, a tag override that is not REMOVE carries a value. Expressions
(access-log `filter.expression`, tag override `value`) must be in the CEL subset the proxy
evaluates (`snapshot/cel.py`); anything else is refused here, naming the field, so a
policy is never half applied at run time. How resources combine (root namespace <
namespace < workload) is `control/translate/telemetry.py`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from tollway.config.models.common import Duration, Percent, Strict, WorkloadSelector
from tollway.snapshot import cel

Blob = dict[str, Any]

WorkloadMode = Literal["CLIENT_AND_SERVER", "CLIENT", "SERVER"]
IstioMetric = Literal[
    "ALL_METRICS", "REQUEST_COUNT", "REQUEST_DURATION", "REQUEST_SIZE", "RESPONSE_SIZE",
    "TCP_OPENED_CONNECTIONS", "TCP_CLOSED_CONNECTIONS", "TCP_SENT_BYTES", "TCP_RECEIVED_BYTES",
    "GRPC_REQUEST_MESSAGES", "GRPC_RESPONSE_MESSAGES",
]


def _expression(value: str) -> str:
    problem = cel.check(value)
    if problem is not None:
        raise ValueError(problem)
    return value


class ProviderRef(Strict):
    name: str = Field(min_length=1)


class ModeSelector(Strict):
    mode: WorkloadMode | None = None


class LiteralTag(Strict):
    value: str = Field(min_length=1)


class EnvironmentTag(Strict):
    name: str = Field(min_length=1)
    default_value: str | None = None


class HeaderTag(Strict):
    name: str = Field(min_length=1)
    default_value: str | None = None


class CustomTag(Strict):
    literal: LiteralTag | None = None
    environment: EnvironmentTag | None = None
    header: HeaderTag | None = None
    formatter: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one(self) -> CustomTag:
        if self.formatter is not None:
            # Istio 1.28+: an access-log substitution (%REQ(...)%) as a span tag.
            raise ValueError("formatter custom tags are not supported by Tollway's tracer "
                             "(it sets literal, environment and header tags); for a request "
                             "header use header: {name: ...}")
        given = [k for k in ("literal", "environment", "header") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("a custom tag sets exactly one of literal, environment, header")
        return self


class Tracing(Strict):
    match: ModeSelector | None = None
    providers: list[ProviderRef] | None = None
    random_sampling_percentage: Percent | None = None
    disable_span_reporting: bool | None = None
    custom_tags: dict[str, CustomTag] | None = None
    use_request_id_for_trace_sampling: bool | None = None
    enable_istio_tags: bool | None = None


class MetricSelector(Strict):
    metric: IstioMetric | None = None
    custom_metric: str | None = Field(None, min_length=1)
    mode: WorkloadMode | None = None

    @model_validator(mode="after")
    def _one(self) -> MetricSelector:
        if self.metric is not None and self.custom_metric is not None:
            raise ValueError("a metric selector sets metric or customMetric, not both")
        return self


class TagOverride(Strict):
    operation: Literal["UPSERT", "REMOVE"] | None = None
    value: str | None = None

    @field_validator("value")
    @classmethod
    def _value(cls, value: str | None) -> str | None:
        return None if value is None else _expression(value)

    @model_validator(mode="after")
    def _needs_value(self) -> TagOverride:
        if self.operation != "REMOVE" and not self.value:
            raise ValueError("an UPSERT tag override needs a value (a CEL expression, e.g. "
                             "\"xds.route_name\" or \"'literal'\")")
        if self.operation == "REMOVE" and self.value:
            raise ValueError("a REMOVE tag override takes no value")
        return self


class MetricsOverrides(Strict):
    match: MetricSelector | None = None
    disabled: bool | None = None
    tag_overrides: dict[str, TagOverride] | None = None

    @field_validator("tag_overrides")
    @classmethod
    def _names(cls, value: dict[str, TagOverride] | None) -> dict[str, TagOverride] | None:
        for name in value or {}:
            if not name or not (name[0].isalpha() or name[0] == "_") or not all(
                    c.isalnum() or c == "_" for c in name):
                raise ValueError(f"tag '{name}' is not a Prometheus label name "
                                 "([a-zA-Z_][a-zA-Z0-9_]*)")
        return value


class Metrics(Strict):
    providers: list[ProviderRef] | None = None
    overrides: list[MetricsOverrides] | None = None
    reporting_interval: Duration | None = None


class AccessLogFilter(Strict):
    expression: str

    @field_validator("expression")
    @classmethod
    def _cel(cls, value: str) -> str:
        return _expression(value)


class AccessLogging(Strict):
    match: ModeSelector | None = None
    providers: list[ProviderRef] | None = None
    disabled: bool | None = None
    filter: AccessLogFilter | None = None


class TelemetrySpec(Strict):
    selector: WorkloadSelector | None = None
    target_ref: Blob | None = None
    target_refs: list[Blob] | None = None
    tracing: list[Tracing] | None = Field(default=None, max_length=1)
    metrics: list[Metrics] | None = None
    access_logging: list[AccessLogging] | None = None

    @model_validator(mode="after")
    def _targets(self) -> TelemetrySpec:
        if self.selector is not None and (self.target_ref or self.target_refs):
            raise ValueError("selector and targetRef(s) cannot both be set")
        return self
