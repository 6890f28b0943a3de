"""Kiali's gRPC queries (tollway/dashboard/grafana.KIALI_GRPC) in a real Prometheus that
scrapes the server-side sidecar while real `grpcio` calls pass through two sidecars:
the error rate counts gRPC errors carried in HTTP 200s, the per-status split and the
message rates match what was sent."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_app import stubs
from grpc_mesh import inbound, outbound
from proxy_harness import Harness

from tests.conftest import free_port, wait_port
from tests.prometheus_wait import wait_ingested
from tollway.dashboard import grafana

pytestmark = pytest.mark.prometheus
WINDOW = 10  # seconds: the rate interval the queries get
OK_PER_S, FAIL_PER_S = 6, 2  # unary calls a second that succeed / fail RESOURCE_EXHAUSTED


def _prometheus(tmp: Path, target: str) -> tuple[subprocess.Popen[bytes], int]:
    """A Prometheus scraping `target`'s /stats/prometheus every second, and its port."""
    exe = shutil.which("prometheus")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the prometheus binary is required in CI (apt-get install prometheus)")
        pytest.skip("prometheus binary not installed (apt-get install prometheus)")
    (tmp / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s}\nscrape_configs:\n- job_name: sidecar\n"
        f"  metrics_path: /stats/prometheus\n  static_configs: [{{targets: ['{target}']}}]\n")
    port = free_port()
    return subprocess.Popen(
        [exe, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'db'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), port


def _query(url: str, expr: str, at: float) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/api/v1/query", params={"query": expr, "time": at}, timeout=10)
    assert r.status_code == 200, (expr, r.text)
    result: list[dict[str, Any]] = r.json()["data"]["result"]
    return result


def _close(got: float, want: float, what: str) -> None:
    assert abs(got - want) <= 0.3 * want, f"{what}: got {got:.2f}/s, sent {want:.2f}/s"


def test_kiali_grpc_queries_in_a_real_prometheus(harness: Harness, echo: tuple[int, Any],
                                                 tmp_path: Path) -> None:
    side_in = inbound(harness, echo[0], "v1")
    side_out = outbound(harness, {"v1": (side_in.listener_address("in")[1], 100)},
                        retries=None)
    proc, port = _prometheus(tmp_path, "{}:{}".format(*side_in.admin_address))
    try:
        wait_port(port, timeout=30)
        url = f"http://127.0.0.1:{port}"
        ok: list[float] = []  # when each call ended (wall clock, as Prometheus keeps time)
        failed: list[float] = []
        with grpc.insecure_channel(f"127.0.0.1:{side_out.listener_address('out')[1]}") as ch:
            s = stubs(ch)
            s["unary"](b"warm", timeout=20)
            # a scrape after the warm call, before the paced traffic: rate() has a start
            # (waited for: a Prometheus just started on a loaded host scrapes late)
            wait_ingested(url, "istio_requests_total", time.time())
            start = time.monotonic()
            for second in range(WINDOW + 3):  # paced: the window sees steady rates
                for i in range(OK_PER_S):
                    s["unary"](b"%d" % i, timeout=20)
                    ok.append(time.time())
                for _ in range(FAIL_PER_S):
                    with pytest.raises(grpc.RpcError):
                        s["fail"](b"", timeout=20)
                    failed.append(time.time())
                time.sleep(max(0.0, start + second + 1 - time.monotonic()))
        # read where two more scrapes have been (scrapes lag on a loaded host: waited for,
        # not slept for)
        at = time.time() + 2.5
        wait_ingested(url, "istio_requests_total", at)
        # what the window saw (a loaded host may not keep the pace)
        ok_rate = sum(1 for t in ok if t > at - WINDOW) / WINDOW
        fail_rate = sum(1 for t in failed if t > at - WINDOW) / WINDOW
        values = {"service": "echo", "__rate_interval": f"{WINDOW}s"}
        panels = {p.check: grafana.substitute(p.expr, values) for p in grafana.KIALI_GRPC.panels}
        assert len(panels) == len(grafana.KIALI_GRPC.panels)
        (errors,) = _query(url, panels["grpc_errors"], at)
        _close(float(errors["value"][1]), fail_rate, "error rate")
        by_status = {r["metric"].get("grpc_response_status", ""): float(r["value"][1])
                     for r in _query(url, panels["by_grpc_status"], at)}
        assert set(by_status) == {"0", "8"}, by_status
        _close(by_status["0"], ok_rate, "status 0")
        _close(by_status["8"], fail_rate, "status 8")
        (req,) = _query(url, panels["request_messages"], at)
        _close(float(req["value"][1]), ok_rate + fail_rate, "request messages")
        (resp,) = _query(url, panels["response_messages"], at)
        _close(float(resp["value"][1]), ok_rate, "response messages")
    finally:
        proc.terminate()
        proc.wait(10)
