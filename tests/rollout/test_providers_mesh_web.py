"""Providers without Prometheus: the mesh's own metrics, web JSON, Flagger built-ins."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import httpx
import pytest

from tollway.rollout.analysis.providers import ProviderError, builtin, mesh, web
from tollway.rollout.analysis.providers.histogram import Counts, histogram_quantile, parse_istio

TEXT = """# TYPE istio_requests_total counter
istio_requests_total{reporter="destination",destination_workload="web-abc",destination_workload_namespace="default",response_code="200"} 95
istio_requests_total{reporter="destination",destination_workload="web-abc",destination_workload_namespace="default",response_code="503"} 5
istio_requests_total{reporter="source",destination_workload="web-abc",destination_workload_namespace="default",response_code="200"} 1000
# TYPE istio_request_duration_milliseconds histogram
istio_request_duration_milliseconds_bucket{reporter="destination",destination_workload="web-abc",destination_workload_namespace="default",response_code="200",le="10"} 50
istio_request_duration_milliseconds_bucket{reporter="destination",destination_workload="web-abc",destination_workload_namespace="default",response_code="200",le="100"} 95
istio_request_duration_milliseconds_bucket{reporter="destination",destination_workload="web-abc",destination_workload_namespace="default",response_code="200",le="+Inf"} 100
istio_request_duration_milliseconds_sum{reporter="destination",destination_workload="web-abc",destination_workload_namespace="default",response_code="200"} 1000
istio_request_duration_milliseconds_count{reporter="destination",destination_workload="web-abc",destination_workload_namespace="default",response_code="200"} 100
"""  # noqa: E501


def test_mesh_parse_counts_inbound_only_and_5xx() -> None:
    counts = parse_istio(TEXT)[("default", "web-abc")]
    assert counts.total == 100 and counts.errors == 5
    assert counts.buckets[10.0] == 50 and counts.buckets[math.inf] == 100
    assert counts.success_rate == pytest.approx(0.95)


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    b = {10.0: 50.0, 100.0: 95.0, math.inf: 100.0}
    assert histogram_quantile(0.5, b) == pytest.approx(10.0)
    assert histogram_quantile(0.9, b) == pytest.approx(10 + 90 * (90 - 50) / 45)
    assert histogram_quantile(0.99, b) == 100.0  # in +Inf: the last finite bound
    assert histogram_quantile(0.99, {}) is None


def test_mesh_window_is_the_difference_of_two_scrapes() -> None:
    m = mesh.MeshMetrics()
    key = ("default", "web-abc")
    m.add(0.0, {key: Counts(100, 1)})
    m.add(30.0, {key: Counts(400, 4)})
    m.add(60.0, {key: Counts(1000, 40)})
    w = m.window(key, 30.0, 60.0)
    assert (w.total, w.errors) == (600, 36)
    assert m.window(key, 3600.0, 60.0).total == 900  # as much as was seen
    m.add(90.0, {key: Counts(10, 0)})  # a proxy restart resets its counters
    assert m.window(key, 30.0, 90.0).total == 10


def test_builtin_flagger_metrics() -> None:
    w = Counts(200, 3, {10.0: 150.0, 500.0: 199.0, math.inf: 200.0})
    assert builtin.value("request-success-rate", w) == pytest.approx(98.5)
    assert builtin.value("request-duration", Counts()) is None
    assert builtin.value("request-duration", w) == pytest.approx(10 + 490 * 48 / 49)
    with pytest.raises(ValueError, match="built-in"):
        builtin.value("nope", w)


def test_web_json_path_subset() -> None:
    doc = {"data": {"items": [{"ok": True, "rate": 0.99}], "a-b": 1}}
    assert web.json_path(doc, "{$.data.items[0].rate}") == 0.99
    assert web.json_path(doc, "$.data['a-b']") == 1
    assert web.json_path(doc, None) == doc
    with pytest.raises(ProviderError, match="not in the answer"):
        web.json_path(doc, "$.data.items[3]")
    with pytest.raises(ProviderError, match="unsupported"):
        web.json_path(doc, "$..rate")


def test_web_provider_against_a_real_server(demo_app_factory: Any) -> None:
    app = demo_app_factory(VERSION="v7")

    async def go() -> tuple[Any, str]:
        async with httpx.AsyncClient() as client:
            value = await web.measure(client, {"url": f"http://127.0.0.1:{app.port}/x",
                                               "jsonPath": "{$.version}",
                                               "headers": [{"key": "x-a", "value": "1"}]})
            try:
                await web.measure(client, {"url": f"http://127.0.0.1:{app.port}/status/503"})
            except ProviderError as exc:
                return value, str(exc)
            return value, ""

    value, error = asyncio.run(go())
    assert value == "v7" and "503" in error


def test_mesh_scrape_sums_proxies_and_skips_dead_ones(demo_app_factory: Any) -> None:
    from aiohttp import web as aioweb

    async def go() -> dict[Any, Counts]:
        async def metrics(_r: aioweb.Request) -> aioweb.Response:
            return aioweb.Response(text=TEXT)

        app = aioweb.Application()
        app.router.add_get("/stats/prometheus", metrics)
        runner = aioweb.AppRunner(app)
        await runner.setup()
        site = aioweb.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with httpx.AsyncClient() as client:
                targets = [(f"127.0.0.1:{port}", {}), (f"127.0.0.1:{port}", {}),
                           ("127.0.0.1:1", {})]
                return await mesh.scrape(client, targets)
        finally:
            await runner.cleanup()

    got = asyncio.run(go())
    assert got[("default", "web-abc")].total == 200
