"""Host names and workloads as Istio sees them (pure helpers for cross-resource checks).

A short host resolves in the namespace of the resource that names it (`reviews` in `foo`
is `reviews.foo.svc.cluster.local`); `NAME.NAMESPACE` and `NAME.NAMESPACE.svc` are
completed the same way. A Service provides its FQDN; so does a Deployment (or Rollout)
whose pod labels carry `app: NAME` — local mode runs those without a Service object — and
a Flagger Canary provides the NAME, NAME-primary and NAME-canary services Flagger creates.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tollway.config.resource import CLUSTER_DOMAIN, Resource, ResourceSet

SVC_SUFFIX = f".svc.{CLUSTER_DOMAIN}"
ROOT_NAMESPACE = "istio-system"


def fqdn(host: str, namespace: str) -> str:
    """Complete a Kubernetes-style host name; leave external and wildcard names alone."""
    if "*" in host or host.endswith(SVC_SUFFIX):
        return host
    if host.endswith(".svc"):
        return host + "." + CLUSTER_DOMAIN
    dots = host.count(".")
    if dots == 0:
        return f"{host}.{namespace}{SVC_SUFFIX}"
    if dots == 1:
        return host + SVC_SUFFIX
    return host


def host_matches(pattern: str, host: str) -> bool:
    """Istio host matching: exact, or a `*.suffix` wildcard covering the host."""
    if pattern == "*" or pattern == host:
        return True
    return pattern.startswith("*") and host.endswith(pattern[1:])


@dataclass(frozen=True, slots=True)
class Workload:
    """Pods as a selector sees them: namespace and labels (from any workload kind)."""

    resource: Resource
    namespace: str
    labels: Mapping[str, str]


def _pod_labels(r: Resource) -> Mapping[str, str]:
    template = r.spec.get("template")
    meta = template.get("metadata") if isinstance(template, dict) else None
    labels = meta.get("labels") if isinstance(meta, dict) else None
    return labels if isinstance(labels, dict) else {}


def workloads(resources: ResourceSet) -> Iterator[Workload]:
    for kind in ("Deployment", "Rollout"):
        for r in resources.of_kind(kind):
            yield Workload(r, r.namespace, _pod_labels(r))
    for r in resources.of_kind("WorkloadEntry"):
        labels = r.spec.get("labels")
        yield Workload(r, r.namespace, labels if isinstance(labels, dict) else {})


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


class HostIndex:
    """Which FQDNs the resources provide, and the DestinationRule subsets per FQDN."""

    def __init__(self, resources: ResourceSet) -> None:
        self.provided: set[str] = set()
        self.external: list[str] = []
        for r in resources.of_kind("Service"):
            self.provided.add(fqdn(r.name, r.namespace))
        for w in workloads(resources):
            app = w.labels.get("app")
            if app and w.resource.kind != "WorkloadEntry":
                self.provided.add(fqdn(app, w.namespace))
        for r in resources.of_kind("Canary"):  # Flagger creates NAME, NAME-primary, -canary
            svc = r.spec.get("service") or {}
            name = svc.get("name") or (r.spec.get("targetRef") or {}).get("name")
            if isinstance(name, str):
                for suffix in ("", "-primary", "-canary"):
                    self.provided.add(fqdn(name + suffix, r.namespace))
        for r in resources.of_kind("ServiceEntry"):
            for h in r.spec.get("hosts") or []:
                self.external.append(h)
        self.subsets: dict[str, set[str]] = {}
        for r in resources.of_kind("DestinationRule"):
            host = fqdn(str(r.spec.get("host", "")), r.namespace)
            names = {s.get("name") for s in r.spec.get("subsets") or [] if isinstance(s, dict)}
            self.subsets.setdefault(host, set()).update(n for n in names if isinstance(n, str))

    def provides(self, host: str, namespace: str) -> bool:
        full = fqdn(host, namespace)
        if full in self.provided:
            return True
        return any(host_matches(p, host) or host_matches(p, full) for p in self.external)

    def subsets_for(self, host: str, namespace: str) -> set[str] | None:
        """Subset names DestinationRules define for this host (None: no DR at all)."""
        full = fqdn(host, namespace)
        found = self.subsets.get(full)
        for pattern, names in self.subsets.items():
            if pattern != full and "*" in pattern and host_matches(pattern, full):
                found = (found or set()) | names
        return found
