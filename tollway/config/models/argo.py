"""Argo Rollouts: Rollout, AnalysisTemplate, ClusterAnalysisTemplate, AnalysisRun.

`autoPromotionEnabled` is a blueGreen field in Argo's schema; users put it under canary
(seed 14), so the canary model accepts it and a lint warns (see lint.py).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from tollway.config.models.common import (
    ArgoDuration,
    IntOrString,
    LabelSelector,
    NonNegInt,
    Regex,
    Strict,
    Weight,
    go_duration,
)
from tollway.config.models.k8s import PodTemplate
from tollway.kit import fieldref

Blob = dict[str, Any]
_TEMPLATE = re.compile(r"\{\{\s*[^{}]+?\s*\}\}")


def is_template(value: object) -> bool:
    """`{{args.NAME}}` (or another Argo `{{...}}` variable) anywhere in a string."""
    return isinstance(value, str) and _TEMPLATE.search(value) is not None


def _duration_or_template(value: str) -> str:
    # Known only once the run's arguments are substituted: checked then, not here.
    return value if is_template(value) else go_duration(value)


def _int_or_template(value: int | str) -> int | str:
    if isinstance(value, str) and not is_template(value):
        raise ValueError(f"must be an integer (or an Argo template like '{{{{args.x}}}}'), "
                         f"got string '{value}'")
    return value


TemplatedDuration = Annotated[str, AfterValidator(_duration_or_template)]
TemplatedInt = Annotated[NonNegInt | str, AfterValidator(_int_or_template)]


class TemplateRef(Strict):
    template_name: str = Field(min_length=1)
    cluster_scope: bool | None = None


class AnalysisArg(Strict):
    name: str
    value: str | None = None
    value_from: Blob | None = None


class RolloutAnalysisArg(AnalysisArg):
    @model_validator(mode="after")
    def _resolvable(self) -> RolloutAnalysisArg:
        # Argo's ArgumentValueFrom for a Rollout: podTemplateHashValue or fieldRef (read
        # from the Rollout when its run starts: kit/fieldref.py)
        vf = self.value_from
        if vf is None or self.value is not None:
            return self
        if set(vf) == {"podTemplateHashValue"}:
            if vf["podTemplateHashValue"] not in ("Latest", "Stable"):
                raise ValueError("valueFrom.podTemplateHashValue is Latest or Stable")
            return self
        if set(vf) == {"fieldRef"}:
            ref = vf["fieldRef"]
            if not isinstance(ref, dict) or not isinstance(ref.get("fieldPath"), str) \
                    or not ref["fieldPath"]:
                raise ValueError("valueFrom.fieldRef needs a fieldPath, e.g. "
                                 "metadata.labels['app'] or spec.replicas")
            if ref["fieldPath"].startswith("metadata"):
                fieldref.check_metadata_path(ref["fieldPath"])
            return self
        raise ValueError("valueFrom takes one of podTemplateHashValue (Latest or Stable) or "
                         f"fieldRef, not {', '.join(sorted(vf))}; or give the value literally "
                         "(value: ...)")


class RolloutAnalysis(Strict):
    templates: list[TemplateRef] = Field(min_length=1)
    args: list[RolloutAnalysisArg] | None = None
    dry_run: list[Blob] | None = None
    measurement_retention: list[Blob] | None = None
    analysis_run_metadata: Blob | None = None
    starting_step: NonNegInt | None = None


class Pause(Strict):
    duration: ArgoDuration | None = None


class SetCanaryScale(Strict):
    replicas: NonNegInt | None = None
    weight: Weight | None = None
    match_traffic_weight: bool | None = None


class HeaderValue(Strict):
    exact: str | None = None
    regex: Regex | None = None
    prefix: str | None = None

    @model_validator(mode="after")
    def _one(self) -> HeaderValue:
        if len(self.model_fields_set) != 1:
            raise ValueError("set exactly one of exact, regex or prefix (Argo)")
        return self


class HeaderRouteMatch(Strict):
    header_name: str
    header_value: HeaderValue


class SetHeaderRoute(Strict):
    name: str
    match: list[HeaderRouteMatch] | None = None


class SetMirrorRoute(Strict):
    name: str
    service: str | None = None
    percentage: Weight | None = None
    match: list[Blob] | None = None


class CanaryStep(Strict):
    set_weight: Weight | None = None
    pause: Pause | None = None
    analysis: RolloutAnalysis | None = None
    experiment: Blob | None = None
    set_canary_scale: SetCanaryScale | None = None
    set_header_route: SetHeaderRoute | None = None
    set_mirror_route: SetMirrorRoute | None = None
    plugin: Blob | None = None

    @model_validator(mode="after")
    def _one(self) -> CanaryStep:
        actions = set(self.model_fields_set)
        for name, what in (("experiment", "Argo Experiments (compare the versions with an "
                            "analysis step instead)"),
                           ("plugin", "Argo step plugins")):
            if name in actions:
                raise ValueError(f"Tollway does not run {what}, so this {name} step cannot "
                                 "run; remove it")
        if not actions:
            raise ValueError("a step needs one of setWeight, pause, analysis, experiment, "
                             "setCanaryScale, setHeaderRoute, setMirrorRoute or plugin")
        # Argo (hasMultipleStepsType): at most one of setWeight, pause, experiment and
        # analysis; setCanaryScale, setHeaderRoute, setMirrorRoute and plugin may join them.
        main = [a for a in _MAIN_ACTIONS if a in actions]
        if len(main) > 1:
            raise ValueError(f"a step sets at most one of setWeight, pause, experiment, "
                             f"analysis (this one sets {' and '.join(_camel(a) for a in main)}); "
                             "split it into consecutive steps")
        # Tollway's rollout runs one action per step; setCanaryScale may ride along with a
        # header or mirror route. Any other mix Argo allows is split, in Argo's order.
        rest = actions - {"set_canary_scale"} if actions & _ROUTES else actions
        if len(rest) > 1:
            order = [_camel(a) for a in _ARGO_ORDER if a in actions]
            raise ValueError("Tollway runs one action per step (setCanaryScale may pair with "
                             "setHeaderRoute or setMirrorRoute); split this step into "
                             f"consecutive steps: {', '.join(order)} (the same effect as "
                             "Argo's combined step)")
        return self


_MAIN_ACTIONS = ("set_weight", "pause", "experiment", "analysis")
_ROUTES = {"set_header_route", "set_mirror_route"}
_ARGO_ORDER = ("set_canary_scale", "set_header_route", "set_mirror_route", "plugin",
               "set_weight", "experiment", "analysis", "pause")


def _camel(name: str) -> str:
    head, *tail = name.split("_")
    return head + "".join(t.title() for t in tail)


class IstioVirtualService(Strict):
    name: str
    routes: list[str] | None = None
    tls_routes: list[Blob] | None = None
    tcp_routes: list[Blob] | None = None


class IstioDestinationRule(Strict):
    name: str
    canary_subset_name: str
    stable_subset_name: str
    additional_subset_names: list[str] | None = None


class IstioRouting(Strict):
    virtual_service: IstioVirtualService | None = None
    virtual_services: list[IstioVirtualService] | None = None
    destination_rule: IstioDestinationRule | None = None

    @model_validator(mode="after")
    def _vs(self) -> IstioRouting:
        if (self.virtual_service is None) == (self.virtual_services is None):
            raise ValueError("set exactly one of virtualService or virtualServices")
        return self


class TrafficRouting(Strict):
    istio: IstioRouting | None = None
    managed_routes: list[dict[str, str]] | None = None
    max_traffic_weight: NonNegInt | None = None
    nginx: Blob | None = None
    alb: Blob | None = None
    smi: Blob | None = None
    ambassador: Blob | None = None
    traefik: Blob | None = None
    app_mesh: Blob | None = None
    apisix: Blob | None = None
    plugins: Blob | None = None


class CanaryStrategy(Strict):
    canary_service: str | None = None
    stable_service: str | None = None
    canary_metadata: Blob | None = None
    stable_metadata: Blob | None = None
    steps: list[CanaryStep] | None = None
    traffic_routing: TrafficRouting | None = None
    max_unavailable: IntOrString | None = None
    max_surge: IntOrString | None = None
    analysis: RolloutAnalysis | None = None
    scale_down_delay_seconds: NonNegInt | None = None
    scale_down_delay_revision_limit: NonNegInt | None = None
    abort_scale_down_delay_seconds: NonNegInt | None = None
    dynamic_stable_scale: bool | None = None
    ping_pong: Blob | None = None
    anti_affinity: Blob | None = None
    min_pods_per_replica_set: NonNegInt | None = None
    replica_progress_threshold: Blob | None = None
    auto_promotion_enabled: bool | None = None  # blueGreen field; lint warns

    @model_validator(mode="after")
    def _fenceposts(self) -> CanaryStrategy:
        # Argo: both 0 is an invalid spec (no replica could be added or removed)
        for name, value in (("maxSurge", self.max_surge),
                            ("maxUnavailable", self.max_unavailable)):
            if isinstance(value, str) and not value.strip().rstrip("%").isdigit():
                raise ValueError(f"{name} {value!r} must be a count or a percentage like '25%'")
        if _is_zero(self.max_surge) and _is_zero(self.max_unavailable):
            raise ValueError("maxSurge and maxUnavailable cannot both be 0 (no replica could "
                             "be added or removed); set maxSurge: 1 or maxUnavailable: 1")
        return self


    @model_validator(mode="after")
    def _argo_rules(self) -> CanaryStrategy:
        """Argo's ValidateRolloutStrategyCanary, for what Tollway's routers support."""
        tr = self.traffic_routing
        if self.canary_service and self.canary_service == self.stable_service:
            raise ValueError("stableService and canaryService are the same service; two "
                             "different services are required")
        if tr is None:
            if self.scale_down_delay_seconds is not None:
                raise ValueError("scaleDownDelaySeconds needs trafficRouting (Argo)")
            if self.dynamic_stable_scale:
                raise ValueError("dynamicStableScale needs trafficRouting (Argo)")
        elif self.scale_down_delay_seconds is not None and self.dynamic_stable_scale:
            raise ValueError("set scaleDownDelaySeconds or dynamicStableScale, not both")
        elif tr.max_traffic_weight is not None and tr.nginx is None and not tr.plugins:
            raise ValueError("trafficRouting.maxTrafficWeight works only with nginx or "
                             "plugins (Argo)")
        routes = {r.get("name") for r in (tr.managed_routes or [])} if tr else set()
        for i, step in enumerate(self.steps or []):
            where = f"steps[{i}]"
            if step.set_canary_scale is not None and tr is None:
                raise ValueError(f"{where}.setCanaryScale needs trafficRouting (Argo)")
            for kind, route in (("setHeaderRoute", step.set_header_route),
                                ("setMirrorRoute", step.set_mirror_route)):
                if route is None:
                    continue
                if tr is None or (tr.istio is None and not tr.plugins and (
                        kind == "setMirrorRoute" or (tr.alb is None and tr.apisix is None))):
                    raise ValueError(f"{where}.{kind} needs trafficRouting with istio "
                                     "(or a router that supports it)")
                if tr.managed_routes is None:
                    raise ValueError(f"{where}.{kind} needs "
                                     "spec.strategy.canary.trafficRouting.managedRoutes")
                if route.name not in routes:
                    raise ValueError(f"{where}.{kind} name '{route.name}' is not in "
                                     "trafficRouting.managedRoutes")
        return self


def _is_zero(value: int | str | None) -> bool:
    return value is not None and str(value).strip().rstrip("%") == "0"


class BlueGreenStrategy(Strict):
    active_service: str
    preview_service: str | None = None
    auto_promotion_enabled: bool | None = None
    auto_promotion_seconds: NonNegInt | None = None
    scale_down_delay_seconds: NonNegInt | None = None
    scale_down_delay_revision_limit: NonNegInt | None = None
    abort_scale_down_delay_seconds: NonNegInt | None = None
    pre_promotion_analysis: RolloutAnalysis | None = None
    post_promotion_analysis: RolloutAnalysis | None = None
    preview_replica_count: NonNegInt | None = None
    anti_affinity: Blob | None = None
    active_metadata: Blob | None = None
    preview_metadata: Blob | None = None
    max_unavailable: IntOrString | None = None


class Strategy(Strict):
    canary: CanaryStrategy | None = None
    blue_green: BlueGreenStrategy | None = None

    @model_validator(mode="after")
    def _one(self) -> Strategy:
        if (self.canary is None) == (self.blue_green is None):
            raise ValueError("strategy needs exactly one of canary or blueGreen")
        return self


class RolloutSpec(Strict):
    replicas: NonNegInt | None = None
    selector: LabelSelector | None = None
    template: PodTemplate | None = None
    workload_ref: Blob | None = None
    strategy: Strategy
    min_ready_seconds: NonNegInt | None = None
    revision_history_limit: NonNegInt | None = None
    paused: bool | None = None
    progress_deadline_seconds: NonNegInt | None = None
    progress_deadline_abort: bool | None = None
    restart_at: str | None = None
    rollback_window: Blob | None = None
    analysis: Blob | None = None

    @model_validator(mode="after")
    def _workload(self) -> RolloutSpec:
        if self.template is None and self.workload_ref is None:
            raise ValueError("a Rollout needs a template (or workloadRef)")
        return self


class RangeQuery(Strict):
    start: str | None = None
    end: str | None = None
    step: str | None = None


class Prometheus(Strict):
    address: str | None = None
    query: str
    timeout: TemplatedInt | None = None
    range_query: RangeQuery | None = None
    insecure: bool | None = None
    headers: list[dict[str, str]] | None = None
    authentication: Blob | None = None


class MetricProvider(Strict):
    prometheus: Prometheus | None = None
    web: Blob | None = None
    job: Blob | None = None
    datadog: Blob | None = None
    new_relic: Blob | None = None
    wavefront: Blob | None = None
    kayenta: Blob | None = None
    cloud_watch: Blob | None = None
    graphite: Blob | None = None
    influxdb: Blob | None = None
    skywalking: Blob | None = None
    plugin: Blob | None = None

    @model_validator(mode="after")
    def _one(self) -> MetricProvider:
        if len(self.model_fields_set) != 1:
            raise ValueError("a metric provider needs exactly one of prometheus, web, job, ...")
        return self


class Metric(Strict):
    name: str = Field(min_length=1)
    interval: TemplatedDuration | None = None
    initial_delay: TemplatedDuration | None = None
    count: IntOrString | None = None
    success_condition: str | None = None
    failure_condition: str | None = None
    failure_limit: IntOrString | None = None
    inconclusive_limit: IntOrString | None = None
    consecutive_error_limit: IntOrString | None = None
    consecutive_success_limit: IntOrString | None = None
    provider: MetricProvider

    @model_validator(mode="after")
    def _limits(self) -> Metric:
        """Argo's ValidateMetric (an AnalysisRun with these fails at once, as Error).
        A limit given as an `{{args...}}` template is checked once substituted."""
        vals = (self.count, self.failure_limit, self.consecutive_success_limit,
                self.inconclusive_limit, self.consecutive_error_limit)
        if any(is_template(v) for v in vals):
            return self
        count, failure, success, inconclusive, errors = (_int_value(v) for v in vals)
        if success < 0:
            raise ValueError("consecutiveSuccessLimit must be >= 0")
        if failure < -1:
            raise ValueError("failureLimit must be >= 0, or -1 to disable it")
        if success == 0 and failure == -1:
            raise ValueError("failureLimit and consecutiveSuccessLimit cannot both be "
                             "disabled")
        if inconclusive < 0 or errors < 0:
            raise ValueError("inconclusiveLimit and consecutiveErrorLimit must be >= 0")
        if count > 0:
            if failure >= 0 and count < failure + success:
                raise ValueError(f"count ({count}) must be >= failureLimit + "
                                 f"consecutiveSuccessLimit ({failure} + {success})")
            if failure < 0 and count < success:
                raise ValueError("count must be >= consecutiveSuccessLimit")
            if count < inconclusive:
                raise ValueError("count must be >= inconclusiveLimit")
        if count > 1 and self.interval is None:
            raise ValueError(f"interval is required when count ({count}) is more than 1")
        return self


def _int_value(value: int | str | None) -> int:
    """Kubernetes IntOrString.IntValue: a string that is no number counts as 0."""
    if isinstance(value, int):
        return value
    try:
        return int(value or 0)
    except ValueError:
        return 0


class AnalysisTemplateSpec(Strict):
    metrics: list[Metric] | None = None
    templates: list[TemplateRef] | None = None  # other templates this one composes
    args: list[AnalysisArg] | None = None
    dry_run: list[dict[str, str]] | None = None
    measurement_retention: list[Blob] | None = None

    @model_validator(mode="after")
    def _unique(self) -> AnalysisTemplateSpec:
        if not self.metrics and not self.templates:
            raise ValueError("an analysis template needs metrics (or templates to include)")
        names = [m.name for m in self.metrics or []]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"metric name '{sorted(dup)[0]}' is used twice")
        return self


class AnalysisRunSpec(AnalysisTemplateSpec):
    terminate: bool | None = None
    ttl_strategy: Blob | None = None


Phase = Literal["Pending", "Running", "Successful", "Failed", "Error", "Inconclusive"]
