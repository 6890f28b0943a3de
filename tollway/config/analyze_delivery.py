"""Cross-resource checks for progressive delivery: Argo Rollouts and Flagger (pure).

A Rollout names a VirtualService route and DestinationRule subsets it will edit, and
analysis templates it will run; a Flagger Canary names its target and metric templates.
Any of them missing means the rollout stalls at run time, so we say so before it starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tollway.config.findings import Finding, Severity
from tollway.config.locate import finding
from tollway.config.resource import Resource, ResourceSet
from tollway.config.source import PathKey


def _ref(rs: ResourceSet, kind: str, name: str, namespace: str) -> Resource | None:
    """`name` or `name.namespace`, as Argo allows for VirtualService references."""
    found = rs.get(kind, namespace, name)
    if found is None and "." in name:
        short, _, ns = name.partition(".")
        found = rs.get(kind, ns, short)
    return found


def _template_refs(spec: dict[str, Any]) -> Iterator[tuple[PathKey, dict[str, Any]]]:
    strategy = spec.get("strategy") or {}
    canary = strategy.get("canary") or {}
    base: PathKey = ("spec", "strategy", "canary")
    for i, step in enumerate(canary.get("steps") or []):
        for j, t in enumerate((step.get("analysis") or {}).get("templates") or []):
            yield (*base, "steps", i, "analysis", "templates", j, "templateName"), t
    for j, t in enumerate((canary.get("analysis") or {}).get("templates") or []):
        yield (*base, "analysis", "templates", j, "templateName"), t
    blue = strategy.get("blueGreen") or {}
    for phase in ("prePromotionAnalysis", "postPromotionAnalysis"):
        for j, t in enumerate((blue.get(phase) or {}).get("templates") or []):
            yield ("spec", "strategy", "blueGreen", phase, "templates", j, "templateName"), t


def _templates(rs: ResourceSet, ro: Resource) -> Iterator[Finding]:
    for path, ref in _template_refs(dict(ro.spec)):
        name = str(ref.get("templateName"))
        if ref.get("clusterScope"):
            ok = any(t.name == name for t in rs.of_kind("ClusterAnalysisTemplate"))
            what = f"ClusterAnalysisTemplate '{name}'"
        else:
            ok = rs.get("AnalysisTemplate", ro.namespace, name) is not None
            what = f"AnalysisTemplate '{name}' in namespace {ro.namespace}"
        if not ok:
            yield finding(ro, path, f"{what} does not exist; the rollout would stop at "
                          "this analysis")


_SERVICE_FIELDS: tuple[tuple[str, ...], ...] = (
    ("blueGreen", "activeService"), ("blueGreen", "previewService"),
    ("canary", "canaryService"), ("canary", "stableService"),
    ("canary", "pingPong", "pingService"), ("canary", "pingPong", "pongService"),
)
_HASH_LABEL = "rollouts-pod-template-hash"  # Argo adds it to the selector itself


def _pod_labels(rs: ResourceSet, ro: Resource) -> dict[str, Any] | None:
    """The rollout's pod labels: its template's, or its workloadRef Deployment's."""
    template = ro.spec.get("template")
    if template is None and isinstance(ref := ro.spec.get("workloadRef"), dict):
        dep = rs.get(str(ref.get("kind", "Deployment")), ro.namespace, str(ref.get("name")))
        template = (dep.spec.get("template") if dep is not None else None)
    if not isinstance(template, dict):
        return None
    return dict((template.get("metadata") or {}).get("labels") or {})


def _services(rs: ResourceSet, ro: Resource) -> Iterator[Finding]:
    """Argo's ValidateService: every selector label of a Service the rollout names must be
    one of its pod labels, or that Service would select no pod of the rollout."""
    labels = _pod_labels(rs, ro)
    if labels is None:
        return
    strategy = ro.spec.get("strategy") or {}
    for path in _SERVICE_FIELDS:
        node: Any = strategy
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        svc = rs.get("Service", ro.namespace, str(node)) if isinstance(node, str) else None
        if svc is None:
            continue
        for key, value in sorted((svc.spec.get("selector") or {}).items()):
            if key != _HASH_LABEL and labels.get(key) != value:
                yield finding(ro, ("spec", "strategy", *path),
                              f"Service {svc.name} selects {key}={value}, which the rollout's "
                              f"pods do not carry (they have {key}={labels.get(key)}); give "
                              "the Service the rollout's pod labels")


def _named_route(vs: Resource, route: str | None) -> tuple[int, dict[str, Any]] | None:
    rules = vs.spec.get("http") or []
    if route is None:
        return (0, rules[0]) if len(rules) == 1 else None
    for i, rule in enumerate(rules):
        if rule.get("name") == route:
            return i, rule
    return None


def _traffic(rs: ResourceSet, ro: Resource) -> Iterator[Finding]:
    canary = (ro.spec.get("strategy") or {}).get("canary") or {}
    istio = (canary.get("trafficRouting") or {}).get("istio")
    if not isinstance(istio, dict):
        return
    base: PathKey = ("spec", "strategy", "canary", "trafficRouting", "istio")
    dr_ref = istio.get("destinationRule") or {}
    subsets: set[str] = set()
    if dr_ref:
        dr = _ref(rs, "DestinationRule", str(dr_ref.get("name")), ro.namespace)
        if dr is None:
            yield finding(ro, (*base, "destinationRule", "name"),
                          f"DestinationRule '{dr_ref.get('name')}' does not exist in "
                          f"namespace {ro.namespace}")
        else:
            have = {s.get("name") for s in dr.spec.get("subsets") or []}
            for field in ("stableSubsetName", "canarySubsetName"):
                subsets.add(str(dr_ref.get(field)))
                if dr_ref.get(field) not in have:
                    yield finding(ro, (*base, "destinationRule", field),
                                  f"subset '{dr_ref.get(field)}' is not defined by "
                                  f"DestinationRule {dr.name} (it has {sorted(have)})")
    refs = [istio["virtualService"]] if istio.get("virtualService") else []
    refs += istio.get("virtualServices") or []
    for vs_ref in refs:
        yield from _vs_routes(rs, ro, base, vs_ref, subsets)


def _vs_routes(rs: ResourceSet, ro: Resource, base: PathKey, vs_ref: dict[str, Any],
               subsets: set[str]) -> Iterator[Finding]:
    vs = _ref(rs, "VirtualService", str(vs_ref.get("name")), ro.namespace)
    path = (*base, "virtualService")
    if vs is None:
        yield finding(ro, (*path, "name"), f"VirtualService '{vs_ref.get('name')}' does not "
                      f"exist in namespace {ro.namespace}")
        return
    names = vs_ref.get("routes") or [None]
    for i, name in enumerate(names):
        found = _named_route(vs, name)
        where = (*path, "routes", i) if name else (*path, "name")
        if found is None:
            have = [r.get("name") for r in vs.spec.get("http") or [] if r.get("name")]
            what = f"route '{name}'" if name else "a single unnamed http route"
            yield finding(ro, where, f"VirtualService {vs.name} has no {what} "
                          f"(named routes: {have or 'none'}); name the http route Argo "
                          "should edit")
            continue
        dests = {(d.get("destination") or {}).get("subset") for d in found[1].get("route") or []}
        missing = sorted(s for s in subsets if s not in dests)
        if missing:
            yield finding(ro, where, f"route '{name or found[0]}' of VirtualService {vs.name} "
                          f"needs destinations for subsets {missing} (stable and canary)")


def _nth(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _failure_limits(rs: ResourceSet) -> Iterator[Finding]:
    for kind in ("AnalysisTemplate", "ClusterAnalysisTemplate"):
        for t in rs.of_kind(kind):
            for i, metric in enumerate(t.spec.get("metrics") or []):
                limit = metric.get("failureLimit")
                if isinstance(limit, int) and limit > 0:
                    yield finding(t, ("spec", "metrics", i, "failureLimit"),
                                  f"Argo fails metric '{metric.get('name')}' when failed "
                                  f"measurements exceed failureLimit: with {limit} the "
                                  f"rollout aborts on the {_nth(limit + 1)} failed "
                                  f"measurement, not the {_nth(limit)}", Severity.INFO)


def _flagger(rs: ResourceSet) -> Iterator[Finding]:
    for c in rs.of_kind("Canary"):
        target = c.spec.get("targetRef") or {}
        kind, name = str(target.get("kind")), str(target.get("name"))
        if kind in ("Deployment", "Service") and rs.get(kind, c.namespace, name) is None:
            yield finding(c, ("spec", "targetRef", "name"),
                          f"{kind} '{name}' does not exist in namespace {c.namespace}")
        metrics = (c.spec.get("analysis") or {}).get("metrics") or []
        for i, metric in enumerate(metrics):
            ref = metric.get("templateRef")
            if not isinstance(ref, dict):
                continue
            ns = str(ref.get("namespace") or c.namespace)
            if rs.get("MetricTemplate", ns, str(ref.get("name"))) is None:
                yield finding(c, ("spec", "analysis", "metrics", i, "templateRef", "name"),
                              f"MetricTemplate '{ref.get('name')}' does not exist in "
                              f"namespace {ns}")


def delivery_findings(rs: ResourceSet) -> Iterator[Finding]:
    for ro in rs.of_kind("Rollout"):
        yield from _templates(rs, ro)
        yield from _services(rs, ro)
        yield from _traffic(rs, ro)
    yield from _failure_limits(rs)
    yield from _flagger(rs)
