"""Spans a real proxy reports: SERVER + CLIENT per sampled request, to a local collector.

The collector (tests/spancollector.py) checks every Zipkin payload against Zipkin's v2
schema and parses OTLP with OTLP's own messages. The upstream shows which ids were sent,
so the parent/child chain is checked end to end: caller span -> SERVER -> CLIENT -> upstream.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
from proxy_harness import Harness, cluster, config, free_port, route

from tollway.snapshot import types

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.spancollector import Collector

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = "00f067aa0ba902b7"


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.close()


def _traced(provider: types.TracingProvider, sampling: float = 1.0, **kw: object
            ) -> types.ProxyConfig:
    up_cfg = config([route(("c", 100))], [cluster("c", *kw.pop("ups"))])  # type: ignore[arg-type]
    return msgspec.structs.replace(
        up_cfg, tracing=types.Tracing(provider=provider, sampling=sampling))


def _zipkin(c: Collector) -> types.TracingProvider:
    return types.TracingProvider(name="zipkin", kind="zipkin", endpoint=c.zipkin_url)


def _get(p: object, headers: dict[str, str], path: str = "/x") -> httpx.Response:
    host, port = p.listener_address("main")  # type: ignore[attr-defined]
    return httpx.get(f"http://{host}:{port}{path}", headers={"host": "svc", **headers},
                     timeout=10)


def test_sampled_request_is_a_server_and_a_client_span_chained_to_the_upstream(
    harness: Harness, collector: Collector
) -> None:
    up = harness.upstream("up")
    p = harness.proxy(_traced(_zipkin(collector), ups=[up]))
    r = _get(p, {"traceparent": f"00-{TRACE}-{CALLER}-01", "user-agent": "t/1"})
    assert r.status_code == 200
    collector.wait(2)
    assert collector.errors == []
    spans = {s["kind"]: s for s in collector.zipkin}
    assert set(spans) == {"SERVER", "CLIENT"} and len(collector.zipkin) == 2
    server, client = spans["SERVER"], spans["CLIENT"]
    assert server["traceId"] == client["traceId"] == TRACE
    assert server["parentId"] == CALLER
    assert client["parentId"] == server["id"]
    sent = up.requests[-1]["headers"]
    assert sent["traceparent"] == f"00-{TRACE}-{client['id']}-01"
    assert sent["x-b3-spanid"] == client["id"]
    assert sent["x-b3-parentspanid"] == server["id"]
    for s in (server, client):
        assert s["localEndpoint"] == {"serviceName": "client.default"}
        assert s["name"] == "svc.default.svc.cluster.local:80/*"
        tags = s["tags"]
        assert tags["http.status_code"] == "200"
        assert tags["response_flags"] == "-"
        assert tags["upstream_cluster"] == "c"
        assert tags["istio.canonical_service"] == "client"
        assert tags["node_id"] == "test-proxy"
        assert tags["http.method"] == "GET"
        assert tags["user_agent"] == "t/1"
        assert "error" not in tags
    assert client["remoteEndpoint"] == {"ipv4": "127.0.0.1", "port": up.port}
    assert server["remoteEndpoint"]["ipv4"] == "127.0.0.1"
    assert client["timestamp"] >= server["timestamp"]
    assert server["duration"] >= 1


def test_only_sampled_traces_are_reported_and_the_percentage_decides_new_ones(
    harness: Harness, collector: Collector
) -> None:
    up = harness.upstream("up")
    p = harness.proxy(_traced(_zipkin(collector), sampling=0.0, ups=[up]))
    assert _get(p, {"traceparent": f"00-{TRACE}-{CALLER}-00"}).status_code == 200
    for _ in range(20):  # 0%: no new trace is sampled
        assert _get(p, {}).status_code == 200
    assert up.requests[-1]["headers"]["x-b3-sampled"] == "0"
    # an incoming decision wins over the percentage
    other = "a" * 32
    assert _get(p, {"x-b3-traceid": other, "x-b3-spanid": CALLER, "x-b3-sampled": "1"}
                ).status_code == 200
    collector.wait(2)
    time.sleep(1.5)  # one more exporter interval: nothing else may arrive
    assert collector.errors == []
    assert {s["traceId"] for s in collector.zipkin} == {other}
    assert len(collector.zipkin) == 2
    harness.apply(p, msgspec.structs.replace(
        p.snapshot.config, version="v2",  # type: ignore[union-attr]
        tracing=types.Tracing(provider=_zipkin(collector), sampling=100.0)))
    assert _get(p, {}).status_code == 200
    assert up.requests[-1]["headers"]["x-b3-sampled"] == "1"
    collector.wait(4)
    assert len(collector.zipkin) == 4


def test_b3_single_header_is_understood_and_answered_in_kind(
    harness: Harness, collector: Collector
) -> None:
    up = harness.upstream("up")
    p = harness.proxy(_traced(_zipkin(collector), sampling=0.0, ups=[up]))
    short = "a3ce929d0e0e4736"  # 64-bit trace id: widened to 128
    assert _get(p, {"b3": f"{short}-{CALLER}-1"}).status_code == 200
    collector.wait(2)
    server = next(s for s in collector.zipkin if s["kind"] == "SERVER")
    client = next(s for s in collector.zipkin if s["kind"] == "CLIENT")
    assert server["traceId"] == "0" * 16 + short and server["parentId"] == CALLER
    sent = up.requests[-1]["headers"]
    assert sent["b3"] == f"{'0' * 16}{short}-{client['id']}-1"
    assert sent["x-b3-traceid"] == "0" * 16 + short


def test_local_reply_is_a_server_span_with_its_status(
    harness: Harness, collector: Collector
) -> None:
    up = harness.upstream("up")
    cfg = _traced(_zipkin(collector), sampling=100.0, ups=[up])
    cfg = msgspec.structs.replace(cfg, route_tables=(types.RouteTable(name="rt", virtual_hosts=(
        types.VirtualHost(name="vh", domains=("only.example",), routes=cfg.route_tables[0]
                          .virtual_hosts[0].routes),)),))
    p = harness.proxy(cfg)
    assert _get(p, {}).status_code == 404
    collector.wait(1)
    assert [s["kind"] for s in collector.zipkin] == ["SERVER"]
    tags = collector.zipkin[0]["tags"]
    assert tags["http.status_code"] == "404" and tags["response_flags"] == "NR"


def test_each_try_of_a_retried_request_is_a_client_span_of_its_own(
    harness: Harness, collector: Collector
) -> None:
    up = harness.upstream("up")
    p = harness.proxy(_traced(_zipkin(collector), sampling=100.0, ups=[up]))
    assert _get(p, {}, path="/status/503").status_code == 503  # Istio's default: 2 retries
    collector.wait(4)
    time.sleep(1.5)
    assert collector.errors == [] and len(collector.zipkin) == 4
    (server,) = [s for s in collector.zipkin if s["kind"] == "SERVER"]
    clients = sorted((s for s in collector.zipkin if s["kind"] == "CLIENT"),
                     key=lambda s: s["timestamp"])
    assert [s["parentId"] for s in clients] == [server["id"]] * 3
    sent = [r["headers"] for r in up.requests[-3:]]
    assert [h["x-b3-spanid"] for h in sent] == [s["id"] for s in clients]  # each try its own
    assert [h["traceparent"].split("-")[2] for h in sent] == [s["id"] for s in clients]
    assert [s["tags"].get("retried") for s in clients] == ["true", "true", None]
    for s in (server, *clients):
        assert s["tags"]["http.status_code"] == "503"
        assert s["tags"]["error"] == "true"


def test_otlp_http_protobuf_carries_the_same_spans(harness: Harness, collector: Collector
                                                   ) -> None:
    up = harness.upstream("up")
    provider = types.TracingProvider(name="otel", kind="opentelemetry",
                                     endpoint=collector.otlp_url)
    p = harness.proxy(_traced(provider, ups=[up]))
    assert _get(p, {"traceparent": f"00-{TRACE}-{CALLER}-01"}).status_code == 200
    collector.wait(2, otlp=True)
    assert collector.errors == []
    got = collector.otlp_spans()
    assert {svc for svc, _ in got} == {"client.default"}
    by_kind = {s.kind: s for _, s in got}
    server, client = by_kind[2], by_kind[3]  # SPAN_KIND_SERVER, SPAN_KIND_CLIENT
    assert server.trace_id.hex() == TRACE and server.parent_span_id.hex() == CALLER
    assert client.parent_span_id == server.span_id
    assert up.requests[-1]["headers"]["x-b3-spanid"] == client.span_id.hex()
    attrs = {a.key: a.value for a in client.attributes}
    assert attrs["http.status_code"].string_value == "200"
    assert attrs["http.response.status_code"].int_value == 200
    assert attrs["upstream_cluster"].string_value == "c"
    assert client.end_time_unix_nano > client.start_time_unix_nano > 0


def _dropped(p: object) -> dict[str, float]:
    text = httpx.get("http://{}:{}/stats/prometheus".format(*p.admin_address)).text  # type: ignore[attr-defined]
    out = {}
    for line in text.splitlines():
        if line.startswith("tollway_tracing_spans_dropped_total{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            out[reason] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("tollway_tracing_spans_exported_total "):
            out["exported"] = float(line.rsplit(" ", 1)[1])
    return out


def test_dead_collector_fails_no_request_and_its_spans_are_counted(harness: Harness) -> None:
    up = harness.upstream("up")
    dead = types.TracingProvider(name="zipkin", kind="zipkin",
                                 endpoint=f"http://127.0.0.1:{free_port()}/api/v2/spans")
    p = harness.proxy(_traced(dead, sampling=100.0, ups=[up]))
    for _ in range(30):
        assert _get(p, {}).status_code == 200
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _dropped(p).get("export_failed", 0) < 60:
        time.sleep(0.1)
    counts = _dropped(p)
    assert counts["export_failed"] == 60 and counts["exported"] == 0


def test_slow_collector_fills_the_bounded_queue_and_requests_still_pass(
    harness: Harness,
) -> None:
    slow = Collector(delay=3.0)
    try:
        up = harness.upstream("up")
        provider = types.TracingProvider(name="zipkin", kind="zipkin",
                                         endpoint=slow.zipkin_url, timeout=1.0)
        p = harness.proxy(_traced(provider, sampling=100.0, ups=[up]))
        p.spans.max_queue = 20  # 10 requests' spans
        p.spans.batch_size = 4
        for _ in range(60):
            assert _get(p, {}).status_code == 200
        counts = _dropped(p)
        assert counts["queue_full"] > 0
    finally:
        slow.close()


def test_mode_and_custom_tags(harness: Harness, collector: Collector,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TW_TEST_REGION", "eu-1")
    up = harness.upstream("up")
    base = _traced(_zipkin(collector), sampling=100.0, ups=[up])
    server_only = msgspec.structs.replace(base, tracing=msgspec.structs.replace(
        base.tracing, mode="SERVER"))
    p = harness.proxy(server_only)  # an outbound listener is CLIENT traffic: no spans
    assert _get(p, {}).status_code == 200
    assert up.requests[-1]["headers"]["x-b3-sampled"] == "1"  # still propagated, sampled
    tagged = msgspec.structs.replace(base, version="v2", tracing=msgspec.structs.replace(
        base.tracing, mode="CLIENT", custom_tags=(
            ("team", "literal", "payments", ""), ("region", "environment", "TW_TEST_REGION", ""),
            ("tenant", "header", "X-Tenant", "none"), ("absent", "environment", "TW_NOPE", "d"),
        )))
    harness.apply(p, tagged)
    assert _get(p, {"x-tenant": "acme"}).status_code == 200
    collector.wait(2)
    time.sleep(1.5)
    assert len(collector.zipkin) == 2  # only the second request's spans
    for s in collector.zipkin:
        tags = s["tags"]
        assert (tags["team"], tags["region"], tags["tenant"], tags["absent"]) == (
            "payments", "eu-1", "acme", "d")


def test_a_try_without_response_carries_envoys_flag_and_no_status(
    harness: Harness, collector: Collector
) -> None:
    dead = types.Cluster(name="c", service="svc.default.svc.cluster.local", port=80,
                         endpoints=(types.Endpoint(address="127.0.0.1", port=free_port()),))
    cfg = msgspec.structs.replace(
        config([route(("c", 100))], [dead]),
        tracing=types.Tracing(provider=_zipkin(collector), sampling=100.0))
    p = harness.proxy(cfg)
    assert _get(p, {}).status_code == 503
    collector.wait(4)
    clients = sorted((s for s in collector.zipkin if s["kind"] == "CLIENT"),
                     key=lambda s: s["timestamp"])
    assert len(clients) == 3
    for s in clients[:2]:
        assert s["tags"]["response_flags"] == "UF" and "http.status_code" not in s["tags"]
    assert clients[2]["tags"]["http.status_code"] == "503"
    assert "UF" in clients[2]["tags"]["response_flags"]
