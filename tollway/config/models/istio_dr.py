"""Istio DestinationRule: subsets and traffic policy (what happens after routing)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from tollway.config.models import istio_rules as rules
from tollway.config.models.common import Duration, Labels, NonNegInt, Percent, Strict
from tollway.config.models.istio_vs import PortSelector
from tollway.kit.durations import parse_duration

Blob = dict[str, Any]


class HttpCookie(Strict):
    name: str
    path: str | None = None
    ttl: Duration | None = None
    attributes: list[Blob] | None = None


class RingHash(Strict):
    minimum_ring_size: NonNegInt | None = None


class Maglev(Strict):
    table_size: NonNegInt | None = None

    @model_validator(mode="after")
    def _prime(self) -> Maglev:
        size = self.table_size or 0
        if size == 0:
            raise ValueError("maglev needs tableSize")
        if size >= 5000011:
            raise ValueError(f"maglev tableSize {size} must be less than 5000011")
        if not rules.is_prime(size):
            raise ValueError(f"maglev tableSize {size} must be a prime number (e.g. 65537)")
        return self


class ConsistentHash(Strict):
    http_header_name: str | None = None
    http_cookie: HttpCookie | None = None
    use_source_ip: bool | None = None
    http_query_parameter_name: str | None = None
    ring_hash: RingHash | None = None
    maglev: Maglev | None = None
    minimum_ring_size: NonNegInt | None = None

    @model_validator(mode="after")
    def _one_key(self) -> ConsistentHash:
        keys = [k for k in ("http_header_name", "http_cookie", "use_source_ip",
                            "http_query_parameter_name") if getattr(self, k) is not None]
        if len(keys) != 1:
            raise ValueError("consistentHash needs exactly one of httpHeaderName, httpCookie, "
                             "useSourceIp or httpQueryParameterName")
        if self.ring_hash is not None and self.maglev is not None:
            raise ValueError("set ringHash or maglev, not both")
        if self.minimum_ring_size and (self.ring_hash is not None or self.maglev is not None):
            raise ValueError("minimumRingSize (deprecated) cannot be combined with ringHash "
                             "or maglev; use ringHash.minimumRingSize")
        return self


class Warmup(Strict):
    duration: Duration
    minimum_percent: float | None = Field(None, ge=0, le=100)
    aggression: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _positive(self) -> Warmup:
        if parse_duration(self.duration) <= 0:
            raise ValueError("warmup.duration must be greater than 0")
        return self


class LoadBalancer(Strict):
    simple: Literal["UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN",
                    "LEAST_REQUEST"] | None = None
    consistent_hash: ConsistentHash | None = None
    locality_lb_setting: Blob | None = None
    warmup_duration_secs: Duration | None = None
    warmup: Warmup | None = None
    zone_aware_lb_setting: Blob | None = None

    @model_validator(mode="after")
    def _one(self) -> LoadBalancer:
        if self.simple is not None and self.consistent_hash is not None:
            raise ValueError("set simple or consistentHash, not both")
        if self.warmup_duration_secs is not None and self.warmup is not None:
            raise ValueError("set warmup or the deprecated warmupDurationSecs, not both")
        if self.locality_lb_setting is not None and self.zone_aware_lb_setting is not None:
            raise ValueError("set localityLbSetting or zoneAwareLbSetting, not both")
        return self


class TcpKeepalive(Strict):
    probes: NonNegInt | None = None
    time: Duration | None = None
    interval: Duration | None = None


class TcpSettings(Strict):
    max_connections: NonNegInt | None = None
    connect_timeout: Duration | None = None
    tcp_keepalive: TcpKeepalive | None = None
    max_connection_duration: Duration | None = None
    idle_timeout: Duration | None = None


class Http2KeepAlive(Strict):
    interval: Duration | None = None
    timeout: Duration | None = None


class HttpSettings(Strict):
    http1_max_pending_requests: NonNegInt | None = None
    http2_max_requests: NonNegInt | None = None
    max_requests_per_connection: NonNegInt | None = None
    max_retries: NonNegInt | None = None
    idle_timeout: Duration | None = None
    h2_upgrade_policy: Literal["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"] | None = None
    use_client_protocol: bool | None = None
    max_concurrent_streams: NonNegInt | None = None
    http2_keep_alive: Http2KeepAlive | None = Field(None, alias="http2KeepAlive")


class ConnectionPool(Strict):
    tcp: TcpSettings | None = None
    http: HttpSettings | None = None

    @model_validator(mode="after")
    def _some(self) -> ConnectionPool:
        if self.tcp is None and self.http is None:
            raise ValueError("connectionPool needs tcp or http settings (Istio)")
        h = self.http
        if h is not None and h.h2_upgrade_policy == "UPGRADE" and h.use_client_protocol:
            raise ValueError("useClientProtocol must not be true when h2UpgradePolicy is "
                             "UPGRADE")
        return self


class OutlierDetection(Strict):
    consecutive_errors: NonNegInt | None = None
    consecutive_5xx_errors: NonNegInt | None = Field(None, alias="consecutive5xxErrors")
    consecutive_gateway_errors: NonNegInt | None = None
    consecutive_local_origin_failures: NonNegInt | None = None
    split_external_local_origin_errors: bool | None = None
    interval: Duration | None = None
    base_ejection_time: Duration | None = None
    max_ejection_percent: int | None = Field(None, ge=0, le=100)
    min_health_percent: int | None = Field(None, ge=0, le=100)
    outlier_detection_http_error_codes: list[int] | None = Field(
        None, alias="outlierDetectionHttpErrorCodes")

    @model_validator(mode="after")
    def _split(self) -> OutlierDetection:
        if self.consecutive_local_origin_failures and not self.split_external_local_origin_errors:
            raise ValueError("consecutiveLocalOriginFailures needs "
                             "splitExternalLocalOriginErrors: true")
        return self


class ClientTLS(Strict):
    mode: Literal["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"] | None = None
    client_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    credential_name: str | None = None
    subject_alt_names: list[str] | None = None
    sni: str | None = None
    insecure_skip_verify: bool | None = None
    ca_crl: str | None = None

    @model_validator(mode="after")
    def _mutual(self) -> ClientTLS:
        if self.mode == "MUTUAL" and not self.credential_name and not (
            self.client_certificate and self.private_key
        ):
            raise ValueError("tls mode MUTUAL needs clientCertificate and privateKey "
                             "(or credentialName)")
        return self


class PortTrafficPolicy(Strict):
    port: PortSelector
    load_balancer: LoadBalancer | None = None
    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLS | None = None

    @model_validator(mode="after")
    def _some(self) -> PortTrafficPolicy:
        if not (self.model_fields_set - {"port"}):
            raise ValueError("a port traffic policy needs at least one setting besides port")
        return self


class RetryBudget(Strict):
    percent: Percent | None = None
    min_retry_concurrency: NonNegInt | None = None
    budget_interval: Duration | None = None


class TrafficPolicy(Strict):
    load_balancer: LoadBalancer | None = None
    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLS | None = None
    port_level_settings: list[PortTrafficPolicy] | None = Field(None, max_length=4096)
    tunnel: Blob | None = None
    proxy_protocol: Blob | None = None
    retry_budget: RetryBudget | None = None

    @model_validator(mode="after")
    def _some(self) -> TrafficPolicy:
        if not self.model_fields_set:
            raise ValueError("trafficPolicy must have at least one field (Istio)")
        if self.tunnel is not None and self.proxy_protocol is not None:
            raise ValueError("set tunnel or proxyProtocol, not both")
        return self


class Subset(Strict):
    name: str = Field(min_length=1)
    labels: Labels | None = None
    traffic_policy: TrafficPolicy | None = None

    @field_validator("name")
    @classmethod
    def _label(cls, value: str) -> str:
        rules.dns_label(value, "subset name")
        return value


class DestinationRuleSpec(Strict):
    host: str = Field(min_length=1)
    traffic_policy: TrafficPolicy | None = None
    subsets: list[Subset] | None = None
    export_to: list[str] | None = None
    workload_selector: Blob | None = None

    @model_validator(mode="after")
    def _unique(self) -> DestinationRuleSpec:
        seen: set[str] = set()
        for s in self.subsets or []:
            if s.name in seen:
                raise ValueError(f"subset name '{s.name}' is defined twice")
            seen.add(s.name)
        return self
