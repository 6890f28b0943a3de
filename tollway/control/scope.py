"""Which proxies a change between two Worlds can affect [pure].

A cheap, safe cut: every sidecar's outbound table holds every host, so any change to
routing inputs (routes, policies, hosts, endpoints, certificates) may change every proxy.
Narrower cases: an AuthorizationPolicy or a Telemetry only reaches the proxies of its
namespace (all of them for the root namespace); kinds translation never reads (analysis
templates, Flagger canaries, ...) reach none. Unknown kinds count as routing inputs.
Callers still compare versions before pushing; this only spares them building snapshots
that cannot change.
"""

from __future__ import annotations

from collections.abc import Iterable

from tollway.config.resource import Resource, ResourceSet
from tollway.control.world import World
from tollway.snapshot import types

ROOT_NAMESPACE = "istio-system"
INERT_KINDS = frozenset({
    "AnalysisTemplate", "ClusterAnalysisTemplate", "AnalysisRun", "Canary", "MetricTemplate",
    "Namespace", "ServiceAccount",
})
NAMESPACED_KINDS = frozenset({"AuthorizationPolicy", "Telemetry"})

Key = tuple[str, str, str]


def _same(a: Resource, b: Resource) -> bool:
    return a.spec == b.spec and a.labels == b.labels and a.annotations == b.annotations


def changed_keys(old: ResourceSet, new: ResourceSet) -> set[Key]:
    """Keys added, removed or whose content changed."""
    old_keys = {r.key: r for r in old}
    new_keys = {r.key: r for r in new}
    out = set(old_keys) ^ set(new_keys)
    out |= {k for k in set(old_keys) & set(new_keys) if not _same(old_keys[k], new_keys[k])}
    return out


def _endpoints_changed(old: World, new: World) -> bool:
    return dict(old.endpoints) != dict(new.endpoints)


def affected(old: World | None, new: World,
             nodes: Iterable[types.Node]) -> tuple[types.Node, ...]:
    """The proxies whose snapshot may differ between `old` and `new`."""
    nodes = tuple(nodes)
    if old is None or _endpoints_changed(old, new):
        return nodes
    keys = changed_keys(old.resources, new.resources)
    relevant = {k for k in keys if k[0] not in INERT_KINDS}
    if not relevant:
        return ()
    if any(k[0] not in NAMESPACED_KINDS for k in relevant):
        return nodes
    namespaces = {k[1] for k in relevant}
    if ROOT_NAMESPACE in namespaces:
        return nodes
    return tuple(n for n in nodes if n.namespace in namespaces)
