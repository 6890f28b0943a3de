"""Istio VirtualService (networking.istio.io v1, v1beta1, v1alpha3 share one schema).

The oneOfs Istio's validation enforces are enforced here: a StringMatch is one of
exact/prefix/regex, an HTTP route is one of route/redirect/directResponse/delegate, mirror
and mirrors exclude each other. Regexes are compiled with RE2, as Envoy does.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from tollway.config.models import istio_rules as rules
from tollway.config.models.common import (
    Duration,
    Labels,
    Percent,
    PortNumber,
    Regex,
    Strict,
    Weight,
)

RETRY_ON = frozenset({
    "5xx", "gateway-error", "reset", "reset-before-request", "connect-failure",
    "retriable-4xx", "refused-stream", "retriable-status-codes", "retriable-headers",
    "envoy-ratelimited", "http3-post-connect-failure", "cancelled", "deadline-exceeded",
    "internal", "resource-exhausted", "unavailable",
})


class StringMatch(Strict):
    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None

    @field_validator("regex")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is None or value == "*":  # "*" is Istio's presence match, not RE2
            return value
        from tollway.config.models.common import _re2

        return _re2(value)

    @model_validator(mode="after")
    def _one_of(self) -> StringMatch:
        set_ = [k for k in ("exact", "prefix", "regex") if getattr(self, k) is not None]
        if len(set_) > 1:
            raise ValueError(f"set only one of exact, prefix or regex (found {', '.join(set_)})")
        return self


class PortSelector(Strict):
    number: PortNumber


class Destination(Strict):
    host: str = Field(min_length=1)
    subset: str | None = None
    port: PortSelector | None = None

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if value == "*":
            raise ValueError("destination host '*' is invalid; name a service")
        return value

    @field_validator("subset")
    @classmethod
    def _subset(cls, value: str | None) -> str | None:
        if value is not None:
            rules.dns_label(value, "subset name")
        return value


class HeaderOperations(Strict):
    set: dict[str, str] | None = None
    add: dict[str, str] | None = None
    remove: list[str] | None = None


class Headers(Strict):
    request: HeaderOperations | None = None
    response: HeaderOperations | None = None

    @model_validator(mode="after")
    def _names(self) -> Headers:
        req, resp = self.request, self.response
        for name in [*(req.set or {}), *(req.add or {})] if req else []:
            rules.header_operation(name, request_set=True)
        for name in (req.remove or []) if req else []:
            rules.header_operation(name, request_set=False)
        for name in [*(resp.set or {}), *(resp.add or {}), *(resp.remove or [])] if resp else []:
            rules.header_operation(name, request_set=False)
        return self


class HTTPMatchRequest(Strict):
    name: str | None = None
    uri: StringMatch | None = None
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: dict[str, StringMatch] | None = None
    port: PortNumber | None = None
    source_labels: Labels | None = None
    gateways: list[str] | None = None
    query_params: dict[str, StringMatch] | None = None
    ignore_uri_case: bool | None = None
    without_headers: dict[str, StringMatch] | None = None
    source_namespace: str | None = None
    stat_prefix: str | None = None

    @field_validator("headers", "without_headers")
    @classmethod
    def _lower(cls, value: dict[str, StringMatch] | None) -> dict[str, StringMatch] | None:
        for key in value or {}:
            if key != key.lower():
                raise ValueError(f"header name '{key}' must be lowercase ('{key.lower()}')")
        return value


class HTTPRouteDestination(Strict):
    destination: Destination
    weight: Weight | None = None
    headers: Headers | None = None


class RouteDestination(Strict):
    destination: Destination
    weight: Weight | None = None


class HTTPRedirect(Strict):
    uri: str | None = None
    authority: str | None = None
    port: PortNumber | None = None
    derive_port: Literal["FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"] | None = None
    scheme: Literal["http", "https"] | None = None
    redirect_code: int | None = Field(None, ge=300, le=399)
    prefix_rewrite: str | None = None

    @model_validator(mode="after")
    def _uri_or_prefix(self) -> HTTPRedirect:
        if self.uri is not None and self.prefix_rewrite is not None:
            raise ValueError("set uri or prefixRewrite, not both")
        if not (self.uri or self.authority or self.scheme or self.port or self.derive_port
                or self.prefix_rewrite):
            raise ValueError("a redirect must set uri, authority, scheme or port (Istio)")
        return self


class Body(Strict):
    string: str | None = None
    bytes: str | None = None


class HTTPDirectResponse(Strict):
    status: int = Field(ge=200, le=599)
    body: Body | None = None


class RegexRewrite(Strict):
    match: Regex
    rewrite: str


class HTTPRewrite(Strict):
    uri: str | None = None
    authority: str | None = None
    uri_regex_rewrite: RegexRewrite | None = None

    @model_validator(mode="after")
    def _exclusive(self) -> HTTPRewrite:
        if self.uri is not None and self.uri_regex_rewrite is not None:
            raise ValueError("set uri or uriRegexRewrite, not both")
        if not (self.uri or self.uri_regex_rewrite or self.authority):
            raise ValueError("a rewrite must set uri, uriRegexRewrite or authority (Istio)")
        return self


class HTTPRetry(Strict):
    attempts: int = Field(0, ge=0)
    per_try_timeout: Duration | None = None
    retry_on: str | None = None
    retry_remote_localities: bool | None = None
    retry_ignore_previous_hosts: bool | None = None
    backoff: Duration | None = None

    @model_validator(mode="after")
    def _disabled(self) -> HTTPRetry:
        # Istio: attempts 0 disables retries, so any other retry setting is a mistake.
        if self.attempts == 0 and (self.per_try_timeout is not None or self.retry_on
                                   or self.retry_remote_localities is not None):
            raise ValueError("perTryTimeout, retryOn or retryRemoteLocalities is set while "
                             "attempts is 0 (retries disabled); set attempts")
        return self

    @field_validator("retry_on")
    @classmethod
    def _tokens(cls, value: str | None) -> str | None:
        for token in (value or "").split(","):
            t = token.strip()
            if t and t not in RETRY_ON and not (t.isdigit() and 100 <= int(t) <= 599):
                from tollway.config.errors import did_you_mean

                hint = did_you_mean(t, sorted(RETRY_ON))
                raise ValueError(f"unknown retryOn condition '{t}'{hint}")
        return value


class Percentage(Strict):
    value: Percent


class Delay(Strict):
    fixed_delay: Duration | None = None
    exponential_delay: Duration | None = None
    percentage: Percentage | None = None
    percent: int | None = Field(None, ge=0, le=100)

    @model_validator(mode="after")
    def _fixed(self) -> Delay:
        if self.percentage is not None:
            rules.fault_percentage(self.percentage.value, "delay")
        if self.exponential_delay is not None:
            raise ValueError("exponentialDelay is not supported (Istio rejects it); use fixedDelay")
        if self.fixed_delay is None:
            raise ValueError("a delay needs fixedDelay")
        return self


class Abort(Strict):
    http_status: int | None = Field(None, ge=200, le=599)
    grpc_status: str | None = None
    http2_error: str | None = None
    percentage: Percentage | None = None

    @model_validator(mode="after")
    def _one(self) -> Abort:
        if self.http2_error is not None:
            raise ValueError("http2Error is not supported (Istio rejects it)")
        if self.http_status is not None and self.grpc_status is not None:
            raise ValueError("an abort takes one of httpStatus or grpcStatus, not both")
        if self.grpc_status is not None:
            rules.grpc_status(self.grpc_status)
        if self.percentage is not None:
            rules.fault_percentage(self.percentage.value, "abort")
        return self


class HTTPFaultInjection(Strict):
    delay: Delay | None = None
    abort: Abort | None = None

    @model_validator(mode="after")
    def _some(self) -> HTTPFaultInjection:
        if self.delay is None and self.abort is None:
            raise ValueError("a fault needs a delay or an abort")
        return self


class HTTPMirrorPolicy(Strict):
    destination: Destination
    percentage: Percentage | None = None


class CorsPolicy(Strict):
    allow_origins: list[StringMatch] | None = None
    allow_origin: list[str] | None = None
    allow_methods: list[str] | None = None
    allow_headers: list[str] | None = None
    expose_headers: list[str] | None = None
    max_age: Duration | None = None
    allow_credentials: bool | None = None
    unmatched_preflights: Literal["UNSPECIFIED", "FORWARD", "IGNORE"] | None = None

    @field_validator("allow_methods")
    @classmethod
    def _methods(cls, value: list[str] | None) -> list[str] | None:
        for m in value or []:
            if m not in rules.HTTP_METHODS:
                raise ValueError(f"'{m}' is not a supported HTTP method (one of "
                                 f"{', '.join(rules.HTTP_METHODS)})")
        return value


class Delegate(Strict):
    name: str
    namespace: str | None = None


class HTTPRoute(Strict):
    name: str | None = None
    match: list[HTTPMatchRequest] | None = None
    route: list[HTTPRouteDestination] | None = None
    redirect: HTTPRedirect | None = None
    direct_response: HTTPDirectResponse | None = None
    delegate: Delegate | None = None
    rewrite: HTTPRewrite | None = None
    timeout: Duration | None = None
    retries: HTTPRetry | None = None
    fault: HTTPFaultInjection | None = None
    mirror: Destination | None = None
    mirror_percent: int | None = Field(None, ge=0, le=100)
    mirror_percentage: Percentage | None = None
    mirrors: list[HTTPMirrorPolicy] | None = None
    cors_policy: CorsPolicy | None = None
    headers: Headers | None = None

    @model_validator(mode="after")
    def _actions(self) -> HTTPRoute:
        actions = [n for n, v in (("route", self.route), ("redirect", self.redirect),
                                  ("directResponse", self.direct_response),
                                  ("delegate", self.delegate)) if v]
        if not actions:
            raise ValueError("an http route needs one of route, redirect or directResponse")
        if len(actions) > 1:
            raise ValueError(f"set only one of route, redirect, directResponse, delegate "
                             f"(found {' and '.join(actions)})")
        if (self.redirect or self.direct_response) and (self.fault or self.rewrite):
            raise ValueError("redirect/directResponse cannot be combined with fault or rewrite")
        if self.mirror is not None and self.mirrors:
            raise ValueError("set mirror or mirrors, not both")
        routes = self.route or []
        if len(routes) > 1 and sum(r.weight or 0 for r in routes) == 0:
            raise ValueError("route weights are all 0; give at least one destination a weight")
        return self


class L4Match(Strict):
    destination_subnets: list[str] | None = None
    port: PortNumber | None = None
    source_labels: Labels | None = None
    gateways: list[str] | None = None
    source_namespace: str | None = None
    source_subnet: str | None = None  # deprecated upstream, still accepted
    sni_hosts: list[str] | None = None


class TCPRoute(Strict):
    match: list[L4Match] | None = None
    route: list[RouteDestination] = Field(min_length=1)


class TLSRoute(Strict):
    match: list[L4Match] = Field(min_length=1)
    route: list[RouteDestination] = Field(min_length=1)

    @model_validator(mode="after")
    def _sni(self) -> TLSRoute:
        if any(not m.sni_hosts for m in self.match):
            raise ValueError("each TLS match needs at least one sniHosts entry (Istio)")
        return self


class VirtualServiceSpec(Strict):
    hosts: list[str] | None = None  # none: a delegate VirtualService
    gateways: list[str] | None = None
    http: list[HTTPRoute] | None = None
    tls: list[TLSRoute] | None = None
    tcp: list[TCPRoute] | None = None
    export_to: list[str] | None = None

    @model_validator(mode="after")
    def _shape(self) -> VirtualServiceSpec:
        if not (self.http or self.tcp or self.tls):
            raise ValueError("a VirtualService needs at least one of http, tcp or tls routes")
        hosts = self.hosts or []
        if not hosts and (self.gateways or self.tls or self.tcp):
            raise ValueError("a VirtualService without hosts is a delegate: it takes no "
                             "gateways and no tls or tcp routes (Istio)")
        for h in hosts:
            if not h:
                raise ValueError("hosts must not contain an empty string")
        mesh = not self.gateways or "mesh" in self.gateways
        if mesh and "*" in hosts:
            raise ValueError("host '*' is not allowed for a VirtualService bound to the mesh "
                             "(name the hosts, or bind it to a Gateway)")
        lowered = [h.lower() for h in hosts]
        dup = sorted({h for h in lowered if lowered.count(h) > 1})
        if dup:
            raise ValueError(f"host '{dup[0]}' is listed twice")
        return self
