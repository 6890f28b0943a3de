"""Taking measurements: Argo metrics through their provider, Flagger checks, the judge.

The one place providers are called. Every failure becomes data (an Error measurement or
a failed Flagger check), never an exception escaping into the controller.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from tollway.config.resource import ResourceSet
from tollway.kit.durations import parse_duration
from tollway.rollout.analysis import judge, runs
from tollway.rollout.analysis.providers import ProviderError, builtin, prometheus, web
from tollway.rollout.analysis.providers.histogram import Counts, Key, histogram_quantile
from tollway.rollout.analysis.providers.mesh import MeshMetrics

_ARG = re.compile(r"\{\{\s*args\.([\w-]+)\s*\}\}")
_VAR = re.compile(r"\{\{\s*([\w.]+)\s*\}\}")


@dataclass(slots=True)
class Context:
    """What a measurement may need: clients, the mesh's metrics, who is canary/stable."""

    client: httpx.AsyncClient
    mesh: MeshMetrics
    prometheus_url: str | None
    canary: Key
    stable: Key
    judges: dict[str, dict[str, Any]] = field(default_factory=dict)  # per run/metric
    # On Kubernetes a template's in-cluster address is reachable as written (unless the
    # controller was told a Prometheus URL to use instead, e.g. when run off-cluster).
    in_cluster: bool = False

    def prometheus(self, given: str | None) -> str:
        if self.in_cluster and given and not self.prometheus_url:
            return given
        return prometheus.resolve_address(given, self.prometheus_url)


def render_args(value: Any, args: Mapping[str, str]) -> Any:
    """Substitute `{{args.NAME}}` in every string of a provider spec, as Argo does."""
    if isinstance(value, str):
        return _ARG.sub(lambda m: args.get(m.group(1), m.group(0)), value)
    if isinstance(value, list):
        return [render_args(v, args) for v in value]
    if isinstance(value, Mapping):
        return {k: render_args(v, args) for k, v in value.items()}
    return value


def metrics_for(templates: tuple[str, ...], namespace: str, resources: ResourceSet,
                dry_run: tuple[str, ...] = (), args: Mapping[str, str] | None = None,
                retention: tuple[tuple[str, int], ...] = ()
                ) -> tuple[tuple[runs.MetricSpec, ...], list[str]]:
    """Resolve AnalysisTemplate / ClusterAnalysisTemplate names into metric specs.

    dryRun rules are the templates' and the Rollout's (`dry_run`), merged as Argo's
    NewAnalysisRunFromTemplates does; each `metricName` is a regex searched in the metric's
    name (utils/analysis/helpers.go GetDryRunMetrics: regexp.MatchString, unanchored).
    measurementRetention rules (the templates' and the Rollout's `retention`) are matched
    the same way (GetMeasurementRetentionMetrics) and set how many measurements a metric
    keeps."""
    raw: list[Mapping[str, Any]] = []
    rules = list(dry_run)
    keep = list(retention)
    missing: list[str] = []
    for name in templates:
        found = resources.get("AnalysisTemplate", namespace, name) or next(
            (r for r in resources.of_kind("ClusterAnalysisTemplate") if r.name == name), None)
        if found is None:
            missing.append(name)
            continue
        rules += [str(d.get("metricName", "")) for d in found.spec.get("dryRun") or ()]
        keep += [(str(d.get("metricName", "")), int(d.get("limit", 0) or 0))
                 for d in found.spec.get("measurementRetention") or ()]
        raw += list(found.spec.get("metrics") or ())
    names = [str(m["name"]) for m in raw]
    dry = dry_run_metrics(rules, names)
    limits = retention_limits(keep, names)
    specs = []
    for m in raw:
        if args:  # `interval: "{{args.interval}}"`: checked once substituted, as in Argo
            m = {k: v if k == "provider" else render_args(v, args) for k, v in m.items()}
        try:
            specs.append(runs.MetricSpec.from_argo(m, dry_run=str(m["name"]) in dry,
                                                   retention=limits.get(str(m["name"]))))
        except ValueError as exc:
            raise DryRunError(f"metric '{m['name']}': {exc}") from None
    return tuple(specs), missing


class DryRunError(ValueError):
    """A dryRun or measurementRetention rule that is no valid regex or matches no metric,
    or a metric field that cannot be read (the run is Error: "Analysis spec invalid")."""


def retention_limits(rules: list[tuple[str, int]], names: list[str]) -> dict[str, int]:
    """metric name -> measurements to keep (a limit above 0; the last matching rule wins,
    as Argo's map does); a rule matching none is an error, as in Argo."""
    out: dict[str, int] = {}
    seen: list[str] = []
    for i, (rule, limit) in enumerate(rules):
        if rule in seen:
            raise DryRunError(
                f"two Measurement Retention metric rules have the same name '{rule}'")
        seen.append(rule)
        try:
            pattern = re.compile(rule)
        except re.error as exc:
            raise DryRunError(f"measurementRetention[{i}]: metricName {rule!r} is no regex: "
                              f"{exc}") from None
        hits = [n for n in names if pattern.search(n)]
        if not hits:
            raise DryRunError(f"measurementRetention[{i}]: Rule didn't match any metric "
                              "name(s)")
        out.update({n: limit for n in hits if limit > 0})
    return out


def dry_run_metrics(rules: list[str], names: list[str]) -> set[str]:
    """The metric names the rules select. A rule matching none is an error, as in Argo
    ("dryRun[i]: Rule didn't match any metric name(s)"); so is a rule given twice."""
    out: set[str] = set()
    for i, rule in enumerate(rules):
        if rule in rules[:i]:
            raise DryRunError(f"two Dry-Run metric rules have the same name '{rule}'")
        try:
            pattern = re.compile(rule)
        except re.error as exc:
            raise DryRunError(f"dryRun[{i}]: metricName {rule!r} is no regex: {exc}") from None
        hits = {n for n in names if pattern.search(n)}
        if not hits:
            raise DryRunError(f"dryRun[{i}]: Rule didn't match any metric name(s)")
        out |= hits
    return out


def template_args(templates: tuple[str, ...], namespace: str, resources: ResourceSet,
                  given: Mapping[str, str]) -> dict[str, str]:
    """Defaults declared by the templates, overridden by the rollout's args."""
    out: dict[str, str] = {}
    for name in templates:
        found = resources.get("AnalysisTemplate", namespace, name)
        for a in (found.spec.get("args") or ()) if found else ():
            if "value" in a:
                out[str(a["name"])] = str(a["value"])
    return {**out, **given}


async def argo_measure(ctx: Context, run: runs.AnalysisRun, spec: runs.MetricSpec,
                       now: float) -> runs.Measurement:
    provider = render_args(dict(spec.provider), run.args)
    try:
        value = await _provider_value(ctx, run.name, spec, provider, now)
    except ProviderError as exc:
        return runs.Measurement(runs.AnalysisPhase.ERROR, now, now, None, str(exc))
    if isinstance(value, judge.Evidence):
        phase = {"pass": runs.AnalysisPhase.SUCCESSFUL, "fail": runs.AnalysisPhase.FAILED}.get(
            value.verdict, runs.AnalysisPhase.RUNNING)
        return runs.Measurement(phase, now, now, value.to_dict(), value.reason)
    phase, message = runs.classify(spec, value)
    return runs.Measurement(phase, now, now, value, message)


async def _provider_value(ctx: Context, run_name: str, spec: runs.MetricSpec,
                          provider: Mapping[str, Any], now: float) -> Any:
    if "prometheus" in provider:
        p = provider["prometheus"]
        address = ctx.prometheus(p.get("address"))
        return await prometheus.query(ctx.client, address, str(p["query"]))
    if "web" in provider:
        return await web.measure(ctx.client, provider["web"])
    plugin = provider.get("plugin") or {}
    mesh_spec = provider.get("tollway") or plugin.get("tollway")
    if mesh_spec is not None:
        return mesh_value(ctx, f"{run_name}/{spec.name}", dict(mesh_spec), now)
    raise ProviderError(f"metric {spec.name}: provider {sorted(provider)} is not supported "
                        "here; use prometheus, web or plugin: {tollway: {...}}")


def mesh_value(ctx: Context, key: str, cfg: Mapping[str, Any], now: float) -> Any:
    """The `tollway` provider: judge (default), success-rate, error-rate or latency."""
    kind = str(cfg.get("metric", "judge"))
    window = parse_duration(str(cfg.get("window", "1m")))
    canary = ctx.mesh.window(ctx.canary, window, now)
    if kind == "success-rate":  # failed: 5xx, or a gRPC status but OK (histogram.py)
        return canary.ok_rate if canary.total else math.nan
    if kind == "error-rate":
        return canary.failed / canary.total if canary.total else math.nan
    if kind == "latency":
        q = histogram_quantile(float(cfg.get("quantile", 0.99)), canary.buckets)
        return math.nan if q is None else q
    if kind == "judge":
        return judge_step(ctx, key, cfg, now)
    raise ProviderError(f"tollway provider: unknown metric {kind!r} (judge, success-rate, "
                        "error-rate, latency)")


def judge_step(ctx: Context, key: str, cfg: Mapping[str, Any], now: float) -> judge.Evidence:
    """Fold the counts since the previous measurement into this metric's judge."""
    try:
        jcfg = judge.JudgeConfig.from_mapping({k: v for k, v in cfg.items()
                                               if k not in ("metric", "window")})
    except ValueError as exc:  # a bad option in the template: an Error measurement
        raise ProviderError(f"metric {key.split('/')[-1]}, tollway provider: {exc}") from None
    saved = ctx.judges.get(key) or {}
    state = judge.JudgeState.from_dict(saved.get("state", {}))
    latest = ctx.mesh.latest()
    prev = saved.get("seen", {})
    canary_now = latest.get(ctx.canary, Counts())
    stable_now = latest.get(ctx.stable, Counts())
    state = judge.fix_threshold(state, jcfg, stable_now.buckets)
    c = canary_now.minus(_counts(prev.get("canary")))
    s = stable_now.minus(_counts(prev.get("stable")))
    thr = state.latency_threshold_ms
    slow_c = judge.slow_count(c.buckets, thr) if thr is not None and c.buckets else 0
    slow_s = judge.slow_count(s.buckets, thr) if thr is not None and s.buckets else 0
    state = judge.observe(state, judge.Window(int(c.total), int(c.failed), int(s.total),
                                              int(s.failed), slow_c, slow_s), jcfg)
    ctx.judges[key] = {"state": state.to_dict(),
                       "seen": {"canary": _raw(canary_now), "stable": _raw(stable_now)}}
    return judge.verdict(state, jcfg)


def _counts(raw: Mapping[str, Any] | None) -> Counts:
    if not raw:
        return Counts()
    return Counts(float(raw["total"]), float(raw["errors"]),
                  {float(k): float(v) for k, v in raw.get("buckets", {}).items()},
                  float(raw.get("grpc_errors", 0.0)))  # absent in states saved before gRPC


def _raw(c: Counts) -> dict[str, Any]:
    return {"total": c.total, "errors": c.errors, "grpc_errors": c.grpc_errors,
            "buckets": {str(k): v for k, v in c.buckets.items()}}


# ---- Flagger -------------------------------------------------------------------------------


async def flagger_check(ctx: Context, metrics: tuple[Mapping[str, Any], ...], namespace: str,
                        target: str, resources: ResourceSet, now: float) -> tuple[bool, str]:
    """All of a canary's metrics for this tick: (all passed, one line of detail)."""
    details: list[str] = []
    ok = True
    for m in metrics:
        name = str(m.get("name", ""))
        rng = m.get("thresholdRange") or {}
        if not rng and m.get("threshold") is not None:
            rng = {"min": m["threshold"]} if name == "request-success-rate" else {
                "max": m["threshold"]}
        tr = runs.ThresholdRange(rng.get("min"), rng.get("max"))
        try:
            value = await _flagger_value(ctx, m, namespace, target, resources, now)
        except ProviderError as exc:
            ok = False
            details.append(f"{name}: {exc}")
            continue
        passed, detail = runs.flagger_check(name, value, tr)
        ok = ok and passed
        details.append(detail)
    return ok, "; ".join(details) or "no metrics"


def flagger_builtin_query(name: str, namespace: str, target: str, interval: str) -> str:
    """Flagger's Istio queries for its built-in metrics (pkg/metrics/observers/istio.go),
    run against Prometheus on a cluster, where the sidecars are scraped by it."""
    sel = (f'reporter="destination",destination_workload_namespace="{namespace}",'
           f'destination_workload=~"{target}"')
    if name == "request-success-rate":
        return (f'sum(rate(istio_requests_total{{{sel},response_code!~"5.*"}}[{interval}])) '
                f"/ sum(rate(istio_requests_total{{{sel}}}[{interval}])) * 100")
    return (f"histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket"
            f"{{{sel}}}[{interval}])) by (le))")


async def _flagger_value(ctx: Context, m: Mapping[str, Any], namespace: str, target: str,
                         resources: ResourceSet, now: float) -> float | None:
    name = str(m.get("name", ""))
    interval = parse_duration(str(m.get("interval", "1m")))
    ref = m.get("templateRef")
    if ref is None and name in builtin.BUILTINS and ctx.in_cluster:
        query = flagger_builtin_query(name, namespace, target, str(m.get("interval", "1m")))
        result = await prometheus.query(ctx.client, ctx.prometheus(None), query)
        if isinstance(result, list):
            return result[0] if result else None
        return result
    if ref is None and name in builtin.BUILTINS:
        return builtin.value(name, ctx.mesh.window(ctx.canary, interval, now))
    if ref is None:
        raise ProviderError(f"metric {name} has no templateRef and is not a built-in")
    tmpl = resources.get("MetricTemplate", str(ref.get("namespace", namespace)),
                         str(ref["name"]))
    if tmpl is None:
        raise ProviderError(f"MetricTemplate {ref['name']} not found")
    extra = m.get("templateVariables") or {}
    variables = {"name": target, "namespace": namespace, "target": target,
                 "interval": str(m.get("interval", "1m")),
                 **{f"variables.{k}": str(v) for k, v in extra.items()}}
    query = _VAR.sub(lambda x: variables.get(x.group(1), x.group(0)), str(tmpl.spec["query"]))
    prov = tmpl.spec.get("provider") or {}
    if str(prov.get("type", "prometheus")) == "tollway":
        return builtin.value("request-success-rate", ctx.mesh.window(ctx.canary, interval, now))
    address = ctx.prometheus(prov.get("address"))
    result = await prometheus.query(ctx.client, address, query)
    if isinstance(result, list):
        return result[0] if result else None
    return result
