"""A snapshot's Telemetry on a real proxy: access logs in Envoy's text format and Istio's
JSON, filtered by a CEL expression, written to a file by the log thread; metric tag
overrides (route_name added, a tag removed, a metric disabled) as Prometheus scrapes them;
a push that turns logs on or off takes effect for the next request."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from proxy_harness import Harness, cluster, config, route

from tests.conftest import eventually
from tollway.proxy.chain.stream import Exchange
from tollway.snapshot import types


@pytest.fixture
def harness() -> Any:
    h = Harness()
    yield h
    h.close()


def _url(p: Any, path: str) -> str:
    host, port = p.listener_address("main")
    return f"http://{host}:{port}{path}"


def _admin(p: Any, path: str) -> httpx.Response:
    host, port = p.admin_address
    return httpx.get(f"http://{host}:{port}{path}", timeout=10)


def _with(cfg: types.ProxyConfig, telemetry: types.Telemetry, version: str = "") -> Any:
    return msgspec.structs.replace(cfg, telemetry=telemetry, version=version or cfg.version)


def _lines(path: Path, n: int) -> list[str]:
    def ready() -> list[str] | None:
        lines = path.read_text().splitlines() if path.exists() else []
        return lines if len(lines) >= n else None
    found: list[str] = eventually(ready, 20, f"{n} access log lines in {path}")
    return found


def test_text_and_json_logs_with_filter_and_route_name(harness: Harness,
                                                       tmp_path: Path) -> None:
    up = harness.upstream()
    text, js = tmp_path / "text.log", tmp_path / "json.log"
    tel = types.Telemetry(access_logs=(
        types.AccessLog(path=str(text)),
        types.AccessLog(path=str(js), encoding="JSON",
                        filter="response.code >= 400 || request.url_path.startsWith('/x')"),
    ))
    cfg = config([route(("c", 100), name="api-route")], [cluster("c", up)])
    p = harness.proxy(_with(cfg, tel))
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    for path in ("/ok", "/x/1?q=2", "/ok2"):
        assert httpx.get(_url(p, path), headers={"user-agent": "ua/1", "traceparent": tp},
                         timeout=10).status_code == 200
    lines = _lines(text, 3)
    m = re.match(r'^\[(\S+)\] "GET /ok HTTP/1.1" 200 - via_upstream - "-" 0 (\d+) (\d+) \d+ '
                 r'"-" "ua/1" "([0-9a-f-]+)" "127.0.0.1:\d+" "127.0.0.1:\d+" c - '
                 r'127.0.0.1:\d+ 127.0.0.1:\d+ - api-route$', lines[0])
    assert m, lines[0]
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", m[1])
    (only,) = _lines(js, 1)  # /ok and /ok2 filtered out
    entry = json.loads(only)
    assert entry["path"] == "/x/1?q=2" and entry["response_code"] == 200
    assert entry["route_name"] == "api-route" and entry["upstream_cluster"] == "c"
    assert entry["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert entry["upstream_host"].startswith("127.0.0.1:") and entry["response_flags"] == "-"
    assert isinstance(entry["bytes_sent"], int) and entry["upstream_local_address"] is None


def test_a_push_turns_logs_on_and_off_for_the_next_request(harness: Harness,
                                                           tmp_path: Path) -> None:
    up = harness.upstream()
    log = tmp_path / "a.log"
    cfg = config([route(("c", 100))], [cluster("c", up)])
    p = harness.proxy(cfg)
    httpx.get(_url(p, "/before"), timeout=10)
    assert p.snapshot is not None and p.snapshot.plans["main"].logger is None  # off: no logger
    harness.apply(p, _with(cfg, types.Telemetry(access_logs=(
        types.AccessLog(path=str(log), text_format="%REQ(:PATH)% %RESPONSE_CODE%"),)), "v2"))
    httpx.get(_url(p, "/during"), timeout=10)
    assert _lines(log, 1) == ["/during 200"]
    harness.apply(p, _with(cfg, types.Telemetry(), "v3"))
    httpx.get(_url(p, "/after"), timeout=10)
    p.metrics.logs.flush()
    assert log.read_text().splitlines() == ["/during 200"]


def test_server_only_log_skips_an_outbound_listener(harness: Harness, tmp_path: Path) -> None:
    up = harness.upstream()
    log = tmp_path / "s.log"
    cfg = config([route(("c", 100))], [cluster("c", up)])
    p = harness.proxy(_with(cfg, types.Telemetry(access_logs=(
        types.AccessLog(path=str(log), client=False),))))
    assert p.snapshot is not None and p.snapshot.plans["main"].logger is None


def _series(text: str, family: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith(family + "{")]


def test_tag_overrides_add_route_name_remove_a_tag_disable_a_metric(harness: Harness) -> None:
    up = harness.upstream()
    tel = types.Telemetry(client_metrics=(
        types.MetricOverride(metric="REQUEST_COUNT", tags=(
            types.TagOverride(name="route_name", value="xds.route_name"),
            types.TagOverride(name="request_protocol", remove=True))),
        types.MetricOverride(metric="REQUEST_SIZE", disabled=True),
        types.MetricOverride(metric="REQUEST_DURATION", tags=(
            types.TagOverride(name="response_code", remove=True),)),
    ))
    buy = types.RouteMatch(uri=types.StringMatch(kind="prefix", value="/buy"))
    cfg = config([route(("a", 100), name="checkout", matches=(buy,)),
                  route(("a", 100), name="browse")], [cluster("a", up)])
    p = harness.proxy(_with(cfg, tel))
    for path in ("/buy", "/buy", "/look", "/missing-is-still-browse"):
        httpx.get(_url(p, path), timeout=10)
    text = _admin(p, "/stats/prometheus").text
    counts = _series(text, "istio_requests_total")
    by_route = {re.search(r'route_name="([^"]*)"', ln)[1]: ln  # type: ignore[index]
                for ln in counts}
    assert by_route["checkout"].endswith(" 2.0") and by_route["browse"].endswith(" 2.0")
    assert all("request_protocol=" not in ln for ln in counts)
    assert not _series(text, "istio_request_bytes_bucket")
    dur = _series(text, "istio_request_duration_milliseconds_count")
    assert len(dur) == 1 and "response_code=" not in dur[0] and dur[0].endswith(" 4.0")
    assert _series(text, "istio_response_bytes_count")[0].endswith(" 4.0")


def test_tag_value_errors_are_unknown_and_never_fail_a_request(harness: Harness) -> None:
    up = harness.upstream()
    tel = types.Telemetry(client_metrics=(types.MetricOverride(metric="REQUEST_COUNT", tags=(
        types.TagOverride(name="user", value="request.headers['x-user']"),
        types.TagOverride(name="big", value="string(response.code >= 'x')"))),))
    p = harness.proxy(_with(config([route(("a", 100))], [cluster("a", up)]), tel))
    assert httpx.get(_url(p, "/"), headers={"x-user": "ann"}, timeout=10).status_code == 200
    assert httpx.get(_url(p, "/"), timeout=10).status_code == 200
    counts = _series(_admin(p, "/stats/prometheus").text, "istio_requests_total")
    assert sorted(re.search(r'user="([^"]*)"', ln)[1] for ln in counts) == [  # type: ignore[index]
        "ann", "unknown"]
    assert all('big="unknown"' in ln for ln in counts)


def test_a_bad_expression_refuses_the_snapshot(harness: Harness) -> None:
    from tollway.snapshot.codec import SnapshotError

    up = harness.upstream()
    cfg = config([route(("a", 100))], [cluster("a", up)])
    p = harness.proxy(cfg)
    bad = _with(cfg, types.Telemetry(access_logs=(types.AccessLog(filter="1 +"),)), "v2")
    with pytest.raises(SnapshotError):
        harness.apply(p, bad)
    assert p.version == "v1"


def test_exchange_has_the_slots_the_log_reads() -> None:
    # the operators read these attributes; a rename must fail here, not in the log thread
    for name in ("span", "route_name", "upstream_host", "upstream_time", "body_size",
                 "principal", "target"):
        # a slot (pure Python) or a native attribute (compiled build): a descriptor either way
        assert hasattr(Exchange, name), name
