"""Compile a snapshot into what the hot path reads: live clusters, matchers, listener plans.

Called once per config push. Everything that can be decided at config time is decided
here: RE2 compiled (core.match), label sets interned for telemetry, TLS contexts built,
the filter tuple per listener fixed. Live clusters whose spec did not change are carried
over so their pools and outlier state survive the push. A config that cannot be compiled
raises SnapshotError and nothing of it is used.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING

import msgspec

from tollway.proxy.chain import accesslog, authz, edge, xfcc
from tollway.proxy.chain.filter import Filter
from tollway.proxy.chain.mirror import Mirrorer
from tollway.proxy.chain.router import Router
from tollway.proxy.chain.telemetry import MetricPolicy, Metrics
from tollway.proxy.chain.tracing import Tracer
from tollway.proxy.core.match import RouteTableMatcher
from tollway.proxy.core.pathnorm import PathNormalizer
from tollway.proxy.http1.parse import Limits
from tollway.proxy.upstream.cluster import LiveCluster
from tollway.snapshot import types
from tollway.snapshot.codec import SnapshotError

if TYPE_CHECKING:
    from tollway.proxy.chain.stream import Exchange
    from tollway.proxy.export import SpanSink
    from tollway.proxy.tls import TlsState

log = logging.getLogger("tollway.proxy")


def tls_module() -> ModuleType:
    """The TLS module (`tollway.proxy.tls`), imported the first time something needs it.

    It pulls in `cryptography` (~7 MB per sidecar), which a proxy without TLS anywhere
    never needs. RBAC and XFCC are plain imports above, so a missing or renamed one is an
    ImportError when the proxy starts, never a proxy that silently runs without it; an
    ImportError here propagates the same way, the first time TLS is asked for (see also
    `jwt_module`).
    """
    from tollway.proxy import tls

    return tls


def jwt_module() -> ModuleType:
    """The jwt_authn filter (`chain/jwt.py`), imported by the first snapshot with a
    RequestAuthentication: its key parsing and signature checks need `cryptography`, which
    a sidecar without JWT rules never loads. Fails closed: when it cannot be imported, the
    snapshot that asks for it is refused (SnapshotError, the last good one stays), never
    applied without the token check."""
    try:
        from tollway.proxy.chain import jwt
    except ImportError as exc:
        raise SnapshotError(
            f"RequestAuthentication (jwtRules) needs the `cryptography` package, which "
            f"cannot be imported ({exc}); install it (pip install cryptography) and push again"
        ) from exc
    return jwt


class ListenerPlan:
    """Everything one listener needs per request under one snapshot."""

    def __init__(
        self,
        snap: Snapshot,
        spec: types.Listener,
        matcher: RouteTableMatcher | None,
        default_cluster: LiveCluster | None,
        filters: tuple[Filter, ...],
        peer_labels: tuple[str, ...] | None = None,
    ) -> None:
        self.snapshot = snap
        self.spec = spec
        self.name = spec.name
        self.kind = spec.kind
        self.port = spec.service_port or spec.port
        self.match_port = spec.service_port
        # the port a request was sent to, as a redirect's derivePort FROM_REQUEST_PORT
        # reads it: the service port, or a gateway's server port (its listener is named
        # "gateway|PORT" by translate/gateway.py; it listens on PORT + offset)
        self.request_port = spec.service_port or _gateway_server_port(spec)
        self.gateway: str | None = None
        self.scheme = "https" if spec.tls is not None else "http"
        self.matcher = matcher
        self.default_cluster = default_cluster
        self.filters = filters
        # what the listener applies to every request head before the chain
        self.paths = PathNormalizer(snap.config.mesh.path_normalization)
        self.upgrade_types = frozenset(t.lower() for t in spec.upgrade_types)
        self.clusters = snap.clusters
        self.metrics = snap.metrics
        self.mirrorer = snap.mirrorer
        self.limits = snap.limits
        self.loop = snap.loop
        # The upstream head's last line(s) and the blank line ending it (the router
        # appends it as is: no call per request).
        self.head_tail = b"x-forwarded-proto: %s\r\n\r\n" % self.scheme.encode()
        self.reporter = "destination" if spec.kind == "inbound" else "source"
        self.metrics_on = snap.config.telemetry.metrics
        # per request: `record` (the plain counter, or one that adds a Telemetry's tags)
        # and `logger` (None when this side writes no access log)
        self.record = snap.metric_policy.recorder(snap.metrics, self.reporter)
        self.record_grpc = snap.metric_policy.grpc_recorder(snap.metrics, self.reporter)
        self.report_messages = snap.metric_policy.messages_recorder(snap.metrics,
                                                                    self.reporter)
        self.logger = snap.loggers[0 if self.reporter == "source" else 1]
        # tracing: the rate for traces this proxy starts; the tracer only when spans are
        # reported (None keeps the per-request cost to one test)
        self.sample_rate = max(0.0, min(100.0, snap.config.tracing.sampling)) / 100.0
        tracer = snap.tracer
        self.tracer = tracer if tracer is not None and tracer.reports(spec.kind) else None
        self.spans_on = self.tracer is not None
        # What ends each exchange (Exchange.end), in this order, decided here once: the
        # metrics counter, the access log, the trace span - only those that are on.
        after: list[Callable[[Exchange, float], None]] = []
        if self.logger is not None:
            after.append(self.logger.log)
        if self.tracer is not None:
            after.append(self.tracer.finish)
        self.after_metrics = tuple(after)  # and what a gRPC call runs after its counter
        self.enders = (self.record, *after) if self.metrics_on else self.after_metrics
        # cluster name -> interned label set per endpoint (index + 1; 0: no endpoint)
        self.label_rows: dict[str, list[int]] = {}
        # inbound (destination reporter) over mTLS: the peer's source_* labels, on the
        # plan made once per peer identity (`for_peer`); None: plaintext
        self.peer_labels = peer_labels
        self.peer_plans: dict[str, ListenerPlan] = {}
        self.router = Router(self)
        self.default_label = self.labels_for("", -1)
        # a captured inbound listener's plans by original destination port (see
        # _capture_plan); None on every other listener
        self.by_port: dict[int, ListenerPlan] | None = None
        self.passthrough: Callable[[int], ListenerPlan] | None = None

    def for_port(self, port: int) -> ListenerPlan:
        """The plan for a captured connection to `port` (this one when not captured)."""
        if self.by_port is None:
            return self
        found = self.by_port.get(port)
        if found is None and self.passthrough is not None and port:
            found = self.passthrough(port)
        return found or self

    def for_peer(self, principal: str) -> ListenerPlan:
        """This plan as a connection from mTLS peer `principal` (its SPIFFE ID without
        `spiffe://`) sees it: the same routes, filters and clusters, with label sets whose
        source_* labels are the peer's and connection_security_policy `mutual_tls` (the
        filters are the same objects: rate limits and the like stay shared).

        The listener asks once per connection and snapshot, at the first request, never
        per request; the copy is kept per identity (a mesh has few). Only the
        destination reporter names its peer this way (a client's labels name itself)."""
        if self.reporter != "destination":
            return self
        view = self.peer_plans.get(principal)
        if view is None:
            view = ListenerPlan(self.snapshot, self.spec, self.matcher, self.default_cluster,
                                self.filters, _peer_labels(principal, self.snapshot.config))
            if len(self.peer_plans) < _MAX_PEER_PLANS:
                self.peer_plans[principal] = view
        return view

    def labels_for(self, cluster_name: str, index: int) -> int:
        """Interned Istio label set for a destination endpoint (index -1: no endpoint)."""
        per = self.label_rows.get(cluster_name)
        if per is None:
            per = self.label_rows[cluster_name] = self._compile_labels(cluster_name)
        return per[index + 1]

    def _compile_labels(self, cluster_name: str) -> list[int]:
        cfg = self.snapshot.config
        node = cfg.node
        cluster = self.clusters.get(cluster_name) if cluster_name else self.default_cluster
        spec = cluster.spec if cluster is not None else None
        td = cfg.trust.trust_domain
        me = _workload_labels(
            node.workload or node.name,
            node.namespace,
            node.labels,
            f"spiffe://{td}/ns/{node.namespace}/sa/{node.service_account}",
        )
        out = []
        endpoints: tuple[types.Endpoint | None, ...] = (None,)
        if spec is not None:
            endpoints += tuple(spec.endpoints)
        for ep in endpoints:
            src: tuple[str, ...]
            dst: tuple[str, ...]
            if self.reporter == "destination":
                src = self.peer_labels or _UNKNOWN_PEER
                dst = me
                svc = _service_labels(spec, node)
                policy = "none" if self.peer_labels is None else "mutual_tls"
            else:
                src = (me[0], me[1], "unknown", *me[3:])
                dst = _endpoint_labels(ep, spec, td)
                svc = _service_labels(spec, node) if spec is not None else _UNKNOWN_SVC
                policy = "unknown"
            labels = (self.reporter, *src, *dst[:5], *svc, *dst[5:], "http", policy)
            out.append(self.metrics.intern(labels))
        return out


def _gateway_server_port(spec: types.Listener) -> int | None:
    kind, _, number = spec.name.partition("|")
    return int(number) if kind == "gateway" and number.isdigit() else None


_UNKNOWN_PEER = ("unknown",) * 8
# peer identities a plan keeps a copy for; past it (a CA minting identities without end)
# each connection makes its own copy, correct but not kept
_MAX_PEER_PLANS = 1024


def _peer_labels(principal: str, config: types.ProxyConfig) -> tuple[str, ...]:
    """source_workload .. source_cluster of an mTLS peer: the principal is its certificate's
    URI SAN; the workload labels (Istio takes them from the peer's metadata exchange)
    come from the endpoint of this snapshot that runs as that identity (namespace and
    service account), when exactly one workload does, else `unknown`."""
    uri = "spiffe://" + principal
    parts = principal.split("/")
    if len(parts) == 5 and parts[1] == "ns" and parts[3] == "sa":
        ns, sa = parts[2], parts[4]
        found = {(ep.workload, ep.namespace): ep for c in config.clusters for ep in c.endpoints
                 if ep.namespace == ns and ep.service_account == sa and ep.workload}
        if len(found) == 1:
            ep = next(iter(found.values()))
            return _workload_labels(ep.workload, ns, ep.labels, uri)
    return ("unknown", "unknown", uri, *("unknown",) * 5)
_UNKNOWN_SVC = ("unknown", "unknown", "unknown")


def _workload_labels(
    workload: str, namespace: str, labels: dict[str, str], principal: str
) -> tuple[str, ...]:
    app = labels.get("app", "unknown")
    version = labels.get("version", "unknown")
    canonical = labels.get("service.istio.io/canonical-name", labels.get("app", workload))
    revision = labels.get("service.istio.io/canonical-revision", labels.get("version", "latest"))
    return (workload, namespace, principal, app, version, canonical, revision, "Kubernetes")


def _endpoint_labels(
    ep: types.Endpoint | None, spec: types.Cluster | None, trust_domain: str
) -> tuple[str, ...]:
    """destination_workload .. version, then canonical service/revision and cluster."""
    if ep is None:
        return ("unknown",) * 5 + ("unknown", "unknown", "unknown")
    mtls = spec is not None and spec.tls.mode == "ISTIO_MUTUAL"
    principal = (
        f"spiffe://{trust_domain}/ns/{ep.namespace}/sa/{ep.service_account}" if mtls else "unknown"
    )
    w = _workload_labels(ep.workload or "unknown", ep.namespace, ep.labels, principal)
    return w


def _service_labels(spec: types.Cluster | None, node: types.Node) -> tuple[str, str, str]:
    if spec is None:
        name = node.labels.get("app", node.workload or node.name)
        fqdn = f"{name}.{node.namespace}.svc.{node.cluster_domain}"
        return (fqdn, name, node.namespace)
    fqdn = spec.service or "unknown"
    short = spec.service_name or fqdn.split(".", 1)[0]
    ns = spec.service_namespace or (fqdn.split(".")[1] if fqdn.count(".") >= 2 else "unknown")
    return (fqdn, short, ns)


class Snapshot:
    """One compiled config: read-only for every request that started under it."""

    def __init__(
        self,
        config: types.ProxyConfig,
        *,
        loop: asyncio.AbstractEventLoop,
        metrics: Metrics,
        mirrorer: Mirrorer,
        limits: Limits,
        clusters: dict[str, LiveCluster],
        tracer: Tracer | None = None,
    ) -> None:
        self.config = config
        self.tracer = tracer
        self.version = config.version
        self.loop = loop
        self.metrics = metrics
        self.mirrorer = mirrorer
        self.limits = limits
        self.clusters = clusters
        self.plans: dict[str, ListenerPlan] = {}
        self.server_contexts: dict[str, ssl.SSLContext | None] = {}
        # Telemetry, compiled here (a bad expression refuses the snapshot) and made the
        # scrape's view by ProxyServer.apply once the snapshot is in force
        self.metric_policy = MetricPolicy(config.telemetry)
        self.loggers = accesslog.compile_loggers(config, metrics.logs,
                                                 metrics.access_log is not None)


def compile_snapshot(
    config: types.ProxyConfig,
    *,
    loop: asyncio.AbstractEventLoop,
    metrics: Metrics,
    mirrorer: Mirrorer,
    limits: Limits,
    old: Snapshot | None = None,
    tls_state: TlsState | None = None,
    spans: SpanSink | None = None,
) -> Snapshot:
    """Build a Snapshot or raise SnapshotError (nothing partially applied).

    `spans`: where finished spans go; without it (or without a provider in the config)
    this snapshot reports none."""
    try:
        return _compile(config, loop, metrics, mirrorer, limits, old, tls_state, spans)
    except SnapshotError:
        raise
    except (ValueError, TypeError, KeyError, ssl.SSLError, OSError) as exc:
        raise SnapshotError(f"snapshot {config.version} cannot be applied: {exc}") from exc


def _compile(
    config: types.ProxyConfig,
    loop: asyncio.AbstractEventLoop,
    metrics: Metrics,
    mirrorer: Mirrorer,
    limits: Limits,
    old: Snapshot | None,
    tls_state: TlsState | None,
    spans: SpanSink | None = None,
) -> Snapshot:
    needs_tls = any(c.tls.mode not in ("DISABLE", "ISTIO_MUTUAL") for c in config.clusters) or any(
        lst.tls is not None for lst in config.listeners
    )
    tlsmod = tls_module() if needs_tls else None
    names = [c.name for c in config.clusters]
    if len(set(names)) != len(names):
        raise SnapshotError("snapshot has two clusters with the same name")
    clusters: dict[str, LiveCluster] = {}
    for spec in config.clusters:
        prev = old.clusters.get(spec.name) if old is not None else None
        if prev is not None and prev.spec == spec and not prev.closed:
            clusters[spec.name] = prev
            continue
        clusters[spec.name] = LiveCluster(spec, loop, _client_context(spec, tlsmod, tls_state))
    tables = {t.name: RouteTableMatcher(t) for t in config.route_tables}
    tracer = (Tracer(config, spans)
              if spans is not None and config.tracing.provider is not None else None)
    snap = Snapshot(
        config, loop=loop, metrics=metrics, mirrorer=mirrorer, limits=limits, clusters=clusters,
        tracer=tracer,
    )
    seen_ports: set[tuple[str, int]] = set()
    for spec_l in config.listeners:
        if spec_l.port and (spec_l.address, spec_l.port) in seen_ports:
            raise SnapshotError(f"two listeners want {spec_l.address}:{spec_l.port}")
        seen_ports.add((spec_l.address, spec_l.port))
        if spec_l.capture:
            plan = _capture_plan(snap, spec_l, tables, old, tls_state)
        else:
            plan = _plan(snap, spec_l, tables, old, tls_state)
        snap.plans[spec_l.name] = plan
        snap.server_contexts[spec_l.name] = _server_context(spec_l, tlsmod)
    return snap


def _plan(snap: Snapshot, spec_l: types.Listener, tables: dict[str, RouteTableMatcher],
          old: Snapshot | None, tls_state: TlsState | None) -> ListenerPlan:
    matcher = None
    if spec_l.route_table:
        matcher = tables.get(spec_l.route_table)
        if matcher is None:
            raise SnapshotError(
                f"listener {spec_l.name} names route table {spec_l.route_table!r}, "
                "which the snapshot does not have"
            )
    default = None
    if spec_l.kind == "inbound" and matcher is None:
        if spec_l.app_port is None:
            raise SnapshotError(f"inbound listener {spec_l.name} has no app_port")
        default = _app_cluster(spec_l, snap.config, old, snap.clusters, snap.loop)
    return ListenerPlan(snap, spec_l, matcher, default, _filters(snap.config, spec_l, tls_state))


RESERVED_PORTS = frozenset({15000, 15001, 15004, 15006, 15008, 15020, 15021, 15090})


def _capture_plan(snap: Snapshot, spec_l: types.Listener, tables: dict[str, RouteTableMatcher],
                  old: Snapshot | None, tls_state: TlsState | None) -> ListenerPlan:
    """A captured inbound listener: one plan per chain, compiled now, picked per
    connection by its original destination port (see types.Listener). A port without a
    chain gets a plan to the app at 127.0.0.1:PORT the first time it is seen, kept for
    the rest of the snapshot (an app may listen on ports no Service names: probes,
    metrics)."""
    if spec_l.kind != "inbound":
        raise SnapshotError(f"listener {spec_l.name}: only inbound listeners capture")

    def sub(port: int, table: str) -> types.Listener:
        return msgspec.structs.replace(
            spec_l, name=f"{spec_l.name}|{port}", route_table=table, app_address="127.0.0.1",
            app_port=port, service_port=port, capture=False, chains=())

    by_port = {c.port: _plan(snap, sub(c.port, c.route_table), tables, old, tls_state)
               for c in spec_l.chains}

    base = sub(0, "")
    plan = ListenerPlan(snap, base, None, None, _filters(snap.config, base, tls_state))

    # Never passed through: the proxy's own ports (a client dialling podIP:15001 would
    # otherwise reach the outbound listener and call the mesh as this workload) and the
    # other ports Istio reserves for the sidecar.
    own = {lst.port for lst in snap.config.listeners if lst.port} | RESERVED_PORTS

    def passthrough(port: int) -> ListenerPlan:
        if port in own:  # answered 404 by the plan without a destination
            return plan
        found = _plan(snap, sub(port, ""), tables, None, tls_state)
        by_port[port] = found
        return found

    plan.by_port = by_port
    plan.passthrough = passthrough
    return plan


def _app_cluster(
    spec: types.Listener,
    config: types.ProxyConfig,
    old: Snapshot | None,
    clusters: dict[str, LiveCluster],
    loop: asyncio.AbstractEventLoop,
) -> LiveCluster:
    """The local app behind an inbound listener, as a one-endpoint cluster."""
    name = f"inbound|{spec.service_port or spec.app_port}||"
    node = config.node
    cspec = types.Cluster(
        name=name,
        service=f"{node.labels.get('app', node.workload or node.name)}.{node.namespace}"
        f".svc.{node.cluster_domain}",
        port=spec.app_port or 0,
        endpoints=(
            types.Endpoint(
                address=spec.app_address or "127.0.0.1",
                port=spec.app_port or 0,
                labels=dict(node.labels),
                namespace=node.namespace,
                workload=node.workload,
                service_account=node.service_account,
            ),
        ),
        load_balancer=types.LoadBalancer(simple="ROUND_ROBIN"),
    )
    prev = old.clusters.get(name) if old is not None else None
    live = prev if prev is not None and prev.spec == cspec and not prev.closed else None
    if live is None:
        live = LiveCluster(cspec, loop, None)
    clusters[name] = live
    return live


def _client_context(
    spec: types.Cluster, tlsmod: ModuleType | None, tls_state: TlsState | None
) -> ssl.SSLContext | None:
    if spec.tls.mode == "DISABLE":
        return None
    if spec.tls.mode == "ISTIO_MUTUAL":
        if tls_state is None:
            log.warning("cluster %s wants mTLS but this proxy has no certificate yet", spec.name)
            return None
        # refuses servers outside the expected SPIFFE IDs
        return tls_state.client_for(spec.tls.expected_identities)
    assert tlsmod is not None  # needs_tls above
    return tlsmod.client_context(spec, None)  # type: ignore[no-any-return]


def _server_context(spec: types.Listener, tlsmod: ModuleType | None) -> ssl.SSLContext | None:
    """Gateway TLS (SIMPLE / MUTUAL) from the listener's credential."""
    if spec.kind != "gateway" or spec.tls is None or spec.tls.mode not in ("SIMPLE", "MUTUAL"):
        return None
    if spec.tls.credential is None:
        raise SnapshotError(f"gateway listener {spec.name} uses TLS but has no credential")
    assert tlsmod is not None  # needs_tls above
    return tlsmod.gateway_context(spec.tls)  # type: ignore[no-any-return]


def _filters(
    config: types.ProxyConfig, spec: types.Listener, tls_state: TlsState | None
) -> tuple[Filter, ...]:
    """The chain before the router, in order (one line per stage):

    1. edge: gateways append the peer to X-Forwarded-For and make a new x-request-id
       (Envoy's use_remote_address at the edge; sidecars keep what they are sent);
    2. XFCC: inbound with mTLS on (the app trusts it, so a caller's copy never passes);
    3. jwt_authn: RequestAuthentication on inbound and gateway listeners (401 on a bad
       token; the principal and claims for RBAC on a good one; imported by jwt_module);
    4. RBAC: AuthorizationPolicy on inbound and gateway listeners (none: nothing to check).
    """
    filters: list[Filter] = []
    if spec.kind == "gateway":
        filters.append(edge.EdgeFilter())
    if spec.kind == "inbound" and tls_state is not None:
        filters.append(xfcc.build_xfcc(config.node))
    if spec.kind in ("inbound", "gateway"):
        if config.request_authn.rules:  # `cryptography` only where tokens are checked
            token_check = jwt_module().build(config.request_authn)
            if token_check is not None:
                filters.append(token_check)
        rbac = authz.build(config.authz, spec.service_port)
        if rbac is not None:
            filters.append(rbac)
    return tuple(filters)
