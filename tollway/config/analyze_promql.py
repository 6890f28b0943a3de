"""Can a Rollout's Prometheus analysis notice its canary at all? (pure)

A query that selects by `destination_service` alone (seed 15's) measures stable and canary
together: at canary weight w the service-wide success rate is about
(1 - w) * stable + w * canary. With a flawless stable, `result[0] >= X` fails only when the
canary fails more than (1 - X) / w of its requests — 20% at w = 5% for X = 0.99. The same
holds for a service-wide `histogram_quantile(q, ...)` against `result[0] <= T`: only when
more than (1 - q) / w of the canary's requests are slower than T. These are arithmetic,
not bugs (Argo on Kubernetes behaves the same), so the finding is `info`: it says at which
weight the check can see the canary and how to make it see it sooner.

Canary and stable are told apart by `destination_workload` (the mesh labels a replica set's
series `NAME-<pod-template-hash>`, as the rollout names its generated Deployments),
`destination_version` / `destination_canonical_revision` (pod labels `version` /
`service.istio.io/canonical-revision`), or a pod-template-hash label; a query naming any of
these is taken to select the canary (or to compare the two) and is left alone.

A gRPC service answers a failed call with HTTP 200 and the outcome in its `grpc-status`
trailer (Istio's `grpc_response_status` label): a success-rate query that tells failures
by `response_code` alone counts every failed gRPC call as a success. When a Rollout's pods
back a gRPC Service port (name `grpc`/`grpc-*`, or `appProtocol: grpc`, Istio's rules),
such a query gets an `info` finding that shows the selector to add.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tollway.config.findings import Finding, Severity
from tollway.config.locate import finding
from tollway.config.resource import Resource, ResourceSet
from tollway.config.source import PathKey

_SERVICE = re.compile(r"\bdestination_service(?:_name)?\s*=~?")
_CANARY_AWARE = re.compile(
    r"\b(?:destination_workload|destination_version|destination_canonical_revision)\b"
    r"|pod[_-]template[_-]hash")
_AT_LEAST = re.compile(r"^\s*result\[0\]\s*>=?\s*([0-9]*\.?[0-9]+)\s*$"
                       r"|^\s*([0-9]*\.?[0-9]+)\s*<=?\s*result\[0\]\s*$")
_AT_MOST = re.compile(r"^\s*result\[0\]\s*<=?\s*([0-9]*\.?[0-9]+)\s*$"
                      r"|^\s*([0-9]*\.?[0-9]+)\s*>=?\s*result\[0\]\s*$")
_QUANTILE = re.compile(r"^\s*histogram_quantile\s*\(\s*([0-9]*\.?[0-9]+)\s*,")
FIX = ("compare canary with stable (the `tollway` provider does) or select the canary's "
       "series (destination_workload=\"{name}-<pod-template-hash>\")")


@dataclass(frozen=True)
class _Use:
    path: PathKey  # the templateName that brings the template in
    template: Mapping[str, Any]
    template_name: str
    weight: int  # the canary weight while it runs (the first nonzero one, for background)


def service_wide(query: str) -> bool:
    """Selects by destination_service and names nothing that tells canary from stable."""
    return bool(_SERVICE.search(query)) and not _CANARY_AWARE.search(query)


def _number(m: re.Match[str] | None) -> float | None:
    if m is None:
        return None
    return float(next(g for g in m.groups() if g is not None))


def _pct(fraction: float) -> str:
    return f"{fraction * 100:.3g}%"


def _never(need: float) -> bool:
    """A share of 100% or more (floats: 0.45 * 100 / 45 is 0.9999999999999999)."""
    return need >= 1 - 1e-9


def _later(weights: list[int], needs: list[float]) -> str:
    rest = [f"{'never' if _never(n) else _pct(n)} at setWeight {w}"
            for w, n in zip(weights[1:], needs[1:], strict=True)]
    return f" ({', '.join(rest)})" if rest else ""


def blind_spot(query: str, condition: str, weights: list[int]) -> str:
    """One clause: what the check can see of a canary at these weights (percent)."""
    first = weights[0]
    floor = _number(_AT_LEAST.match(condition))
    if floor is not None and 0 < floor < 1:
        needs = [(1 - floor) * 100 / w for w in weights]
        head = f"at setWeight {first} the service-wide success rate stays >= {floor:g} "
        if _never(needs[0]):
            return head + "even if the canary fails every request" + _later(weights, needs)
        return (head + f"unless the canary fails more than {_pct(needs[0])} of its requests"
                + _later(weights, needs))
    ceiling = _number(_AT_MOST.match(condition))
    quantile = _number(_QUANTILE.match(query))
    if ceiling is not None and quantile is not None and 0 < quantile < 1:
        needs = [(1 - quantile) * 100 / w for w in weights]
        head = f"at setWeight {first} the service-wide p{quantile * 100:g} stays <= {ceiling:g} "
        if _never(needs[0]):
            return (head + f"even if every canary request takes longer than {ceiling:g}"
                    + _later(weights, needs))
        return (head + f"unless more than {_pct(needs[0])} of the canary's requests take "
                f"longer than {ceiling:g}" + _later(weights, needs))
    return (f"at setWeight {first} the canary is only {first}% of the requests it measures, "
            "so it can be far worse than stable before the result moves")


def _template(rs: ResourceSet, ro: Resource, ref: Mapping[str, Any]) -> Resource | None:
    name = str(ref.get("templateName"))
    if ref.get("clusterScope"):
        return next((t for t in rs.of_kind("ClusterAnalysisTemplate") if t.name == name), None)
    return rs.get("AnalysisTemplate", ro.namespace, name)


def _uses(rs: ResourceSet, ro: Resource) -> Iterator[tuple[_Use, Resource]]:
    canary = (ro.spec.get("strategy") or {}).get("canary") or {}
    base: PathKey = ("spec", "strategy", "canary")
    weight, weights = 0, []
    for i, step in enumerate(canary.get("steps") or []):
        if isinstance(step, Mapping) and isinstance(step.get("setWeight"), int):
            weight = int(step["setWeight"])
        weights.append(weight)
        analysis = step.get("analysis") if isinstance(step, Mapping) else None
        for j, ref in enumerate((analysis or {}).get("templates") or []):
            t = _template(rs, ro, ref)
            if t is not None and weight > 0:
                path = (*base, "steps", i, "analysis", "templates", j, "templateName")
                yield _Use(path, t.spec, t.name, weight), t
    background = canary.get("analysis") or {}
    start = int(background.get("startingStep") or 0)
    later = [w for w in weights[start:] if w > 0]
    for j, ref in enumerate(background.get("templates") or []):
        t = _template(rs, ro, ref)
        if t is not None and later:
            path = (*base, "analysis", "templates", j, "templateName")
            yield _Use(path, t.spec, t.name, min(later)), t


def service_wide_findings(rs: ResourceSet) -> Iterator[Finding]:
    """One info per (Rollout, service-wide prometheus metric), at its first use."""
    for ro in rs.of_kind("Rollout"):
        seen: dict[tuple[str, int], list[int]] = {}
        first: dict[tuple[str, int], tuple[_Use, str, str]] = {}
        for use, _t in _uses(rs, ro):
            for k, metric in enumerate(use.template.get("metrics") or []):
                prom = ((metric.get("provider") or {}).get("prometheus") or {})
                query = str(prom.get("query") or "")
                if not service_wide(query):
                    continue
                key = (use.template_name, k)
                seen.setdefault(key, [])
                if use.weight not in seen[key]:
                    seen[key].append(use.weight)
                first.setdefault(key, (use, query, str(metric.get("successCondition") or "")))
        for key, weights in seen.items():
            use, query, condition = first[key]
            metric_name = (use.template.get("metrics") or [])[key[1]].get("name")
            clauses = blind_spot(query, condition, sorted(weights))
            yield finding(ro, use.path,
                          f"metric '{metric_name}' of template {use.template_name} selects "
                          "by destination_service, so it measures stable and canary "
                          f"together: {clauses}; {FIX.format(name=ro.name)}",
                          Severity.INFO)


_RESPONSE_CODE = re.compile(r"\bresponse_code\s*(?:!~|=~|!=|=)")
GRPC_FIX = ('a failed gRPC call answers HTTP 200 with its status in grpc-status, so the '
            'query counts it as a success: also select grpc_response_status=~"|0" where it '
            'selects successes (or grpc_response_status!~"|0" for failures), or let the '
            '`tollway` provider judge: it counts both')


def grpc_ports(rs: ResourceSet, ro: Resource) -> list[str]:
    """`SERVICE:PORT` of the gRPC Service ports whose selector picks the Rollout's pods
    (Istio: port name `grpc` or `grpc-*` but not `grpc-web*`, or appProtocol `grpc`)."""
    template = ro.spec.get("template") or {}
    labels = ((template.get("metadata") or {}).get("labels") or {})
    out = []
    for svc in rs.of_kind("Service"):
        selector = svc.spec.get("selector") or {}
        if svc.namespace != ro.namespace or not selector or any(
                labels.get(k) != v for k, v in selector.items()):
            continue
        for port in svc.spec.get("ports") or []:
            if _grpc_port(str(port.get("name") or ""), str(port.get("appProtocol") or "")):
                out.append(f"{svc.name}:{port.get('port')}")
    return out


def _grpc_port(name: str, app_protocol: str) -> bool:
    name, proto = name.lower(), app_protocol.lower()
    named = (name == "grpc" or name.startswith("grpc-")) and not name.startswith("grpc-web")
    return proto == "grpc" or (not proto and named)


def grpc_blind(query: str) -> bool:
    """Tells failures by response_code and never looks at grpc_response_status."""
    return bool(_RESPONSE_CODE.search(query)) and "grpc_response_status" not in query


def grpc_blind_findings(rs: ResourceSet) -> Iterator[Finding]:
    """One info per (Rollout of a gRPC service, metric reading response_code alone)."""
    for ro in rs.of_kind("Rollout"):
        ports = grpc_ports(rs, ro)
        if not ports:
            continue
        seen: set[tuple[str, int]] = set()
        for use, _t in _uses(rs, ro):
            for k, metric in enumerate(use.template.get("metrics") or []):
                prom = ((metric.get("provider") or {}).get("prometheus") or {})
                if (use.template_name, k) in seen or not grpc_blind(str(prom.get("query") or "")):
                    continue
                seen.add((use.template_name, k))
                yield finding(ro, use.path,
                              f"metric '{metric.get('name')}' of template {use.template_name} "
                              f"tells failures by response_code, but {ro.name} serves gRPC "
                              f"({', '.join(ports)}): {GRPC_FIX}", Severity.INFO)

    for canary in rs.of_kind("Canary"):  # Flagger: its built-in reads response_code only
        service = canary.spec.get("service") or {}
        if not _grpc_port(str(service.get("portName") or ""),
                          str(service.get("appProtocol") or "")):
            continue
        for i, metric in enumerate((canary.spec.get("analysis") or {}).get("metrics") or []):
            if metric.get("name") == "request-success-rate" and not metric.get("templateRef"):
                yield finding(canary, ("spec", "analysis", "metrics", i, "name"),
                              "Flagger's built-in request-success-rate counts non-5xx "
                              f"answers, but {canary.name} serves gRPC (service port "
                              f"{service.get('port')}): a failed gRPC call answers HTTP 200 "
                              "with its status in grpc-status, so the check counts it as a "
                              "success; add a MetricTemplate whose query also selects "
                              'grpc_response_status=~"|0" where it selects successes',
                              Severity.INFO)
