"""Telemetry resources + MeshConfig -> one proxy's tracing, access logs and metric overrides [pure].

Istio's rules (pilot/pkg/model/telemetry.go), reproduced:
- Which resources apply: the oldest selector-less Telemetry of the root namespace (mesh),
  then the oldest selector-less one of the proxy's namespace, then the oldest one of that
  namespace whose `selector.matchLabels` the proxy's labels include (workload). Later
  ones override earlier ones. A root-namespace resource with a selector is not mesh-wide;
  a resource with `targetRef(s)` (gateway attachment) is not applied by Tollway.
- Tracing: start from `defaultProviders.tracing[0]`; each applicable `tracing` entry (for
  its `match.mode`: client, server or both) replaces the provider when it names one and
  each field it sets (`randomSamplingPercentage`, `disableSpanReporting`, ...). With no
  Telemetry tracing and no default provider the legacy settings apply: `enableTracing`,
  `defaultConfig.tracing.sampling` (Istio's default 1%) and `defaultConfig.tracing.zipkin`.
- Access logging: with no Telemetry accessLogging and no default provider, the legacy
  `accessLogFile` / `accessLogEncoding` / `accessLogFormat`. Otherwise the providers of the
  most specific entry that names any (else the default providers) are in scope, and each
  entry in order, for its mode, turns its providers on (with its filter) or off (`disabled`).
- Metrics: the providers of the most specific entry that names any (else the default,
  `prometheus`); overrides merge in order per mode and metric (`ALL_METRICS` expands to
  every metric), later tag overrides replacing earlier ones of the same tag; ALL_METRICS
  `disabled: true` turns the provider off until a later entry overrides again.

Only the proxy's side of this is in the snapshot (types.Tracing, types.Telemetry): the
proxy reads nothing of Telemetry resources at run time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from tollway.config.meshconfig import ExtensionProvider, MeshConfig
from tollway.config.resource import Resource, ResourceSet
from tollway.control.world import ROOT_NAMESPACE, oldest_first
from tollway.kit.durations import DurationError, parse_duration
from tollway.snapshot import types

CLIENT, SERVER = "CLIENT", "SERVER"
ALL_METRICS = ("GRPC_REQUEST_MESSAGES", "GRPC_RESPONSE_MESSAGES", "REQUEST_COUNT",
               "REQUEST_DURATION", "REQUEST_SIZE", "RESPONSE_SIZE", "TCP_CLOSED_CONNECTIONS",
               "TCP_OPENED_CONNECTIONS", "TCP_RECEIVED_BYTES", "TCP_SENT_BYTES")
DEFAULT_MESH_CONFIG = MeshConfig()
# Istio's default mesh config ships these providers (a user's entry of the same name wins).
BUILTIN_PROVIDERS: tuple[ExtensionProvider, ...] = (
    ExtensionProvider.model_validate({"name": "prometheus", "prometheus": {}}),
    ExtensionProvider.model_validate({"name": "envoy", "envoyFileAccessLog": {}}),
)
Spec = Mapping[str, Any]


@dataclass(frozen=True)
class Applicable:
    """The Telemetry resources that apply to one proxy, widest first."""

    resources: tuple[Resource, ...]

    def entries(self, key: str) -> list[Spec]:
        out: list[Spec] = []
        for r in self.resources:
            out += [e for e in r.spec.get(key) or () if isinstance(e, Mapping)]
        return out

    def logging_levels(self) -> list[list[Spec]]:
        return [list(r.spec.get("accessLogging") or ()) for r in self.resources
                if r.spec.get("accessLogging")]


def _selector(r: Resource) -> Mapping[str, Any]:
    sel = r.spec.get("selector")
    labels = sel.get("matchLabels") if isinstance(sel, Mapping) else None
    return labels if isinstance(labels, Mapping) else {}


def _attached(r: Resource) -> bool:
    return bool(r.spec.get("targetRef") or r.spec.get("targetRefs"))


def applicable(resources: ResourceSet, node: types.Node,
               root_namespace: str = ROOT_NAMESPACE) -> Applicable:
    """Mesh, namespace, workload Telemetry for `node` (each at most one, oldest wins)."""
    all_ = [r for r in oldest_first(resources.of_kind("Telemetry")) if not _attached(r)]
    out: list[Resource] = []
    mesh = next((r for r in all_ if r.namespace == root_namespace and not _selector(r)), None)
    if mesh is not None:
        out.append(mesh)
    if node.namespace != root_namespace:
        ns = next((r for r in all_ if r.namespace == node.namespace and not _selector(r)),
                  None)
        if ns is not None:
            out.append(ns)
    workload = next((r for r in all_ if r.namespace == node.namespace and _selector(r)
                     and all(node.labels.get(str(k)) == str(v)
                             for k, v in _selector(r).items())), None)
    if workload is not None:
        out.append(workload)
    return Applicable(tuple(out))


def _names(entry: Spec) -> list[str]:
    return [str(p.get("name")) for p in entry.get("providers") or () if isinstance(p, Mapping)]


def _modes(match: Any) -> tuple[str, ...]:
    mode = match.get("mode") if isinstance(match, Mapping) else None
    return (mode,) if mode in (CLIENT, SERVER) else (CLIENT, SERVER)


def providers_of(mesh: MeshConfig) -> dict[str, ExtensionProvider]:
    """Providers by lower-case name (Istio looks them up case-insensitively)."""
    out = {p.name.lower(): p for p in BUILTIN_PROVIDERS}
    out.update({p.name.lower(): p for p in mesh.extension_providers})
    return out


# ------------------------------------------------------------------ tracing


def tracing_provider(p: ExtensionProvider | None) -> types.TracingProvider | None:
    """The exporter's view of a tracing provider; None for other kinds (and OTLP/gRPC)."""
    if p is None:
        return None
    if p.zipkin is not None:
        z = p.zipkin
        return types.TracingProvider(
            name=p.name, kind="zipkin", endpoint=f"http://{z.service}:{z.port}{z.path}",
            max_tag_length=z.max_tag_length or 256)
    if p.opentelemetry is not None and p.opentelemetry.http is not None:
        o, h = p.opentelemetry, p.opentelemetry.http
        headers = tuple((str(x.get("name")), str(x.get("value", "")))
                        for x in h.headers or () if x.get("name"))
        return types.TracingProvider(
            name=p.name, kind="opentelemetry", endpoint=f"http://{o.service}:{o.port}{h.path}",
            max_tag_length=o.max_tag_length or 256, timeout=_seconds(h.timeout, 5.0),
            headers=headers)
    return None


def _seconds(text: str | None, default: float) -> float:
    try:
        return parse_duration(text) if text else default
    except DurationError:
        return default


def _legacy_tracing(mesh: MeshConfig) -> types.Tracing:
    legacy = mesh.default_config.tracing
    sampling = legacy.sampling if legacy and legacy.sampling is not None else 1.0
    provider = None
    address = legacy.zipkin.address if legacy and legacy.zipkin else None
    if mesh.enable_tracing and address:
        provider = types.TracingProvider(name="zipkin", kind="zipkin",
                                         endpoint=f"http://{address}/api/v2/spans")
    return types.Tracing(provider=provider, sampling=sampling)


def tracing_for(found: Applicable, mesh: MeshConfig,
                mode: str = SERVER) -> types.Tracing:
    """One side's tracing (SERVER: a sidecar's inbound, CLIENT: outbound and gateways)."""
    entries = found.entries("tracing")
    defaults = mesh.default_providers.tracing
    if not entries and not defaults:
        return _legacy_tracing(mesh)
    providers = providers_of(mesh)
    legacy = mesh.default_config.tracing
    provider = providers.get(defaults[0].lower()) if defaults else None
    sampling = legacy.sampling if legacy and legacy.sampling is not None else 1.0
    disabled = False
    tags: tuple[tuple[str, str, str, str], ...] = ()
    for e in entries:
        if mode not in _modes(e.get("match")):
            continue
        names = _names(e)
        if names:
            provider = providers.get(names[0].lower())
        if e.get("disableSpanReporting") is not None:
            disabled = bool(e["disableSpanReporting"])
        if e.get("randomSamplingPercentage") is not None:
            sampling = float(e["randomSamplingPercentage"])
        if e.get("customTags") is not None:  # replaces the parent's, as Istio's shallow merge
            tags = _custom_tags(e["customTags"])
    return types.Tracing(provider=None if disabled else tracing_provider(provider),
                         sampling=sampling, custom_tags=tags)


def _custom_tags(spec: Any) -> tuple[tuple[str, str, str, str], ...]:
    out = []
    for tag, how in sorted((spec or {}).items()):
        for kind in ("literal", "header", "environment"):
            body = how.get(kind) if isinstance(how, Mapping) else None
            if isinstance(body, Mapping):
                value = body.get("value") if kind == "literal" else body.get("name")
                out.append((str(tag), kind, str(value or ""),
                            str(body.get("defaultValue") or "")))
    return tuple(out)


def tracing_both_sides(found: Applicable, mesh: MeshConfig, gateway: bool) -> types.Tracing:
    """Istio resolves a client and a server spec; the snapshot carries one Tracing whose
    `mode` says which side reports. A gateway has the client side only. When the sides
    differ in more than reporting, the side a proxy mostly serves decides the rest (the
    server side for a sidecar)."""
    import msgspec

    client = tracing_for(found, mesh, CLIENT)
    if gateway:
        return client
    server = tracing_for(found, mesh, SERVER)
    if client.provider is not None and server.provider is None:
        return msgspec.structs.replace(client, mode="CLIENT")
    if server.provider is not None and client.provider is None:
        return msgspec.structs.replace(server, mode="SERVER")
    return server


# ------------------------------------------------------------------ access logs


def _log_providers(levels: Sequence[Sequence[Spec]], defaults: Sequence[str],
                   mode: str) -> dict[str, str]:
    """mergeLogs: provider name -> filter expression ("" none), for one mode."""
    names_in_scope = list(defaults)
    filters: dict[str, str] = {}
    for level in levels:
        names: list[str] = []
        for e in level:
            sub = _names(e)
            names += sub
            expr = str((e.get("filter") or {}).get("expression") or "")
            for n in sub:
                filters[n] = expr
        if names:
            names_in_scope = names
    scope = set(names_in_scope)
    out: dict[str, str] = {}
    parent = list(defaults)
    for level in levels:
        for e in level:
            names = _names(e) or parent
            parent = names
            own = str((e.get("filter") or {}).get("expression") or "")
            for n in names:
                if n not in scope or mode not in _modes(e.get("match")):
                    continue
                if e.get("disabled"):
                    out.pop(n, None)
                    continue
                # (Istio takes a filter only from an entry naming the provider; an entry
                # inheriting its providers applies its own filter to them here)
                out[n] = own or filters.get(n, "")
    return out


def _file_log(p: ExtensionProvider, mesh: MeshConfig, expr: str) -> types.AccessLog | None:
    f = p.envoy_file_access_log
    if f is None:
        return None
    fmt = f.log_format
    if fmt is not None and fmt.labels is not None:
        return types.AccessLog(path=f.path, encoding="JSON", filter=expr,
                               json_labels=tuple(sorted(fmt.labels.items())))
    if fmt is not None and fmt.text is not None:
        return types.AccessLog(path=f.path, encoding="TEXT", text_format=fmt.text,
                               filter=expr)
    if p.name == "envoy":  # the built-in provider follows the mesh's encoding and format
        return _legacy_log(mesh, f.path, expr)
    return types.AccessLog(path=f.path, filter=expr)


def _legacy_log(mesh: MeshConfig, path: str, expr: str = "") -> types.AccessLog:
    if mesh.access_log_encoding == "JSON":
        return types.AccessLog(path=path, encoding="JSON", filter=expr,
                               json_labels=_json_labels(mesh.access_log_format))
    return types.AccessLog(path=path, text_format=mesh.access_log_format, filter=expr)


def _json_labels(text: str) -> tuple[tuple[str, str], ...]:
    """meshConfig.accessLogFormat under JSON encoding: a JSON object of key -> command."""
    if not text.strip():
        return ()
    import json

    try:
        data = json.loads(text)
    except ValueError:
        return ()
    return tuple(sorted((str(k), str(v)) for k, v in data.items())) \
        if isinstance(data, dict) else ()


def access_logs_for(found: Applicable, mesh: MeshConfig) -> tuple[types.AccessLog, ...]:
    levels = found.logging_levels()
    defaults = mesh.default_providers.access_logging
    if not levels and not defaults:
        return (_legacy_log(mesh, mesh.access_log_file),) if mesh.access_log_file else ()
    providers = providers_of(mesh)
    sides: dict[tuple[str, str], set[str]] = {}
    for mode in (CLIENT, SERVER):
        for name, expr in _log_providers(levels, defaults, mode).items():
            sides.setdefault((name, expr), set()).add(mode)
    out = []
    for (name, expr), modes in sorted(sides.items()):
        p = providers.get(name.lower())
        log = _file_log(p, mesh, expr) if p is not None else None
        if log is not None:
            out.append(_with_sides(log, modes))
    return tuple(out)


def _with_sides(log: types.AccessLog, modes: Iterable[str]) -> types.AccessLog:
    import msgspec

    m = set(modes)
    return msgspec.structs.replace(log, client=CLIENT in m, server=SERVER in m)


# ------------------------------------------------------------------ metrics


def _metric_names(match: Any) -> tuple[str, ...]:
    m = match if isinstance(match, Mapping) else {}
    if m.get("customMetric"):
        return ()  # Tollway counts Istio's standard metrics only
    metric = m.get("metric")
    return ALL_METRICS if metric in (None, "ALL_METRICS") else (str(metric),)


def _is_all(match: Any) -> bool:
    m = match if isinstance(match, Mapping) else {}
    return not m.get("customMetric") and m.get("metric") in (None, "ALL_METRICS")


def metrics_for(found: Applicable, mesh: MeshConfig
                ) -> tuple[bool, tuple[types.MetricOverride, ...],
                           tuple[types.MetricOverride, ...]]:
    """(metrics on, client overrides, server overrides) for the prometheus provider(s)."""
    entries = found.entries("metrics")
    providers = providers_of(mesh)
    names = list(mesh.default_providers.metrics)
    for e in entries:
        names = _names(e) or names
    prom = {n for n in names if (p := providers.get(n.lower())) and p.prometheus is not None}
    if not prom:
        return False, (), ()
    merged: dict[str, dict[str, tuple[bool | None, dict[str, Spec]]]] = {CLIENT: {}, SERVER: {}}
    disabled_all = False
    parent = list(mesh.default_providers.metrics)
    for e in entries:
        scoped = _names(e) or parent
        parent = scoped
        if not prom & set(scoped):
            continue
        for o in e.get("overrides") or ():
            match = o.get("match")
            if _is_all(match) and o.get("disabled"):
                disabled_all = True
                continue
            disabled_all = False
            for mode in _modes(match):
                for metric in _metric_names(match):
                    dis, tags = merged[mode].get(metric, (None, {}))
                    if o.get("disabled") is not None:
                        dis = bool(o["disabled"])
                    tags = {**tags, **{str(k): v for k, v in (o.get("tagOverrides") or {})
                                       .items() if isinstance(v, Mapping)}}
                    merged[mode][metric] = (dis, tags)
    if disabled_all:
        return False, (), ()
    return True, _overrides(merged[CLIENT]), _overrides(merged[SERVER])


def _overrides(per_metric: Mapping[str, tuple[bool | None, Mapping[str, Spec]]]
               ) -> tuple[types.MetricOverride, ...]:
    out = []
    for metric, (dis, tags) in sorted(per_metric.items()):
        tag_list = tuple(
            types.TagOverride(name=k, remove=True) if v.get("operation") == "REMOVE"
            else types.TagOverride(name=k, value=str(v.get("value") or ""))
            for k, v in sorted(tags.items()))
        out.append(types.MetricOverride(metric=cast(Any, metric), disabled=bool(dis),
                                        tags=tag_list))
    return tuple(out)


# ------------------------------------------------------------------ the whole


def telemetry_for(resources: ResourceSet, node: types.Node, mesh: MeshConfig
                  ) -> tuple[types.Telemetry, types.Tracing]:
    """The snapshot's telemetry and tracing for `node` (see module doc)."""
    found = applicable(resources, node)
    on, client, server = metrics_for(found, mesh)
    telemetry = types.Telemetry(metrics=on, access_logs=access_logs_for(found, mesh),
                                client_metrics=client, server_metrics=server)
    return telemetry, tracing_both_sides(found, mesh, node.kind == "gateway")
