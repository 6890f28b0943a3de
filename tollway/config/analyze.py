"""Cross-resource checks, in the spirit of `istioctl analyze` (pure).

Validation looks at one document; these look at the set: routes to subsets or hosts
nobody defines, weights that will be normalised, competing VirtualServices, Gateways with
nothing bound, policies selecting nothing. Rollout and Flagger references live in
`analyze_delivery.py`; whether a Rollout's Prometheus analysis can see its canary at all
(service-wide queries, gRPC-blind ones) in `analyze_promql.py`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from tollway.config.analyze_delivery import delivery_findings
from tollway.config.analyze_promql import grpc_blind_findings, service_wide_findings
from tollway.config.findings import Finding, Severity
from tollway.config.hosts import (
    ROOT_NAMESPACE,
    SVC_SUFFIX,
    HostIndex,
    fqdn,
    host_matches,
    selects,
    workloads,
)
from tollway.config.locate import finding
from tollway.config.resource import Resource, ResourceSet
from tollway.config.source import PathKey


def _destinations(vs: Resource) -> Iterator[tuple[PathKey, dict[str, Any]]]:
    """Every destination a VirtualService names: routes, mirrors, tcp and tls routes."""
    for section in ("http", "tcp", "tls"):
        for i, rule in enumerate(vs.spec.get(section) or []):
            base: PathKey = ("spec", section, i)
            for j, dest in enumerate(rule.get("route") or []):
                yield (*base, "route", j, "destination"), dest.get("destination") or {}
            if isinstance(rule.get("mirror"), dict):
                yield (*base, "mirror"), rule["mirror"]
            for j, m in enumerate(rule.get("mirrors") or []):
                yield (*base, "mirrors", j, "destination"), m.get("destination") or {}


def _route_targets(rs: ResourceSet, idx: HostIndex) -> Iterator[Finding]:
    for vs in rs.of_kind("VirtualService"):
        for path, dest in _destinations(vs):
            host = str(dest.get("host", ""))
            if not idx.provides(host, vs.namespace):
                yield finding(vs, (*path, "host"),
                              f"host '{host}' is provided by no Service, ServiceEntry or "
                              f"Deployment (pods labelled app: {host.split('.')[0]}); "
                              "requests routed there fail")
            subset = dest.get("subset")
            if subset is None:
                continue
            known = idx.subsets_for(host, vs.namespace)
            if known is None or subset not in known:
                where = ("no DestinationRule exists for host "
                         f"'{host}'" if known is None else
                         f"the DestinationRule for '{host}' defines {sorted(known)}")
                yield finding(vs, (*path, "subset"),
                              f"subset '{subset}' is defined by no DestinationRule ({where}); "
                              "requests routed there get 503 NC")


def _weights(rs: ResourceSet) -> Iterator[Finding]:
    for vs in rs.of_kind("VirtualService"):
        for section in ("http", "tcp", "tls"):
            for i, rule in enumerate(vs.spec.get(section) or []):
                routes = rule.get("route") or []
                if len(routes) < 2:
                    continue
                total = sum(int(r.get("weight") or 0) for r in routes)
                if total != 100:
                    yield finding(vs, ("spec", section, i, "route"),
                                  f"route weights sum to {total}, not 100; Istio takes each "
                                  "weight relative to the sum", Severity.WARNING)


def _gateway_keys(vs: Resource) -> frozenset[str]:
    names = vs.spec.get("gateways") or ["mesh"]
    return frozenset(g if (g == "mesh" or "/" in g) else f"{vs.namespace}/{g}" for g in names)


def _duplicate_hosts(rs: ResourceSet) -> Iterator[Finding]:
    owners: dict[tuple[str, frozenset[str]], Resource] = {}
    for vs in sorted(rs.of_kind("VirtualService"), key=lambda r: (r.namespace, r.name)):
        gws = _gateway_keys(vs)
        for i, host in enumerate(vs.spec.get("hosts") or []):
            key = (fqdn(str(host), vs.namespace), gws)
            first = owners.setdefault(key, vs)
            if first is not vs:
                yield finding(vs, ("spec", "hosts", i),
                              f"host '{host}' is also routed by VirtualService "
                              f"{first.namespace}/{first.name} for the same gateways; "
                              "only one of them takes effect (merge them)")


def _gateways(rs: ResourceSet) -> Iterator[Finding]:
    bound: set[str] = set()
    for vs in rs.of_kind("VirtualService"):
        for i, key in enumerate(vs.spec.get("gateways") or []):
            if key == "mesh":
                continue
            full = key if "/" in key else f"{vs.namespace}/{key}"
            ns, _, name = full.partition("/")
            bound.add(full)
            gw = rs.get("Gateway", ns, name)
            if gw is None:
                yield finding(vs, ("spec", "gateways", i),
                              f"gateway '{key}' does not exist (looked for Gateway "
                              f"{name} in namespace {ns})")
            elif not _served_by(gw, vs.spec.get("hosts") or []):
                yield finding(vs, ("spec", "hosts"),
                              f"none of these hosts is served by Gateway {full} (its servers "
                              f"accept {_server_hosts(gw)}); it will not route them",
                              Severity.WARNING)
    for gw in rs.of_kind("Gateway"):
        if f"{gw.namespace}/{gw.name}" not in bound:
            yield finding(gw, ("metadata", "name"),
                          "no VirtualService is bound to this Gateway (list "
                          f"'{gw.namespace}/{gw.name}' in a VirtualService's gateways)",
                          Severity.WARNING)


def _server_hosts(gw: Resource) -> list[str]:
    """Server hosts without their `namespace/` part."""
    return [str(h).rsplit("/", 1)[-1] for srv in gw.spec.get("servers") or []
            for h in srv.get("hosts") or []]


def _served_by(gw: Resource, hosts: list[str]) -> bool:
    patterns = _server_hosts(gw)
    return any(host_matches(p, str(h)) or host_matches(str(h), p)
               for p in patterns for h in hosts)


def _pods_of(rs: ResourceSet, host: str) -> list[Mapping[str, str]]:
    """Pod label sets behind an in-mesh host (Service selector, or `app: NAME`)."""
    name, _, rest = host.partition(".")
    ns = rest.partition(".")[0]
    svc = rs.get("Service", ns, name)
    selector = (svc.spec.get("selector") if svc is not None else None) or {"app": name}
    return [w.labels for w in workloads(rs) if w.namespace == ns and selects(selector, w.labels)]


def _empty_subsets(rs: ResourceSet) -> Iterator[Finding]:
    for dr in rs.of_kind("DestinationRule"):
        host = fqdn(str(dr.spec.get("host", "")), dr.namespace)
        if "*" in host or not host.endswith(SVC_SUFFIX):
            continue
        pods = _pods_of(rs, host)
        if not pods:
            continue
        for i, subset in enumerate(dr.spec.get("subsets") or []):
            labels = subset.get("labels") or {}
            if not any(selects(labels, p) for p in pods):
                yield finding(dr, ("spec", "subsets", i, "labels"),
                              f"subset '{subset.get('name')}' selects none of the pods of "
                              f"{dr.spec.get('host')}; requests routed to it get 503 "
                              "(no healthy upstream)", Severity.WARNING)


def _policies(rs: ResourceSet) -> Iterator[Finding]:
    pods = list(workloads(rs))
    for kind in ("AuthorizationPolicy", "PeerAuthentication"):
        for r in rs.of_kind(kind):
            selector = (r.spec.get("selector") or {}).get("matchLabels")
            if not selector:
                continue
            anywhere = r.namespace == ROOT_NAMESPACE
            if not any(selects(selector, w.labels) and (anywhere or w.namespace == r.namespace)
                       for w in pods):
                shown = ", ".join(f"{k}: {v}" for k, v in selector.items())
                yield finding(r, ("spec", "selector", "matchLabels"),
                              f"selector ({shown}) matches no workload in namespace "
                              f"{r.namespace}; this policy applies to nothing",
                              Severity.WARNING)


def _telemetry(rs: ResourceSet) -> Iterator[Finding]:
    """Istio's Telemetry rules that a single resource cannot check: one selector-less
    Telemetry per namespace (the oldest applies), no selector in the root namespace."""
    seen: dict[str, Resource] = {}
    for r in sorted(rs.of_kind("Telemetry"), key=_age):
        if r.spec.get("targetRef") or r.spec.get("targetRefs"):
            continue
        selector = (r.spec.get("selector") or {}).get("matchLabels")
        if selector and r.namespace == ROOT_NAMESPACE:
            yield finding(r, ("spec", "selector"),
                          f"a Telemetry with a selector in the root namespace {ROOT_NAMESPACE} "
                          "is not mesh-wide: it applies only to workloads of that namespace; "
                          "drop the selector for mesh-wide defaults, or move it to the "
                          "workload's namespace", Severity.WARNING)
        if selector:
            continue
        first = seen.setdefault(r.namespace, r)
        if first is not r:
            yield finding(r, ("spec",),
                          f"namespace {r.namespace} already has a Telemetry without a "
                          f"selector ({first.name}); only the oldest applies, so this one is "
                          "ignored: merge the two", Severity.WARNING)


def _age(r: Resource) -> tuple[str, str, int]:
    meta = r.raw.get("metadata") if isinstance(r.raw, Mapping) else None
    stamp = str(meta.get("creationTimestamp") or "") if isinstance(meta, Mapping) else ""
    return (stamp or "~", r.source.file, r.source.doc)


def analyze(resources: ResourceSet) -> list[Finding]:
    """All cross-resource findings for a set of validated resources."""
    idx = HostIndex(resources)
    out: list[Finding] = []
    for check in (_route_targets(resources, idx), _weights(resources),
                  _duplicate_hosts(resources), _gateways(resources), _policies(resources),
                  _empty_subsets(resources), _telemetry(resources),
                  delivery_findings(resources), service_wide_findings(resources),
                  grpc_blind_findings(resources)):
        out.extend(check)
    return out
