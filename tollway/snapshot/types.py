"""Compiled, per-proxy configuration: frozen plain data that the proxy's hot path only reads.

Built by `tollway.control.translate` from validated resources and the registry's
endpoints; read by `tollway.proxy`. Everything here is already normalised: durations are
float seconds, defaults are filled in (Istio's), names are fully qualified
(`NAME.NAMESPACE.svc.cluster.local`), and nothing needs the original YAML. The proxy
prepares its matchers (RE2 compile, lowercasing) once per snapshot from these specs.

Fields are only ever added (with defaults), never renamed: the control plane and proxies
of adjacent versions exchange these over the wire (see codec.py).
"""

from __future__ import annotations

from typing import Literal

import msgspec

SCHEMA_VERSION = 1

MatchKind = Literal["exact", "prefix", "regex"]


class Struct(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Base for every snapshot type."""


# ---------------------------------------------------------------- identity


class Node(Struct, frozen=True):
    """Who this proxy serves: the workload replica (or gateway) it sits beside."""

    name: str  # unique proxy id, e.g. "myapp-v1-0.default"
    workload: str = ""  # Deployment / Rollout / WorkloadEntry name
    namespace: str = "default"
    service_account: str = "default"
    labels: dict[str, str] = {}
    kind: Literal["sidecar", "gateway", "client"] = "sidecar"
    cluster_domain: str = "cluster.local"


# ---------------------------------------------------------------- routing


class StringMatch(Struct, frozen=True):
    """Istio StringMatch: exact / prefix / regex (RE2, whole value)."""

    kind: MatchKind
    value: str


class HeaderMatch(Struct, frozen=True):
    """A header (lowercase name) that must match, or (match None) merely be present.

    `invert` expresses withoutHeaders: the route matches when this header does NOT match.
    """

    name: str
    match: StringMatch | None = None
    invert: bool = False


class QueryMatch(Struct, frozen=True):
    name: str
    match: StringMatch | None = None


class RouteMatch(Struct, frozen=True):
    """One HTTPMatchRequest: every condition given must hold (AND)."""

    name: str = ""
    uri: StringMatch | None = None
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: tuple[HeaderMatch, ...] = ()
    query_params: tuple[QueryMatch, ...] = ()
    ignore_uri_case: bool = False
    port: int | None = None
    source_labels: dict[str, str] = {}
    source_namespace: str | None = None
    gateways: tuple[str, ...] = ()


class HeaderOps(Struct, frozen=True):
    set: dict[str, str] = {}
    add: dict[str, str] = {}
    remove: tuple[str, ...] = ()


class WeightedCluster(Struct, frozen=True):
    """A route destination: the cluster to pick, its weight, and per-destination header ops."""

    cluster: str
    weight: int = 100
    host: str = ""  # FQDN the destination names, for telemetry
    subset: str = ""
    port: int | None = None
    request_headers: HeaderOps | None = None
    response_headers: HeaderOps | None = None


class Redirect(Struct, frozen=True):
    uri: str | None = None
    authority: str | None = None
    port: int | None = None
    scheme: str | None = None
    status: int = 301
    prefix_rewrite: str | None = None  # redirect.prefixRewrite: replaces the matched prefix
    derive_port: str | None = None  # FROM_PROTOCOL_DEFAULT | FROM_REQUEST_PORT


class Rewrite(Struct, frozen=True):
    uri: str | None = None  # replaces the matched prefix (or the whole path for exact/regex)
    authority: str | None = None
    uri_regex: str | None = None  # uriRegexRewrite.match
    uri_regex_rewrite: str | None = None  # uriRegexRewrite.rewrite


class DirectResponse(Struct, frozen=True):
    status: int
    body: str | None = None


class Retry(Struct, frozen=True):
    """Istio HTTPRetry after defaults: attempts 2, retryOn Istio's default list."""

    attempts: int = 2
    per_try_timeout: float | None = None
    retry_on: tuple[str, ...] = (
        "connect-failure",
        "refused-stream",
        "unavailable",
        "cancelled",
        "retriable-status-codes",
    )
    retriable_status_codes: tuple[int, ...] = (503,)
    retry_remote_localities: bool = False
    backoff: float = 0.025  # base interval of Envoy's jittered exponential backoff


class Fault(Struct, frozen=True):
    delay: float | None = None  # seconds
    delay_percent: float = 0.0  # 0..100
    abort_status: int | None = None
    abort_percent: float = 0.0
    # abort.grpcStatus as its code (UNAVAILABLE = 14): HTTP 200 with this grpc-status
    abort_grpc_status: int | None = None


class Mirror(Struct, frozen=True):
    cluster: str
    host: str = ""
    percent: float = 100.0


class Cors(Struct, frozen=True):
    allow_origins: tuple[StringMatch, ...] = ()
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: float | None = None
    allow_credentials: bool | None = None


class Route(Struct, frozen=True):
    """One HTTPRoute, in order. `matches` empty means match everything."""

    name: str = ""
    matches: tuple[RouteMatch, ...] = ()
    clusters: tuple[WeightedCluster, ...] = ()
    redirect: Redirect | None = None
    direct_response: DirectResponse | None = None
    rewrite: Rewrite | None = None
    timeout: float | None = None  # None: no route timeout (Istio's default for HTTP)
    retries: Retry | None = Retry()
    fault: Fault | None = None
    mirrors: tuple[Mirror, ...] = ()
    request_headers: HeaderOps | None = None
    response_headers: HeaderOps | None = None
    cors: Cors | None = None
    virtual_service: str = ""  # "namespace/name" that produced it, for config_dump


class VirtualHost(Struct, frozen=True):
    """Routes for a set of domains (Host/authority values, port-qualified forms included)."""

    name: str
    domains: tuple[str, ...]
    routes: tuple[Route, ...]


class RouteTable(Struct, frozen=True):
    name: str
    virtual_hosts: tuple[VirtualHost, ...] = ()


# ---------------------------------------------------------------- clusters


class Endpoint(Struct, frozen=True):
    address: str
    port: int
    labels: dict[str, str] = {}
    service_account: str = "default"
    namespace: str = "default"
    workload: str = ""
    healthy: bool = True
    weight: int = 1


class ConnectionPool(Struct, frozen=True):
    """Istio ConnectionPoolSettings after defaults (Envoy's effectively-unlimited 2^32-1)."""

    max_connections: int = 4294967295
    connect_timeout: float = 10.0
    http1_max_pending_requests: int = 4294967295
    http2_max_requests: int = 4294967295
    max_requests_per_connection: int = 0  # 0 = unlimited
    max_retries: int = 4294967295
    idle_timeout: float = 3600.0
    max_concurrent_streams: int = 0  # per HTTP/2 connection upstream; 0 = the server's limit


class OutlierDetection(Struct, frozen=True):
    """Istio OutlierDetection after defaults.

    consecutive_5xx defaults to 5 whenever outlierDetection is present; None disables it
    (Istio: `consecutive5xxErrors: 0`). consecutive_gateway None means off.
    """

    consecutive_5xx: int | None = 5
    consecutive_gateway: int | None = None
    consecutive_local_origin: int | None = None
    split_external_local_origin_errors: bool = False
    interval: float = 10.0
    base_ejection_time: float = 30.0
    max_ejection_percent: int = 10
    min_health_percent: int = 0


class ConsistentHash(Struct, frozen=True):
    kind: Literal["header", "cookie", "source_ip", "query_param"]
    name: str = ""  # header / cookie / query parameter name
    cookie_path: str | None = None
    cookie_ttl: float | None = None
    minimum_ring_size: int = 1024


class LoadBalancer(Struct, frozen=True):
    simple: Literal["ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "PASSTHROUGH", "UNSPECIFIED"] = (
        "LEAST_REQUEST"
    )
    consistent_hash: ConsistentHash | None = None


class UpstreamTls(Struct, frozen=True):
    """Client-side TLS from DestinationRule tls (or auto mTLS)."""

    mode: Literal["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"] = "DISABLE"
    sni: str | None = None
    ca_certificates: str | None = None  # PEM or path
    client_certificate: str | None = None
    private_key: str | None = None
    subject_alt_names: tuple[str, ...] = ()
    insecure_skip_verify: bool = False
    expected_identities: tuple[str, ...] = ()  # SPIFFE IDs the endpoints run as
    # Auto mTLS over endpoints with and without a sidecar (a Service while its pods are
    # being injected): only endpoints labelled `security.istio.io/tlsMode: istio` get
    # ISTIO_MUTUAL, the others plaintext (Envoy's transportSocketMatches, as istiod sets).
    per_endpoint: bool = False


class Cluster(Struct, frozen=True):
    """One upstream cluster: Envoy-style name `outbound|PORT|SUBSET|FQDN`."""

    name: str
    service: str  # FQDN
    port: int
    subset: str = ""
    endpoints: tuple[Endpoint, ...] = ()
    load_balancer: LoadBalancer = LoadBalancer()
    connection_pool: ConnectionPool = ConnectionPool()
    outlier: OutlierDetection | None = None
    tls: UpstreamTls = UpstreamTls()
    service_name: str = ""  # short name, for telemetry labels
    service_namespace: str = ""
    # what the proxy speaks to the endpoints (control/protocol.py, Istio's rules): HTTP/1.1,
    # HTTP/2 (h2c, or h2 inside mTLS), or whatever the client spoke
    protocol: Literal["http1", "http2", "downstream"] = "http1"


# ---------------------------------------------------------------- security


class PeerAuthn(Struct, frozen=True):
    """Effective inbound mTLS mode for this workload (after Istio's precedence)."""

    mode: Literal["STRICT", "PERMISSIVE", "DISABLE"] = "PERMISSIVE"
    port_modes: dict[int, str] = {}


class StringSet(Struct, frozen=True):
    """Values with Istio's wildcard forms: exact, `prefix*`, `*suffix`, `*` (presence)."""

    values: tuple[str, ...] = ()
    not_values: tuple[str, ...] = ()


class AuthzCondition(Struct, frozen=True):
    key: str  # e.g. "request.headers[x-token]", "source.ip"
    values: tuple[str, ...] = ()
    not_values: tuple[str, ...] = ()


class AuthzSource(Struct, frozen=True):
    principals: StringSet | None = None
    request_principals: StringSet | None = None
    namespaces: StringSet | None = None
    ip_blocks: StringSet | None = None
    remote_ip_blocks: StringSet | None = None
    trust_domains: StringSet | None = None  # of the peer principal (before `/ns/`)


class AuthzOperation(Struct, frozen=True):
    hosts: StringSet | None = None
    ports: StringSet | None = None
    methods: StringSet | None = None
    paths: StringSet | None = None


class AuthzRule(Struct, frozen=True):
    sources: tuple[AuthzSource, ...] = ()  # OR across entries; empty = any
    operations: tuple[AuthzOperation, ...] = ()
    conditions: tuple[AuthzCondition, ...] = ()  # AND


class AuthzPolicy(Struct, frozen=True):
    name: str  # "namespace/name"
    action: Literal["ALLOW", "DENY", "AUDIT", "CUSTOM"] = "ALLOW"
    rules: tuple[AuthzRule, ...] = ()  # empty tuple = matches nothing


class Authz(Struct, frozen=True):
    policies: tuple[AuthzPolicy, ...] = ()


class JwtLocation(Struct, frozen=True):
    """Where a token may be: a header (with the prefix to strip), a query parameter or a
    cookie. Istio's default when a rule names none: `Authorization: Bearer` and the
    `access_token` query parameter."""

    header: str = ""  # lowercase
    prefix: str = ""
    param: str = ""
    cookie: str = ""


class JwtRule(Struct, frozen=True):
    """One RequestAuthentication jwtRule, keys inline (the control plane fetches jwksUri).

    `jwks` empty with `jwks_uri` set means the keys could not be fetched: tokens from
    this issuer are then rejected (fail closed), requests without a token still pass.
    """

    issuer: str
    audiences: tuple[str, ...] = ()
    jwks: str = ""
    jwks_uri: str = ""
    locations: tuple[JwtLocation, ...] = ()
    forward_original_token: bool = False
    output_payload_to_header: str = ""
    output_claim_to_headers: tuple[tuple[str, str], ...] = ()  # (header, claim)
    space_delimited_claims: tuple[str, ...] = ()  # besides `scope` and `permission`


class RequestAuthn(Struct, frozen=True):
    """Every jwtRule of the RequestAuthentications that select this workload (merged)."""

    rules: tuple[JwtRule, ...] = ()


class TlsCredential(Struct, frozen=True):
    """Certificate material, inline PEM."""

    cert_chain: str
    private_key: str
    ca_certificates: str | None = None


class Trust(Struct, frozen=True):
    """Trust bundle and identity settings pushed with config."""

    trust_domain: str = "cluster.local"
    root_certificates: str | None = None  # PEM bundle
    revoked_serials: tuple[str, ...] = ()  # lowercase hex serials of revoked workload certs


# ---------------------------------------------------------------- listeners


class DownstreamTls(Struct, frozen=True):
    """Gateway server TLS (SIMPLE / MUTUAL / PASSTHROUGH) or ISTIO_MUTUAL for sidecars."""

    mode: Literal["SIMPLE", "MUTUAL", "PASSTHROUGH", "ISTIO_MUTUAL", "AUTO_PASSTHROUGH"]
    credential: TlsCredential | None = None
    sni_hosts: tuple[str, ...] = ()
    min_protocol_version: str | None = None


class InboundChain(Struct, frozen=True):
    """What a captured inbound listener does with connections to one app port: route
    by `route_table` (whose clusters reach the app at 127.0.0.1:port)."""

    port: int  # the original destination port (the container port the client dialled)
    route_table: str = ""


class Listener(Struct, frozen=True):
    """A socket the proxy listens on, and what it does with what arrives.

    inbound: in front of the local app at `app_address:app_port`.
    outbound: the app's own calls, routed by Host header or absolute URI.
    gateway: a Gateway server; TLS from `tls`.

    `capture`: the listener receives connections the pod's capture rules redirected
    (a pod's 0.0.0.0:15006): each is served by the chain of its original destination
    port (Envoy's virtualInbound filter chains by destination_port); a port with no chain
    goes straight to the app at 127.0.0.1:PORT (Istio's InboundPassthroughCluster).
    """

    name: str
    kind: Literal["inbound", "outbound", "gateway"]
    address: str = "127.0.0.1"
    port: int = 0
    route_table: str = ""
    app_address: str | None = None
    app_port: int | None = None
    tls: DownstreamTls | None = None
    service_port: int | None = None  # the service port this inbound listener stands for
    # Upgrade types tunnelled (Envoy's `upgrade_configs`; Istio configures websocket):
    # lowercase `Upgrade` values, "connect" for CONNECT. h2c is forwarded without its
    # upgrade, anything else is answered 403.
    upgrade_types: tuple[str, ...] = ("websocket",)
    capture: bool = False
    chains: tuple[InboundChain, ...] = ()


class TagOverride(Struct, frozen=True):
    """A metric tag added/replaced (`value`: a CEL subset expression, snapshot/cel.py) or
    removed (Telemetry metrics.overrides[].tagOverrides)."""

    name: str
    value: str = ""
    remove: bool = False


class MetricOverride(Struct, frozen=True):
    """One Istio metric's overrides for one reporter side, after precedence."""

    metric: Literal["REQUEST_COUNT", "REQUEST_DURATION", "REQUEST_SIZE", "RESPONSE_SIZE",
                    "TCP_OPENED_CONNECTIONS", "TCP_CLOSED_CONNECTIONS", "TCP_SENT_BYTES",
                    "TCP_RECEIVED_BYTES", "GRPC_REQUEST_MESSAGES", "GRPC_RESPONSE_MESSAGES"]
    disabled: bool = False
    tags: tuple[TagOverride, ...] = ()


class AccessLog(Struct, frozen=True):
    """One access log this proxy writes (a Telemetry accessLogging provider, or the mesh
    config's accessLogFile). `client`/`server`: on outbound+gateway / inbound listeners."""

    path: str = "/dev/stdout"
    encoding: Literal["TEXT", "JSON"] = "TEXT"
    text_format: str = ""  # Envoy format string; "" is Istio's default text format
    json_labels: tuple[tuple[str, str], ...] = ()  # key -> Envoy command; () Istio's default
    filter: str = ""  # CEL subset expression; "" logs every request
    client: bool = True
    server: bool = True


class Telemetry(Struct, frozen=True):
    """Metrics and access logs after Istio's precedence (control/translate/telemetry.py).

    `metrics` False: no Istio metric is counted (prometheus not in scope, or ALL_METRICS
    disabled). `client_metrics` apply on outbound and gateway listeners (reporter=source),
    `server_metrics` on inbound ones (reporter=destination)."""

    metrics: bool = True
    access_logs: tuple[AccessLog, ...] = ()
    client_metrics: tuple[MetricOverride, ...] = ()
    server_metrics: tuple[MetricOverride, ...] = ()


class TracingProvider(Struct, frozen=True):
    """Where spans go: one MeshConfig `extensionProviders` entry, resolved to a URL.

    kind "zipkin": Zipkin v2 JSON POSTed to `endpoint` (Istio's zipkin provider:
    `http://{service}:{port}/api/v2/spans`). kind "opentelemetry": OTLP HTTP/protobuf
    POSTed to `endpoint` (`http://{service}:{port}{http.path or /v1/traces}`); OTLP over
    gRPC is not spoken, the control plane refuses such a provider."""

    name: str  # the extensionProviders[].name, for messages and metrics
    kind: Literal["zipkin", "opentelemetry"]
    endpoint: str  # absolute http(s) URL the exporter POSTs batches to
    max_tag_length: int = 256  # zipkin.maxTagLength / Envoy's default
    timeout: float = 5.0  # seconds per export POST (opentelemetry.http.timeout)
    headers: tuple[tuple[str, str], ...] = ()  # opentelemetry.http.headers (name, value)


class Tracing(Struct, frozen=True):
    """This workload's tracing after Istio's precedence (MeshConfig < mesh Telemetry <
    namespace Telemetry < workload Telemetry).

    `provider` None: no spans are reported (trace headers are still propagated).
    `sampling` is the percentage of traces this proxy starts that are sampled (Telemetry
    randomSamplingPercentage, else defaultConfig.tracing.sampling; Istio's default 1%); a
    trace that arrives with a sampling decision keeps it. `service_name` empty: the proxy
    names itself `{canonical service}.{namespace}` as Istio does."""

    provider: TracingProvider | None = None
    sampling: float = 1.0  # percent, 0..100
    service_name: str = ""
    # Telemetry tracing[].match.mode: which traffic reports spans. CLIENT: outbound and
    # gateway listeners; SERVER: inbound listeners.
    mode: Literal["CLIENT_AND_SERVER", "CLIENT", "SERVER"] = "CLIENT_AND_SERVER"
    # Telemetry tracing[].customTags: (tag, "literal" | "header" | "environment",
    # literal value or header/variable name, default when the header/variable is absent)
    custom_tags: tuple[tuple[str, str, str, str], ...] = ()


PathNormalization = Literal["NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"]


class Mesh(Struct, frozen=True):
    """Mesh-wide settings from Istio's MeshConfig that the data plane applies."""

    path_normalization: PathNormalization = "BASE"  # meshConfig.pathNormalization


class ProxyConfig(Struct, frozen=True):
    """Everything one proxy needs, and nothing else."""

    version: str
    node: Node
    listeners: tuple[Listener, ...] = ()
    route_tables: tuple[RouteTable, ...] = ()
    clusters: tuple[Cluster, ...] = ()
    peer_authn: PeerAuthn = PeerAuthn()
    authz: Authz = Authz()
    request_authn: RequestAuthn = RequestAuthn()
    trust: Trust = Trust()
    telemetry: Telemetry = Telemetry()
    mesh: Mesh = Mesh()
    tracing: Tracing = Tracing()
    schema: int = SCHEMA_VERSION
