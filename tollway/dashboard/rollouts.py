"""Rollouts as the page shows them: steps, weights, analysis charts and the judge's evidence.

[pure] Input is what the rollout controller already publishes — each Rollout's or Canary's
status in the config store, in Argo's and Flagger's own shapes (the same JSON as
`GET /v1/rollouts/NS/NAME`) — plus the AnalysisTemplates, which hold what the status does
not: each metric's successCondition / failureCondition, from which the chart's threshold
lines come. Nothing here re-judges anything; it only arranges what was recorded, so the
dashboard can never disagree with `tollway rollout status`.

Charts: x is seconds since the analysis run started (measurement times are the
controller's monotonic clock, which only differences make sense of). A numeric metric
plots its result (Prometheus' first element when a vector); the `tollway` judge plots
the log likelihood ratio of each signal against its fail and pass bounds — the statistic
it actually decides on — and its latest evidence (counts, rates, bounds) is shown whole.
Flagger checks are one line per tick; their values are read back from that line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from tollway.config.resource import Resource, ResourceSet

KINDS = ("Rollout", "Canary")
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
# `result`, `result[0]` or `asFloat(result)`, not inside another call (len(result) > 0)
_RESULT = r"(?:(?<![\w.])asFloat\(\s*result\s*\)|(?<![\w.(])result(?:\s*\[\s*0\s*\])?)"
_LEFT = re.compile(rf"{_RESULT}\s*(>=|<=|==|>|<)\s*({_NUM})")
_RIGHT = re.compile(rf"({_NUM})\s*(>=|<=|==|>|<)\s*{_RESULT}")
_FLIP = {">=": "<=", "<=": ">=", ">": "<", "<": ">", "==": "=="}
_CHECK = re.compile(rf"^\s*([\w.\-]+):?\s+({_NUM}|no values found)")


def thresholds(condition: str | None, kind: str) -> list[dict[str, Any]]:
    """Each `result OP NUMBER` comparison of an Argo condition, as a line to draw.

    `result[0] >= 0.99` → [{"op": ">=", "value": 0.99, "kind": kind}]; `0.99 <= result`
    reads the same. Conditions the chart cannot draw (len(result), isNaN, ...) give none.
    """
    if not condition:
        return []
    found: list[tuple[int, str, float]] = []
    for m in _LEFT.finditer(condition):
        found.append((m.start(), m.group(1), float(m.group(2))))
    for m in _RIGHT.finditer(condition):
        found.append((m.start(), _FLIP[m.group(2)], float(m.group(1))))
    return [{"op": op, "value": v, "kind": kind, "text": condition.strip()}
            for _, op, v in sorted(found) if math.isfinite(v)]


def number(value: Any) -> float | None:
    """A measurement's value as one number to plot, or None (NaN, empty, not numeric)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, list | tuple):
        return number(value[0]) if value else None
    if isinstance(value, str):
        try:
            return number(float(value))
        except ValueError:
            return None
    return None


def _walk_templates(node: Any) -> Iterator[str]:
    if isinstance(node, Mapping):
        for key in ("templateName", "clusterTemplateName"):
            if isinstance(node.get(key), str):
                yield node[key]
        for v in node.values():
            yield from _walk_templates(v)
    elif isinstance(node, list | tuple):
        for v in node:
            yield from _walk_templates(v)


def metric_specs(res: Resource, resources: ResourceSet) -> dict[str, Mapping[str, Any]]:
    """Every metric of the AnalysisTemplates the rollout names, by metric name."""
    out: dict[str, Mapping[str, Any]] = {}
    for name in dict.fromkeys(_walk_templates(res.spec)):
        tmpl = resources.get("AnalysisTemplate", res.namespace, name) or next(
            (r for r in resources.of_kind("ClusterAnalysisTemplate") if r.name == name), None)
        if tmpl is None:
            continue
        for m in tmpl.spec.get("metrics") or ():
            if isinstance(m, Mapping) and "name" in m:
                out.setdefault(str(m["name"]), m)
    return out


def _provider(spec: Mapping[str, Any] | None) -> str:
    provider = (spec or {}).get("provider") or {}
    plugin = provider.get("plugin") or {}
    if "tollway" in provider or "tollway" in plugin:
        return "tollway"
    return next(iter(provider), "")


def _evidence(value: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("verdict", "reason", "fail_bound", "pass_bound", "alpha", "beta",
            "requests_needed", "latency_threshold_ms")
    out = {k: value.get(k) for k in keep if k in value}
    out["signals"] = [dict(s) for s in value.get("signals") or () if isinstance(s, Mapping)]
    return out


def metric_view(result: Mapping[str, Any], started_at: float,
                spec: Mapping[str, Any] | None) -> dict[str, Any]:
    """One metric of one analysis run: its points, threshold lines and latest evidence."""
    measurements = [m for m in result.get("measurements") or () if isinstance(m, Mapping)]
    series: dict[str, list[dict[str, Any]]] = {}
    evidence: dict[str, Any] | None = None
    bounds: list[dict[str, Any]] = []
    for m in measurements:
        t = float(m.get("finishedAt") or m.get("startedAt") or started_at) - started_at
        value = m.get("value")
        point = {"t": round(t, 3), "phase": str(m.get("phase", "")),
                 "message": str(m.get("message", ""))}
        if isinstance(value, Mapping) and "signals" in value:
            evidence = _evidence(value)
            for sig in evidence["signals"]:
                series.setdefault(f"{sig.get('name', '?')} LLR", []).append(
                    {**point, "v": number(sig.get("log_likelihood_ratio"))})
        else:
            series.setdefault("result", []).append({**point, "v": number(value)})
    if evidence is not None:
        for key, kind, label in (("fail_bound", "failure", "fail"),
                                 ("pass_bound", "success", "pass")):
            v = number(evidence.get(key))
            if v is not None:
                bounds.append({"op": "", "value": v, "kind": kind, "text": label})
    else:
        bounds = (thresholds((spec or {}).get("successCondition"), "success")
                  + thresholds((spec or {}).get("failureCondition"), "failure"))
    return {
        "name": str(result.get("name", "")),
        "phase": str(result.get("phase", "")),
        "message": str(result.get("message", "")),
        "provider": _provider(spec),
        "judge": evidence is not None,
        "successCondition": (spec or {}).get("successCondition"),
        "failureCondition": (spec or {}).get("failureCondition"),
        "counts": {k: result.get(k, 0) for k in ("successful", "failed", "inconclusive",
                                                  "error")},
        "thresholds": bounds,
        "series": [{"name": n, "points": p} for n, p in series.items()],
        "evidence": evidence,
    }


def flagger_checks(checks: list[Mapping[str, Any]], metrics: list[Mapping[str, Any]]
                   ) -> list[dict[str, Any]]:
    """Flagger's per-tick checks as one chart per metric (values read from each line)."""
    if not checks:
        return []
    t0 = float(checks[0].get("at") or 0.0)
    per: dict[str, list[dict[str, Any]]] = {}
    for c in checks:
        for part in str(c.get("detail", "")).split(";"):
            m = _CHECK.match(part)
            if m is None:
                continue
            v = None if m.group(2) == "no values found" else number(m.group(2))
            per.setdefault(m.group(1), []).append(
                {"t": round(float(c.get("at") or t0) - t0, 3), "v": v,
                 "phase": "Successful" if c.get("ok") else "Failed",
                 "message": part.strip(), "weight": c.get("weight")})
    out = []
    for name, points in per.items():
        spec = next((m for m in metrics if m.get("name") == name), {})
        rng = spec.get("thresholdRange") or {}
        lines = [{"op": op, "value": float(rng[k]), "kind": "success", "text": f"{k} {rng[k]}"}
                 for k, op in (("min", ">="), ("max", "<=")) if number(rng.get(k)) is not None]
        out.append({"name": name, "phase": points[-1]["phase"], "message": "",
                    "provider": "flagger", "judge": False, "thresholds": lines,
                    "series": [{"name": name, "points": points}], "evidence": None,
                    "counts": {"successful": sum(p["phase"] == "Successful" for p in points),
                               "failed": sum(p["phase"] == "Failed" for p in points)}})
    return out


def _spec_steps(spec: Mapping[str, Any]) -> list[str]:
    canary = (spec.get("strategy") or {}).get("canary") or {}
    out = []
    for raw in canary.get("steps") or ():
        key = next(iter(raw), "?") if isinstance(raw, Mapping) else "?"
        value = raw.get(key) if isinstance(raw, Mapping) else raw
        if key == "analysis":
            value = ", ".join(_walk_templates(value))
        elif isinstance(value, Mapping):
            value = ", ".join(f"{k} {v}" for k, v in value.items()) or "{}"
        out.append(f"{key}: {value}")
    return out


def _steps(res: Resource, st: Mapping[str, Any], phase: str) -> list[dict[str, Any]]:
    if res.kind == "Canary":
        weights = [int(w) for w in (st.get("analysis") or {}).get("weights") or ()]
        now = int(st.get("canaryWeight") or 0)
        active = phase not in ("Initialized", "Succeeded", "Failed", "Pending", "")
        return [{"index": i, "text": f"canary weight {w}%", "current": active and w == now,
                 "done": (active and w < now) or phase == "Succeeded"}
                for i, w in enumerate(weights)]
    raw = st.get("steps")
    texts = ([str(s.get("step", "")) for s in raw] if isinstance(raw, list)
             else _spec_steps(res.spec))
    current = int(st.get("currentStepIndex") or 0)
    healthy = phase == "Healthy"
    return [{"index": i, "text": text,
             "current": bool(raw[i].get("current")) if isinstance(raw, list) else False,
             "done": healthy or i < current}
            for i, text in enumerate(texts)]


def _weights(res: Resource, st: Mapping[str, Any]) -> dict[str, int]:
    if res.kind == "Canary":
        canary = int(st.get("canaryWeight") or 0)
    else:
        canary = int((((st.get("canary") or {}).get("weights") or {}).get("canary") or {})
                     .get("weight") or 0)
    canary = max(0, min(100, canary))
    return {"stable": 100 - canary, "canary": canary}


def rollout_view(res: Resource, st: Mapping[str, Any], resources: ResourceSet
                 ) -> dict[str, Any]:
    """Everything the page shows for one Rollout or Canary."""
    phase = str(st.get("phase") or "Pending")
    specs = metric_specs(res, resources)
    analysis = []
    for run in st.get("analysisRuns") or ():
        if not isinstance(run, Mapping):
            continue
        started = float(run.get("startedAt") or 0.0)
        analysis.append({
            "name": str(run.get("name", "")), "phase": str(run.get("phase", "")),
            "message": str(run.get("message", "")),
            "metrics": [metric_view(r, started, specs.get(str(r.get("name"))))
                        for r in run.get("metricResults") or () if isinstance(r, Mapping)],
        })
    if res.kind == "Canary":
        metrics = list((res.spec.get("analysis") or {}).get("metrics") or ())
        checks = flagger_checks(list(st.get("checks") or ()), metrics)
        if checks:
            analysis.append({"name": "checks", "phase": phase,
                             "message": f"failed checks: {st.get('failedChecks', 0)}",
                             "metrics": checks})
    strategy = (res.spec.get("strategy") or {})
    return {
        "kind": res.kind,
        "namespace": res.namespace,
        "name": res.name,
        "strategy": ("flagger" if res.kind == "Canary"
                     else "blueGreen" if "blueGreen" in strategy else "canary"),
        "phase": phase,
        "message": str(st.get("message", "")),
        "paused": bool(st.get("paused")),
        "aborted": bool(st.get("abort")),
        "observed": bool(st),
        "weights": _weights(res, st),
        "steps": _steps(res, st, phase),
        "analysis": analysis[-4:],
        "decisions": list(reversed([dict(d) for d in (st.get("decisions") or ())
                                    if isinstance(d, Mapping)][-8:])),
        "warnings": [str(w) for w in st.get("warnings") or ()],
    }


def views(resources: ResourceSet, status: Callable[[tuple[str, str, str]], Mapping[str, Any]]
          ) -> list[dict[str, Any]]:
    """Every Rollout and Canary in the store, by namespace and name."""
    items = [r for kind in KINDS for r in resources.of_kind(kind)]
    items.sort(key=lambda r: (r.namespace, r.name, r.kind))
    return [rollout_view(r, status(r.key), resources) for r in items]


def workload_tracks(resources: ResourceSet,
                    status: Callable[[tuple[str, str, str]], Mapping[str, Any]]
                    ) -> dict[tuple[str, str], dict[str, str]]:
    """Which graph workloads are a rollout's canary and stable: {(ns, workload): tags}.

    Argo's replica sets run as NAME-<pod-template-hash> (status currentPodHash and
    stableRS); Flagger's as NAME-primary (stable) and NAME (canary). The graph marks them
    so the canary's share of traffic reads at a glance.
    """
    out: dict[tuple[str, str], dict[str, str]] = {}
    for res in resources.of_kind("Rollout"):
        st = status(res.key)
        canary, stable = str(st.get("currentPodHash") or ""), str(st.get("stableRS") or "")
        for track, rev in (("stable", stable), ("canary", canary)):
            if rev:
                out[(res.namespace, f"{res.name}-{rev}")] = {"track": track,
                                                             "rollout": res.name}
    for res in resources.of_kind("Canary"):
        target = str((res.spec.get("targetRef") or {}).get("name") or res.name)
        out[(res.namespace, f"{target}-primary")] = {"track": "stable", "rollout": res.name}
        out[(res.namespace, target)] = {"track": "canary", "rollout": res.name}
    return out
