"""The prometheus provider against a REAL Prometheus scraping a tiny Istio-shaped exporter:
seed 15's two queries, exactly as written, evaluated with seed 15's conditions."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, wait_port
from tests.rollout.conftest import seed_spec
from tollway.rollout.analysis import runs
from tollway.rollout.analysis.providers import ProviderError, prometheus

pytestmark = pytest.mark.prometheus

SVC = "payment-service.payments.svc.cluster.local"


def _exposition(elapsed: float) -> str:
    ok, bad = 100 * elapsed, 5 * elapsed  # 5% errors: fails result[0] >= 0.99
    base = f'reporter="destination",destination_service="{SVC}"'
    lines = ["# TYPE istio_requests_total counter",
             f'istio_requests_total{{{base},response_code="200"}} {ok}',
             f'istio_requests_total{{{base},response_code="503"}} {bad}',
             "# TYPE istio_request_duration_milliseconds histogram"]
    n = ok + bad
    for le, share in (("50", 0.5), ("100", 0.9), ("250", 1.0), ("+Inf", 1.0)):
        lines.append(f'istio_request_duration_milliseconds_bucket{{{base},le="{le}"}} '
                     f"{n * share}")
    lines.append(f"istio_request_duration_milliseconds_sum{{{base}}} {n * 50}")
    lines.append(f"istio_request_duration_milliseconds_count{{{base}}} {n}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def prometheus_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    exe = shutil.which("prometheus")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the prometheus binary is required in CI (apt-get install prometheus)")
        pytest.skip("prometheus binary not installed (apt-get install prometheus)")
    started = time.monotonic()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = _exposition(time.monotonic() - started).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    exporter = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=exporter.serve_forever, daemon=True).start()
    tmp: Path = tmp_path_factory.mktemp("prom")
    config = tmp / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n- job_name: sidecars\n  metrics_path: /stats/prometheus\n"
        f"  static_configs: [{{targets: ['127.0.0.1:{exporter.server_address[1]}']}}]\n")
    port = free_port()
    proc = subprocess.Popen(
        [exe, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, timeout=30)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        query = f'sum(rate(istio_requests_total{{destination_service="{SVC}"}}[5m]))'
        while time.monotonic() < deadline:
            r = httpx.get(f"{url}/api/v1/query", params={"query": query})
            if r.status_code == 200 and r.json()["data"]["result"]:
                break
            time.sleep(0.5)
        else:
            pytest.fail("Prometheus never had two samples of the exporter")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        exporter.shutdown()


def _metrics() -> dict[str, runs.MetricSpec]:
    spec = seed_spec("15-analysis-template.yaml", "AnalysisTemplate")
    return {m["name"]: runs.MetricSpec.from_argo(m) for m in spec["metrics"]}


def _query(url: str, promql: str) -> float | list[float]:
    async def go() -> float | list[float]:
        async with httpx.AsyncClient() as client:
            return await prometheus.query(client, url, promql)

    return asyncio.run(go())


def test_prometheus_seed15_success_rate_query_as_written_fails_at_5pct(
    prometheus_url: str,
) -> None:
    metric = _metrics()["success-rate"]
    promql = metric.provider["prometheus"]["query"]
    assert "destination_service=\"payment-service.payments.svc.cluster.local\"" in promql
    result = _query(prometheus_url, promql)
    assert isinstance(result, list) and len(result) == 1
    assert result[0] == pytest.approx(100 / 105, abs=0.01)
    assert runs.classify(metric, result)[0] is runs.AnalysisPhase.FAILED


def test_prometheus_seed15_p99_query_as_written(prometheus_url: str) -> None:
    metric = _metrics()["p99-latency"]
    result = _query(prometheus_url, metric.provider["prometheus"]["query"])
    assert isinstance(result, list)
    assert 100 < result[0] <= 250  # p99 interpolated inside the (100, 250] bucket
    assert runs.classify(metric, result)[0] is runs.AnalysisPhase.FAILED


def test_prometheus_bad_query_is_an_error_not_a_crash(prometheus_url: str) -> None:
    with pytest.raises(ProviderError, match="error"):
        _query(prometheus_url, "sum(rate(")


def test_prometheus_unreachable_is_an_error() -> None:
    with pytest.raises(ProviderError, match="unreachable"):
        _query(f"http://127.0.0.1:{free_port()}", "up")


def test_prometheus_address_mapping() -> None:
    mesh = "http://127.0.0.1:9090"
    assert prometheus.resolve_address("http://prometheus.monitoring:9090", mesh) == mesh
    assert prometheus.resolve_address(None, mesh) == mesh
    assert prometheus.resolve_address("http://prometheus:9090", mesh) == mesh
    assert prometheus.resolve_address("http://prom.monitoring.svc.cluster.local", mesh) == mesh
    assert prometheus.resolve_address("http://127.0.0.1:9999", mesh) == "http://127.0.0.1:9999"
    assert prometheus.resolve_address("http://localhost:9999", mesh) == "http://localhost:9999"
    assert prometheus.resolve_address("https://prom.example.com", mesh) == (
        "https://prom.example.com")
    with pytest.raises(ProviderError, match="in-cluster"):
        prometheus.resolve_address("http://prometheus.monitoring:9090", None)
