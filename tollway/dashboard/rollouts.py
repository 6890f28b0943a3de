"""Rollouts as the page shows them: steps, weights, analysis charts and the judge's evidence.

[pure] Input is what the rollout controller already publishes — each Rollout's or Canary's
status in the config store, in Argo's and Flagger's own shapes (the same JSON as
`GET /v1/rollouts/NS/NAME`) — plus the AnalysisTemplates, which hold what the status does
not: each metric's successCondition / failureCondition, from which the chart's threshold
lines come. Nothing here re-judges anything; it only arranges what was recorded, so the
dashboard can never disagree with `tollway rollout status`.

Charts: x is seconds since the analysis run started (measurement times are the
controller's monotonic clock, which only differences make sense of). A numeric metric
plots its result (Prometheus' first element when a vector). The `tollway` judge leads
with what a reader compares — canary and stable error (and slow-request) rates, `rates`
— and keeps the statistic it decides on, each signal's log likelihood ratio against its
fail and pass bounds (`series`, `thresholds`), with its latest evidence, one click away.
Flagger checks are one line per tick; their values are read back from that line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from tollway.config.resource import Resource, ResourceSet
from tollway.rollout.analysis import judge
from tollway.rollout.traffic import HASH_LABEL  # how the controller labels its replica sets

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
    keep = ("verdict", "reason", "statistics", "fail_bound", "pass_bound", "alpha", "beta",
            "requests_needed", "latency_threshold_ms")
    out = {k: value.get(k) for k in keep if k in value}
    signals = [dict(s) for s in value.get("signals") or () if isinstance(s, Mapping)]
    # the plain line leads; stored before the judge wrote one, it is said from the numbers
    for sig in signals:
        sig.setdefault("summary", judge.plain_signal(sig, value))
    out["signals"] = signals
    out["summary"] = str(value.get("summary") or judge.plain(value))
    return out


def shown_phase(phase: str, measurements: list[Mapping[str, Any]]) -> str:
    """The phase to badge: "Error" when every measurement taken was an error.

    Argo's rules can end such a metric Successful (terminated before its count, or fewer
    errors in a row than consecutiveErrorLimit); a green badge over nothing but errors
    tells the reader the canary was checked when it never was.
    """
    taken = [m for m in measurements if str(m.get("phase", "")) not in ("Running", "Pending")]
    if phase == "Successful" and taken and all(str(m.get("phase")) == "Error" for m in taken):
        return "Error"
    return phase


def metric_view(result: Mapping[str, Any], started_at: float,
                spec: Mapping[str, Any] | None) -> dict[str, Any]:
    """One metric of one analysis run: its points, threshold lines and latest evidence."""
    measurements = [m for m in result.get("measurements") or () if isinstance(m, Mapping)]
    series: dict[str, list[dict[str, Any]]] = {}
    rates: dict[str, list[dict[str, Any]]] = {}  # the judge's: canary and stable, in %
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
                if sig.get("judged") is False:
                    continue
                what = "errors" if sig.get("name") == "error" else "slow"
                for track in ("canary", "stable"):
                    rate = number(sig.get(f"{track}_rate"))
                    rates.setdefault(f"{track} {what} %", []).append(
                        {**point, "v": None if rate is None else round(rate * 100, 4)})
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
    recorded = str(result.get("phase", ""))
    shown = shown_phase(recorded, measurements)
    message = str(result.get("message", ""))
    if shown != recorded:
        last = str(measurements[-1].get("message", "")) if measurements else ""
        message = (f"every measurement was an error ({last or 'no value'}); recorded as "
                   f"{recorded}{': ' + message if message else ''}")
    return {
        "name": str(result.get("name", "")),
        "phase": shown,
        "recordedPhase": recorded,
        "message": message,
        "summary": evidence["summary"] if evidence is not None else "",
        "provider": _provider(spec),
        "judge": evidence is not None,
        "successCondition": (spec or {}).get("successCondition"),
        "failureCondition": (spec or {}).get("failureCondition"),
        "counts": {k: result.get(k, 0) for k in ("successful", "failed", "inconclusive",
                                                  "error")},
        "thresholds": bounds,
        "series": [{"name": n, "points": p} for n, p in series.items()],
        "rates": [{"name": n, "points": p} for n, p in rates.items()],
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


# ---- actions ---------------------------------------------------------------------------------
# (action, button, request body, what it does: the confirmation's sentence). The API is
# POST /v1/rollouts/NS/NAME/ACTION (tollway/rollout/service.py); "promote-full" is promote
# with {"full": true}, as `tollway rollout promote --full`.
ACTIONS: tuple[tuple[str, str, dict[str, Any], str], ...] = (
    ("promote", "Promote", {}, "leave the current pause, or skip the current step"),
    ("promote-full", "Promote full", {"full": True},
     "skip every remaining step and analysis: the canary becomes stable now"),
    ("abort", "Abort", {}, "send all traffic back to stable and stop the rollout"),
    ("retry", "Retry", {}, "run the steps again from the first one"),
    ("pause", "Pause", {}, "hold at the current step until resumed"),
    ("resume", "Resume", {}, "continue from the current step"),
)
IN_PROGRESS = frozenset({"Progressing", "Paused", "Waiting", "WaitingPromotion", "Promoting",
                         "Finalising", "Initializing"})
ROLLED_BACK = frozenset({"Degraded", "Failed"})


# What each controller acts on (tollway/rollout/machine.py, bluegreen.py, flagger.py): the
# Argo canary takes all six; blue-green has no user pause, and promote --full from Degraded
# only on canaries; Flagger takes promote, abort and retry (from Failed), nothing else, and
# only while it progresses or waits on a gate.
OFFERED = {
    "canary": ("promote", "promote-full", "abort", "retry", "pause", "resume"),
    "blueGreen": ("promote", "promote-full", "abort", "retry", "resume"),
    "flagger": ("promote", "abort", "retry"),
}
FLAGGER_ACTIVE = frozenset({"Progressing", "Waiting", "WaitingPromotion"})


def actions(phase: str, paused: bool, aborted: bool, strategy: str = "canary"
            ) -> list[dict[str, Any]]:
    """The rollout's buttons, each enabled only where its controller acts on it.

    As Argo's: a release under way can be promoted, aborted, paused or resumed; an aborted
    (Degraded) one retried or promoted in full; a Healthy one has nothing to act on.
    Actions a strategy's controller has no use for are not offered at all.
    """
    active = FLAGGER_ACTIVE if strategy == "flagger" else IN_PROGRESS
    running = phase in active and not aborted
    rolled_back = phase in ROLLED_BACK or aborted
    allowed = {
        "promote": running,
        "promote-full": running or (rolled_back and strategy == "canary"),
        "abort": running,
        "retry": rolled_back,
        "pause": running and not paused,
        "resume": running and paused,
    }
    offered = OFFERED.get(strategy, OFFERED["canary"])
    return [{"action": a, "label": label, "body": body, "does": does, "enabled": allowed[a],
             "path": "promote" if a == "promote-full" else a}
            for a, label, body, does in ACTIONS if a in offered]


# ---- version names -----------------------------------------------------------------------------


def image_tag(image: str) -> str:
    """"registry:5000/demo:v2" -> "v2"; "demo@sha256:abcd..." -> "sha256:abcd1234"; none: ""."""
    if "@" in image:
        return image.split("@", 1)[1][:15]
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else ""


def _template_facts(template: Mapping[str, Any]) -> dict[str, str]:
    meta = template.get("metadata") or {}
    labels = meta.get("labels") or {}
    containers = [c for c in ((template.get("spec") or {}).get("containers") or ())
                  if isinstance(c, Mapping)]
    image = str(containers[0].get("image") or "") if containers else ""
    env = {str(e.get("name")): str(e.get("value")) for c in containers[:1]
           for e in c.get("env") or () if isinstance(e, Mapping) and "value" in e}
    version = str(labels.get("version") or labels.get("app.kubernetes.io/version")
                  or image_tag(image) or env.get("VERSION") or "")
    return {"image": image, "version": version}


def workload_names(resources: ResourceSet,
                   status: Callable[[tuple[str, str, str]], Mapping[str, Any]]
                   ) -> dict[tuple[str, str], dict[str, str]]:
    """How people name each workload: {(ns, workload): {display, version, image, hash}}.

    A rollout's replica sets are NAME-<template hash> (`web-bd9a817f29`): a name nobody
    released. Users look for the version (the pod's `version` label, else the image tag,
    else a VERSION env), so a replica set shows as `web v2`; when two revisions carry the
    same version the hash's first characters tell them apart. The full workload name and
    hash stay in `workload`/`hash` for a tooltip.
    """
    out: dict[tuple[str, str], dict[str, str]] = {}
    hashes: dict[tuple[str, str], str] = {}
    for dep in resources.of_kind("Deployment"):
        facts = _template_facts(dep.spec.get("template") or {})
        out[(dep.namespace, dep.name)] = {**facts, "display": dep.name, "workload": dep.name}
        if dep.labels.get(HASH_LABEL):
            hashes[(dep.namespace, dep.name)] = str(dep.labels[HASH_LABEL])
    for res in resources.of_kind("Rollout"):
        st = status(res.key)
        revs = {str(st.get("currentPodHash") or ""): "canary",
                str(st.get("stableRS") or ""): "stable"}  # settled (same hash): stable
        # the rollout's replica sets: NAME-<hash>, labelled with that hash by the controller
        mine = [(key, out[key], h) for key, h in hashes.items()
                if key[0] == res.namespace and key[1] == f"{res.name}-{h}"]
        versions = [info["version"] for _, info, _ in mine]
        for _, info, h in mine:
            version = info["version"]
            if not version or versions.count(version) > 1:
                version = f"{version} #{h[:5]}".strip()
            info.update(display=f"{res.name} {version}", hash=h, rollout=res.name)
            if revs.get(h):
                info["track"] = revs[h]
    for res in resources.of_kind("Canary"):  # Flagger: NAME-primary (stable) and NAME
        target = str((res.spec.get("targetRef") or {}).get("name") or res.name)
        pair = {"stable": out.get((res.namespace, f"{target}-primary")),
                "canary": out.get((res.namespace, target))}
        same = len({(i or {}).get("version") for i in pair.values()}) == 1
        for track, found in pair.items():
            if found is None or not found["version"]:
                continue
            suffix = " (primary)" if same and track == "stable" else ""
            found.update(display=f"{target} {found['version']}{suffix}", rollout=res.name,
                         track=track)
    return out


def _versions(res: Resource, st: Mapping[str, Any],
              names: Mapping[tuple[str, str], Mapping[str, str]]) -> dict[str, Any]:
    """The stable and canary revisions of a rollout, as the weights bar names them."""
    out: dict[str, Any] = {}
    if res.kind == "Rollout":
        revs = {"stable": st.get("stableRS"), "canary": st.get("currentPodHash")}
        workloads = {t: f"{res.name}-{h}" for t, h in revs.items() if h}
    else:
        target = str((res.spec.get("targetRef") or {}).get("name") or res.name)
        workloads = {"stable": f"{target}-primary", "canary": target}
    for track, workload in workloads.items():
        info = names.get((res.namespace, workload))
        if info is not None:
            out[track] = {"version": info.get("version", ""), "image": info.get("image", ""),
                          "workload": workload, "hash": info.get("hash", "")}
    if res.kind == "Rollout" and out.get("stable", {}).get("hash") == out.get(
            "canary", {}).get("hash"):
        out.pop("canary", None)  # settled: one revision, no canary
    return out


def rollout_view(res: Resource, st: Mapping[str, Any], resources: ResourceSet,
                 names: Mapping[tuple[str, str], Mapping[str, str]] | None = None
                 ) -> dict[str, Any]:
    """Everything the page shows for one Rollout or Canary."""
    phase = str(st.get("phase") or "Pending")
    specs = metric_specs(res, resources)
    analysis = []
    for run in st.get("analysisRuns") or ():
        if not isinstance(run, Mapping):
            continue
        started = float(run.get("startedAt") or 0.0)
        shown_metrics = [metric_view(r, started, specs.get(str(r.get("name"))))
                         for r in run.get("metricResults") or () if isinstance(r, Mapping)]
        recorded = str(run.get("phase", ""))
        errored = [m["name"] for m in shown_metrics if m["phase"] != m["recordedPhase"]]
        shown = "Error" if errored and recorded == "Successful" else recorded
        analysis.append({
            "name": str(run.get("name", "")), "phase": shown, "recordedPhase": recorded,
            "message": (f"{', '.join(errored)}: every measurement was an error; recorded "
                        f"as {recorded}" if shown != recorded
                        else str(run.get("message", ""))),
            "summary": "; ".join(m["summary"] for m in shown_metrics if m["summary"]),
            "metrics": shown_metrics,
        })
    if res.kind == "Canary":
        metrics = list((res.spec.get("analysis") or {}).get("metrics") or ())
        checks = flagger_checks(list(st.get("checks") or ()), metrics)
        if checks:
            analysis.append({"name": "checks", "phase": phase,
                             "message": f"failed checks: {st.get('failedChecks', 0)}",
                             "metrics": checks})
    strategy = (res.spec.get("strategy") or {})
    style = ("flagger" if res.kind == "Canary"
             else "blueGreen" if "blueGreen" in strategy else "canary")
    return {
        "kind": res.kind,
        "namespace": res.namespace,
        "name": res.name,
        "strategy": style,
        "phase": phase,
        "message": str(st.get("message", "")),
        "paused": bool(st.get("paused")),
        "aborted": bool(st.get("abort")),
        "observed": bool(st),
        "actions": actions(phase, bool(st.get("paused")), bool(st.get("abort")), style)
        if st else [],
        "versions": _versions(res, st, names or {}),
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
    names = workload_names(resources, status)
    return [rollout_view(r, status(r.key), resources, names) for r in items]


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
    for key, info in workload_names(resources, status).items():
        out[key] = {**{k: v for k, v in info.items() if k != "workload"}, **out.get(key, {})}
    return out
