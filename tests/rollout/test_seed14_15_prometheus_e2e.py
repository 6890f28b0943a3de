"""Seeds 14 + 15 end to end: `tollway up`, a real Prometheus scraping the sidecars through
the control plane's HTTP service discovery, seed 15's PromQL exactly as written. Only the
durations are shortened (5m/10m pauses and the 1m interval → 2s) and replicas 10 → 2.

Seed 15's query is service-wide (destination_service covers stable and canary), so at 5%
weight only a canary answering (nearly) every request with a 5xx moves it below 99%: this
test uses a canary answering 100% errors and expects Argo's semantics — the 4th failed
measurement (failures exceed failureLimit 3) aborts, traffic back to stable at once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import EXAMPLES_DIR, free_port, wait_port

pytestmark = [pytest.mark.slow, pytest.mark.prometheus]
NS, NAME = "payments", "payment-service"


def _copy_example(dst: Path) -> None:
    for src in (EXAMPLES_DIR / "rollout").glob("*.yaml"):
        text = src.read_text()
        text = text.replace("replicas: 10", "replicas: 2")
        text = text.replace("{duration: 5m}", "{duration: 2s}")
        text = text.replace("{duration: 10m}", "{duration: 2s}")
        text = text.replace("interval: 1m", "interval: 2s")
        text = text.replace('command: ["tollway", "demo-app"]',
                            f"command: [{json.dumps(sys.executable)}, -m, tollway.demo.app]")
        (dst / src.name).write_text(text)


class Up:
    def __init__(self, root: Path, prom_url: str) -> None:
        self.api = free_port()
        self.client = free_port()
        self.url = f"http://127.0.0.1:{self.api}"
        env = dict(os.environ, TOLLWAY_PROMETHEUS_URL=prom_url)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tollway", "up", str(root), "--api-port", str(self.api),
             "--client-port", str(self.client), "--gateway-port-offset",
             str(free_port() - 80)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)

    def status(self) -> dict[str, Any]:
        try:
            r = httpx.get(f"{self.url}/v1/rollouts/{NS}/{NAME}", timeout=5)
        except httpx.HTTPError:
            return {}
        return dict(r.json().get("status") or {}) if r.status_code == 200 else {}

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _wait(cond: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[tuple[Up, str]]:
    exe = shutil.which("prometheus")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the prometheus binary is required in CI (apt-get install prometheus)")
        pytest.skip("prometheus binary not installed")
    root = tmp_path / "mesh"
    root.mkdir()
    _copy_example(root)
    prom_port = free_port()
    prom_url = f"http://127.0.0.1:{prom_port}"
    up = Up(root, prom_url)
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n- job_name: sidecars\n  http_sd_configs:\n"
        f"  - url: {up.url}/v1/sd/prometheus\n    refresh_interval: 1s\n")
    prom = subprocess.Popen(
        [exe, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(prom_port, timeout=30)
        yield up, prom_url
    finally:
        up.stop()
        prom.terminate()
        prom.wait(10)


class Load:
    def __init__(self, client_port: int) -> None:
        self.stop = threading.Event()
        self.codes: list[int] = []
        self.thread = threading.Thread(target=self._run, args=(client_port,), daemon=True)
        self.thread.start()

    def _run(self, port: int) -> None:
        with httpx.Client(proxy=f"http://127.0.0.1:{port}", timeout=5) as c:
            while not self.stop.is_set():
                try:
                    self.codes.append(c.get(f"http://{NAME}.{NS}:8080/").status_code)
                except httpx.HTTPError:
                    self.codes.append(0)
                time.sleep(0.02)


@pytest.mark.timeout(240)
def test_seed14_15_bad_canary_aborts_on_fourth_failed_prometheus_measurement(
    mesh: tuple[Up, str],
) -> None:
    up, prom_url = mesh
    _wait(lambda: up.status().get("phase") == "Healthy", "the rollout to be Healthy", 120)
    load = Load(up.client)
    try:
        _wait(lambda: len(load.codes) > 50, "traffic through the mesh", 30)
        query = 'sum(istio_requests_total{destination_service="%s.%s.svc.cluster.local"})'
        _wait(lambda: httpx.get(f"{prom_url}/api/v1/query",
                                params={"query": query % (NAME, NS)}).json()["data"]["result"],
              "Prometheus to scrape the sidecars via HTTP SD", 60)
        r = httpx.post(f"{up.url}/v1/rollouts/{NS}/{NAME}/set-image", json={
            "image": "payment-service:v2.2.0", "env": {"VERSION": "v2", "ERROR_RATE": "1"},
            "actor": "test"}, timeout=10)
        assert r.status_code == 200, r.text
        _wait(lambda: up.status().get("phase") == "Degraded", "the abort", 150)
        st = up.status()
        assert st["abort"] is True
        assert st["canary"]["weights"]["canary"]["weight"] == 0
        run = st["analysisRuns"][-1]
        result = next(m for m in run["metricResults"] if m["name"] == "success-rate")
        assert result["failed"] == 4 and result["phase"] == "Failed"
        assert "4 failed measurements exceed failureLimit 3" in result["message"]
        values = [m["value"] for m in result["measurements"]]
        assert all(isinstance(v, list) and v and v[0] < 0.99 for v in values[-4:])
        n = len(load.codes)
        time.sleep(3)
        after = load.codes[n:]
        assert after and all(c == 200 for c in after), after  # all back on stable
    finally:
        load.stop.set()
