"""Telemetry precedence (Istio's): mesh (root namespace) < namespace < workload, per field
for tracing, per provider for access logs, per metric and tag for metric overrides; the
mesh config's defaults and legacy keys underneath; all of it reaching the snapshot."""

from __future__ import annotations

from typing import Any

import pytest
from translate_kit import load

from tollway.config.meshconfig import MeshConfig, parse_mesh_config
from tollway.control import translate
from tollway.control.translate import telemetry as tel
from tollway.control.world import World
from tollway.snapshot import types

WEB = types.Node(name="web-1", workload="web", namespace="shop",
                 labels={"app": "web", "version": "v1"})
WEB_V2 = types.Node(name="web-2", workload="web-v2", namespace="shop",
                    labels={"app": "web", "version": "v2"})
OTHER_NS = types.Node(name="api-1", workload="api", namespace="bank", labels={"app": "api"})
GATEWAY = types.Node(name="gw", workload="gw", namespace="shop", kind="gateway",
                     labels={"istio": "ingressgateway"})

MESH = parse_mesh_config({
    "extensionProviders": [
        {"name": "zipkin", "zipkin": {"service": "zipkin.istio-system", "port": 9411}},
        {"name": "otel", "opentelemetry": {"service": "otel.obs", "port": 4318,
                                           "http": {"path": "/v1/traces", "timeout": "2s"}}},
        {"name": "json-log", "envoyFileAccessLog": {
            "path": "/tmp/x.log", "logFormat": {"labels": {"code": "%RESPONSE_CODE%"}}}},
    ],
    "defaultProviders": {"tracing": ["zipkin"]},
    "defaultConfig": {"tracing": {"sampling": 5}},
}, "mesh.yaml").config


def telemetry(name: str, namespace: str, spec: dict[str, Any],
              stamp: str = "2026-01-01T00:00:00Z") -> str:
    import json

    return json.dumps({"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
                       "metadata": {"name": name, "namespace": namespace,
                                    "creationTimestamp": stamp}, "spec": spec})


def resolve(*docs: str, node: types.Node = WEB, mesh: MeshConfig = MESH
            ) -> tuple[types.Telemetry, types.Tracing]:
    return tel.telemetry_for(load(*docs) if docs else load(), node, mesh)


MESH_T = telemetry("mesh", "istio-system", {
    "tracing": [{"randomSamplingPercentage": 10}],
    "accessLogging": [{"providers": [{"name": "envoy"}]}],
    "metrics": [{"overrides": [{"match": {"metric": "REQUEST_COUNT"},
                                "tagOverrides": {"request_protocol": {"operation": "REMOVE"}}}]}],
})
NS_T = telemetry("ns", "shop", {
    "tracing": [{"randomSamplingPercentage": 0}],
    "accessLogging": [{"providers": [{"name": "envoy"}],
                       "filter": {"expression": "response.code >= 400"}}],
    "metrics": [{"overrides": [{"match": {"metric": "REQUEST_COUNT"},
                                "tagOverrides": {"route_name": {"value": "xds.route_name"}}}]}],
})
WL_T = telemetry("wl", "shop", {
    "selector": {"matchLabels": {"version": "v2"}},
    "tracing": [{"randomSamplingPercentage": 100, "providers": [{"name": "otel"}]}],
    "accessLogging": [{"disabled": True}],
    "metrics": [{"overrides": [{"match": {"metric": "REQUEST_COUNT"},
                                "tagOverrides": {"route_name": {"operation": "REMOVE"}}}]}],
})


# ---- tracing ---------------------------------------------------------------------------


def test_tracing_sampling_mesh_then_namespace_then_workload() -> None:
    assert resolve(MESH_T, node=OTHER_NS)[1].sampling == 10  # mesh only
    assert resolve(MESH_T, NS_T)[1].sampling == 0  # namespace over mesh
    assert resolve(MESH_T, NS_T, WL_T)[1].sampling == 0  # v1 not selected
    wl = resolve(MESH_T, NS_T, WL_T, node=WEB_V2)[1]
    assert wl.sampling == 100 and wl.provider is not None and wl.provider.name == "otel"
    assert wl.provider.endpoint == "http://otel.obs:4318/v1/traces" and wl.provider.timeout == 2


def test_tracing_default_provider_and_legacy_sampling_fill_what_telemetry_leaves() -> None:
    t = resolve(telemetry("ns", "shop", {"tracing": [{}]}))[1]
    assert t.sampling == 5  # defaultConfig.tracing.sampling
    assert t.provider == types.TracingProvider(
        name="zipkin", kind="zipkin", endpoint="http://zipkin.istio-system:9411/api/v2/spans")


def test_tracing_without_telemetry_or_default_provider_is_legacy() -> None:
    plain = resolve(mesh=MeshConfig())[1]
    assert plain == types.Tracing(provider=None, sampling=1.0)  # Istio's 1%, nowhere to send
    legacy = parse_mesh_config({"defaultConfig": {"tracing": {
        "sampling": 50, "zipkin": {"address": "127.0.0.1:9411"}}}}, "m").config
    t = resolve(mesh=legacy)[1]
    assert t.sampling == 50 and t.provider is not None
    assert t.provider.endpoint == "http://127.0.0.1:9411/api/v2/spans"
    off = legacy.model_copy(update={"enable_tracing": False})
    assert resolve(mesh=off)[1].provider is None


def test_disable_span_reporting_keeps_sampling_and_drops_the_provider() -> None:
    t = resolve(MESH_T, telemetry("wl", "shop", {"selector": {"matchLabels": {"app": "web"}},
                                                 "tracing": [{"disableSpanReporting": True}]}))[1]
    assert t.provider is None and t.sampling == 10


def test_tracing_match_mode_client_reaches_gateways_not_sidecar_inbound() -> None:
    doc = telemetry("ns", "shop", {"tracing": [{"match": {"mode": "CLIENT"},
                                                "randomSamplingPercentage": 42}]})
    assert resolve(doc, node=GATEWAY)[1].sampling == 42
    assert resolve(doc, node=WEB)[1].sampling == 5


def test_root_namespace_selector_and_target_refs_are_not_mesh_wide() -> None:
    root_sel = telemetry("sel", "istio-system", {"selector": {"matchLabels": {"app": "web"}},
                                                 "tracing": [{"randomSamplingPercentage": 77}]})
    target = telemetry("gw", "shop", {"targetRefs": [{"kind": "Gateway", "name": "gw"}],
                                      "tracing": [{"randomSamplingPercentage": 66}]})
    assert resolve(root_sel, target)[1].sampling == 5


def test_oldest_resource_wins_within_a_scope() -> None:
    old = telemetry("a-old", "shop", {"tracing": [{"randomSamplingPercentage": 20}]},
                    "2025-01-01T00:00:00Z")
    new = telemetry("b-new", "shop", {"tracing": [{"randomSamplingPercentage": 30}]},
                    "2026-06-01T00:00:00Z")
    assert resolve(new, old)[1].sampling == 20


# ---- access logs -----------------------------------------------------------------------


def test_access_logs_mesh_then_namespace_filter_then_workload_off() -> None:
    (mesh_log,) = resolve(MESH_T, node=OTHER_NS)[0].access_logs
    assert (mesh_log.path, mesh_log.encoding, mesh_log.filter) == ("/dev/stdout", "TEXT", "")
    (ns_log,) = resolve(MESH_T, NS_T)[0].access_logs
    assert ns_log.filter == "response.code >= 400"
    assert resolve(MESH_T, NS_T, WL_T, node=WEB_V2)[0].access_logs == ()


def test_access_logs_on_for_one_namespace_only() -> None:
    doc = telemetry("ns", "shop", {"accessLogging": [{"providers": [{"name": "envoy"}]}]})
    assert len(resolve(doc)[0].access_logs) == 1
    assert resolve(doc, node=OTHER_NS)[0].access_logs == ()


def test_access_log_mode_server_only_and_provider_format() -> None:
    doc = telemetry("ns", "shop", {"accessLogging": [
        {"providers": [{"name": "json-log"}], "match": {"mode": "SERVER"}}]})
    (log,) = resolve(doc)[0].access_logs
    assert (log.client, log.server, log.encoding) == (False, True, "JSON")
    assert log.json_labels == (("code", "%RESPONSE_CODE%"),) and log.path == "/tmp/x.log"


def test_legacy_access_log_file_and_encoding() -> None:
    mc = parse_mesh_config({"accessLogFile": "/dev/stdout", "accessLogEncoding": "JSON"},
                           "m").config
    (log,) = resolve(mesh=mc)[0].access_logs
    assert (log.path, log.encoding, log.json_labels) == ("/dev/stdout", "JSON", ())
    # a Telemetry that turns logging off wins over the legacy file
    off = telemetry("ns", "shop", {"accessLogging": [{"providers": [{"name": "envoy"}],
                                                      "disabled": True}]})
    assert resolve(off, mesh=mc)[0].access_logs == ()
    assert resolve(mesh=MeshConfig())[0].access_logs == ()


def test_unknown_access_log_provider_logs_nothing() -> None:
    doc = telemetry("ns", "shop", {"accessLogging": [{"providers": [{"name": "nope"}]}]})
    assert resolve(doc)[0].access_logs == ()


# ---- metrics ---------------------------------------------------------------------------


def _tags(t: types.Telemetry, side: str, metric: str) -> dict[str, str]:
    overrides = t.client_metrics if side == "client" else t.server_metrics
    found = next((o for o in overrides if o.metric == metric), None)
    return {} if found is None else {x.name: "REMOVE" if x.remove else x.value
                                     for x in found.tags}


def test_metric_tag_overrides_merge_mesh_namespace_workload() -> None:
    t = resolve(MESH_T, NS_T, WL_T)[0]
    assert _tags(t, "client", "REQUEST_COUNT") == {"request_protocol": "REMOVE",
                                                   "route_name": "xds.route_name"}
    assert _tags(t, "server", "REQUEST_COUNT") == _tags(t, "client", "REQUEST_COUNT")
    v2 = resolve(MESH_T, NS_T, WL_T, node=WEB_V2)[0]
    assert _tags(v2, "client", "REQUEST_COUNT") == {"request_protocol": "REMOVE",
                                                    "route_name": "REMOVE"}
    assert _tags(t, "client", "REQUEST_DURATION") == {}


def test_metrics_all_disabled_then_reenabled_below() -> None:
    off = telemetry("mesh", "istio-system", {"metrics": [{"overrides": [
        {"match": {"metric": "ALL_METRICS"}, "disabled": True}]}]})
    assert resolve(off)[0].metrics is False
    on = telemetry("ns", "shop", {"metrics": [{"overrides": [
        {"match": {"metric": "REQUEST_COUNT", "mode": "SERVER"}, "disabled": False}]}]})
    t = resolve(off, on)[0]
    assert t.metrics is True and t.client_metrics == ()
    assert t.server_metrics == (types.MetricOverride(metric="REQUEST_COUNT"),)


def test_metrics_with_no_prometheus_provider_in_scope_are_off() -> None:
    doc = telemetry("ns", "shop", {"metrics": [{"providers": [{"name": "zipkin"}]}]})
    assert resolve(doc)[0].metrics is False
    assert resolve()[0] == types.Telemetry()


def test_all_metrics_override_expands_to_each_metric_and_mode_splits() -> None:
    doc = telemetry("ns", "shop", {"metrics": [{"overrides": [
        {"match": {"mode": "CLIENT"}, "tagOverrides": {"x": {"value": "'1'"}}}]}]})
    t = resolve(doc)[0]
    assert {o.metric for o in t.client_metrics} == set(tel.ALL_METRICS)
    assert t.server_metrics == ()


# ---- into the snapshot -----------------------------------------------------------------


@pytest.mark.parametrize("node", [WEB, WEB_V2])
def test_build_carries_telemetry_and_versions_change_with_it(node: types.Node) -> None:
    ports = translate.ProxyPorts(outbound=("127.0.0.1", 15001))
    plain = translate.build(World.build(load(), ()), node, ports)
    assert plain.telemetry == types.Telemetry() and plain.tracing == types.Tracing()
    world = World.build(load(MESH_T, NS_T, WL_T), ())
    cfg = translate.build(world, node, ports, mesh_config=MESH)
    assert cfg.version != plain.version
    assert (cfg.telemetry, cfg.tracing) == tel.telemetry_for(world.resources, node, MESH)


def test_tracing_reporting_side_and_custom_tags_reach_the_snapshot() -> None:
    doc = telemetry("ns", "shop", {"tracing": [
        {"match": {"mode": "SERVER"}, "disableSpanReporting": True},
        ]})
    t = resolve(doc)[1]
    assert t.mode == "CLIENT" and t.provider is not None  # only outbound spans reported
    tags = telemetry("wl", "shop", {"selector": {"matchLabels": {"app": "web"}}, "tracing": [
        {"customTags": {"team": {"literal": {"value": "pay"}},
                        "user": {"header": {"name": "x-user", "defaultValue": "anon"}}}}]})
    assert resolve(MESH_T, tags)[1].custom_tags == (("team", "literal", "pay", ""),
                                                    ("user", "header", "x-user", "anon"))
