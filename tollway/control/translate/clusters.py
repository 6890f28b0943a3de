"""Referenced cluster names -> snapshot Clusters with subsets, policies and endpoints [pure].

Only clusters that this proxy's route tables name are built (a proxy holds only what it
needs). A subset no DestinationRule defines yields no cluster: the route then answers
503 `NC`, as Istio's does. Endpoints are the registry's for (host, port), filtered by the
subset's labels, unhealthy ones left out. TLS: the DestinationRule's `tls`, else Istio's
auto mTLS (ISTIO_MUTUAL towards endpoints that run a sidecar) when `auto_mtls` is on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from tollway.control import protocol
from tollway.control.registry import TLS_MODE_LABEL, as_map, selects
from tollway.control.translate import names, policy, security
from tollway.control.world import World
from tollway.snapshot import types


def _tls(world: World, spec: Any, endpoints: tuple[types.Endpoint, ...],
         auto_mtls: bool) -> types.UpstreamTls:
    meshed = tuple(e for e in endpoints if e.labels.get(TLS_MODE_LABEL) == "istio")
    sidecars = bool(endpoints) and len(meshed) == len(endpoints)
    if not spec and not auto_mtls:
        return types.UpstreamTls()
    if not spec and meshed and not sidecars:  # auto mTLS to those with a sidecar only
        tls = security.upstream_tls_for(world, None, meshed, trust_domain=world.cluster_domain)
        return msgspec.structs.replace(tls, per_endpoint=tls.mode == "ISTIO_MUTUAL")
    return security.upstream_tls_for(world, spec if isinstance(spec, Mapping) else None,
                                      endpoints, trust_domain=world.cluster_domain,
                                      sidecars=sidecars)


def outbound(world: World, ref: names.ClusterRef, node: types.Node,
             auto_mtls: bool, mesh_upgrade: bool = False) -> types.Cluster | None:
    drs = [dr for dr in world.destination_rules_for(ref.host, node.namespace)
           if _dr_applies(dr.spec, dr.namespace, node)]
    top, subsets = policy.merged_rules(drs)
    subset = subsets.get(ref.subset) if ref.subset else None
    if ref.subset and subset is None:
        return None
    merged = policy.merge(top, policy_of(subset), ref.port)
    labels = policy.subset_labels(subset)
    endpoints = tuple(e for e in world.endpoints_of(ref.host, ref.port)
                      if e.healthy and selects(labels, e.labels))
    svc = world.services.get(ref.host)
    port = svc.port(ref.port) if svc else None
    tls = _tls(world, merged["tls"], endpoints, auto_mtls)
    upstream = protocol.upstream(
        port.protocol if port else "", as_map(as_map(merged["connectionPool"]).get("http")),
        mesh_upgrade, node.kind != "gateway", tls.mode == "ISTIO_MUTUAL")
    return types.Cluster(
        name=names.outbound_cluster(ref.port, ref.subset, ref.host),
        service=ref.host, port=ref.port, subset=ref.subset, endpoints=endpoints,
        load_balancer=policy.load_balancer(merged["loadBalancer"]),
        connection_pool=policy.connection_pool(merged["connectionPool"]),
        outlier=policy.outlier(merged["outlierDetection"]),
        tls=tls,
        service_name=svc.name if svc else ref.host.split(".")[0],
        service_namespace=svc.namespace if svc else "",
        protocol=upstream,
    )


def policy_of(subset: Any) -> Any:
    return subset.get("trafficPolicy") if isinstance(subset, Mapping) else None


def _dr_applies(spec: Any, namespace: str, node: types.Node) -> bool:
    selector = spec.get("workloadSelector") if isinstance(spec, Mapping) else None
    if not isinstance(selector, Mapping):
        return True
    labels = {str(k): str(v) for k, v in (selector.get("matchLabels") or {}).items()}
    return namespace == node.namespace and selects(labels, node.labels)


def inbound(service_port: int, app_address: str, app_port: int,
            service: str, service_name: str, namespace: str,
            port_protocol: str = "HTTP") -> types.Cluster:
    """The local app behind an inbound listener, spoken to in its port's protocol."""
    return types.Cluster(
        name=names.inbound_cluster(service_port), service=service, port=app_port,
        endpoints=(types.Endpoint(address=app_address, port=app_port, namespace=namespace),),
        service_name=service_name, service_namespace=namespace,
        protocol=protocol.inbound(port_protocol),
    )


def _cached(world: World, ref: names.ClusterRef, node: types.Node,
            auto_mtls: bool, mesh_upgrade: bool = False) -> types.Cluster | None:
    """Clusters depend on the proxy through its namespace (which DestinationRules it sees)
    and, for DRs with a workloadSelector, its labels."""
    selective = any(isinstance(dr.spec.get("workloadSelector"), Mapping)
                    for dr in world.destination_rules_for(ref.host))
    labels = tuple(sorted(node.labels.items())) if selective else None
    key = ("cluster", ref, auto_mtls, node.namespace, labels, mesh_upgrade,
           node.kind == "gateway")
    if key not in world.memo:
        world.memo[key] = outbound(world, ref, node, auto_mtls, mesh_upgrade)
    found: types.Cluster | None = world.memo[key]
    return found


def build_shared(world: World, cluster_names: Iterable[str], node: types.Node,
                 auto_mtls: bool = True, mesh_upgrade: bool = False
                 ) -> tuple[types.Cluster, ...]:
    """`build`, memoized per World: proxies naming the same clusters share one tuple."""
    selective = any(isinstance(dr.spec.get("workloadSelector"), Mapping)
                    for drs in world.destination_rules.values() for dr in drs)
    labels = tuple(sorted(node.labels.items())) if selective else None
    key = ("clusters", frozenset(cluster_names), auto_mtls, node.namespace, labels,
           mesh_upgrade, node.kind == "gateway")
    if key not in world.memo:
        world.memo[key] = tuple(build(world, key[1], node, auto_mtls, mesh_upgrade))
    found: tuple[types.Cluster, ...] = world.memo[key]
    return found


def build(world: World, cluster_names: Iterable[str], node: types.Node,
          auto_mtls: bool = True, mesh_upgrade: bool = False) -> list[types.Cluster]:
    out = []
    for name in sorted(set(cluster_names)):
        ref = names.parse_cluster(name)
        if ref is None or ref.direction != "outbound":
            continue
        cluster = _cached(world, ref, node, auto_mtls, mesh_upgrade)
        if cluster is not None:
            out.append(cluster)
    return out
