"""Seeds 14 + 15 end to end against the Prometheus that `tollway up` runs itself.

`tollway up` starts a real `prometheus` (Debian package) that scrapes every sidecar through
the control plane's HTTP service discovery; the Rollout's analysis sends seed 15's two
PromQL queries, exactly as written, to it (the first names `prometheus.monitoring:9090`,
the second no address: both map to the mesh's Prometheus). No TOLLWAY_PROMETHEUS_URL.

What the test copy changes, and why:
- durations: 5m/10m pauses and the 1m interval → 2s; replicas 10 → 2 (one machine).
- the 5%-errors case only: the first `setWeight` 5 → 50. Seed 15's success-rate query is
  service-wide (`destination_service` covers stable *and* canary), so it sees
  w × (canary error rate): at 5% weight a canary failing 5% of requests moves it to
  ~99.75%, which passes `>= 0.99` — arithmetic, not a bug (Argo on Kubernetes does the
  same; `tollway analyze` says so). At 50% the service-wide rate goes to ~97.5%.
- `rate(...[5m])` in a test shorter than 5 minutes spans the whole history, stable-only
  traffic before the canary included, so the query reads the cumulative ratio since the
  scraping began. The metric has an interval and no count, so (as in Argo) it measures
  every 2 s until failures exceed failureLimit: with T0 seconds of stable-only traffic, the
  ratio drops below 0.99 once the canary has had ~2/3·T0 seconds at 50%, then four failed
  measurements take 8 s more. The test keeps T0 short (load starts once the mesh is up).
- the healthy case keeps seed 14's weights. Seed 15's success-rate metric has an interval
  and no count, so each inline analysis step runs until it fails or is promoted (Argo's
  semantics, docs/rollouts.md): the test promotes through the API once the step has shown
  passing measurements of both metrics, and again at the manual gate that
  `autoPromotionEnabled: false` puts before the final step.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import EXAMPLES_DIR, free_port
from tollway.control.local.procs import pid_alive

pytestmark = [pytest.mark.slow, pytest.mark.prometheus]
NS, NAME = "payments", "payment-service"
SERVICE = f"{NAME}.{NS}.svc.cluster.local"


def _copy_example(dst: Path, *, first_weight: int = 5) -> None:
    for src in (EXAMPLES_DIR / "rollout").glob("*.yaml"):
        text = src.read_text()
        text = text.replace("replicas: 10", "replicas: 2")
        text = text.replace("{duration: 5m}", "{duration: 2s}")
        text = text.replace("{duration: 10m}", "{duration: 2s}")
        text = text.replace("interval: 1m", "interval: 2s")
        text = text.replace("- setWeight: 5 #", f"- setWeight: {first_weight} #")
        text = text.replace('command: ["tollway", "demo-app"]',
                            f"command: [{json.dumps(sys.executable)}, -m, tollway.demo.app]")
        (dst / src.name).write_text(text)
    if first_weight != 5:
        assert f"setWeight: {first_weight} #" in (dst / "14-argo-rollout.yaml").read_text()


class Up:
    """`tollway up` as a user runs it, reading its output for the ready line."""

    def __init__(self, root: Path) -> None:
        self.api = free_port()
        self.client = free_port()
        self.prom_port = free_port()
        self.url = f"http://127.0.0.1:{self.api}"
        env = {k: v for k, v in os.environ.items() if k != "TOLLWAY_PROMETHEUS_URL"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tollway", "up", str(root), "--api-port", str(self.api),
             "--client-port", str(self.client), "--gateway-port-offset",
             str(free_port() - 80), "--prometheus-port", str(self.prom_port)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._pump, daemon=True).start()
        self.state = root / ".tollway"

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith("tollway: ready:"):
                self.ready.set()
        self.ready.set()

    def prometheus_url(self) -> str:
        """Read from the ready line, as a user would."""
        if not self.ready.wait(120) or self.proc.poll() is not None:
            raise AssertionError("tollway up did not get ready:\n" + "".join(self.lines))
        line = next(x for x in self.lines if x.startswith("tollway: ready:"))
        assert line.rstrip().endswith(f"; prometheus http://127.0.0.1:{self.prom_port}"), line
        return f"http://127.0.0.1:{self.prom_port}"

    def prometheus_pid(self) -> int:
        return int(json.loads((self.state / "prometheus" / "pid.json").read_text())["pid"])

    def status(self) -> dict[str, Any]:
        try:
            r = httpx.get(f"{self.url}/v1/rollouts/{NS}/{NAME}", timeout=5)
        except httpx.HTTPError:
            return {}
        return dict(r.json().get("status") or {}) if r.status_code == 200 else {}

    def client_sends_only_to(self, workload: str) -> bool:
        """The client proxy's applied config (its own /config_dump) sends every request for
        the service to `workload`'s endpoints alone. The rollout's status is recorded as the
        controller applies a change, before the push carries it to the proxies."""
        try:
            rows = httpx.get(f"{self.url}/v1/proxies", timeout=5).json()
            admin = next(r["admin"] for r in rows if r["workload"] == "tollway-client")
            cfg = httpx.get(f"http://{admin}/config_dump", timeout=10).json()["config"] or {}
        except httpx.HTTPError:
            return False
        clusters = {c["name"]: c for c in cfg.get("clusters") or ()}
        used = [wc for rt in cfg.get("route_tables") or () for vh in rt.get("virtual_hosts") or ()
                for r in vh.get("routes") or () for wc in r.get("clusters") or ()
                if wc.get("host") == SERVICE and wc.get("weight", 100) > 0]  # (defaults left out)
        workloads = {e.get("workload", "") for wc in used
                     for e in clusters.get(wc["cluster"], {}).get("endpoints") or ()}
        return bool(used) and workloads == {workload}

    def command(self, action: str, body: dict[str, Any]) -> None:
        token = (self.state / "admin-token").read_text().strip()
        r = httpx.post(f"{self.url}/v1/rollouts/{NS}/{NAME}/{action}",
                       json={"actor": "test", **body}, timeout=10,
                       headers={"Authorization": f"Bearer {token}"})
        assert r.status_code in (200, 202), r.text  # 202: queued for the controller

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def _wait(cond: Callable[[], Any], what: str, timeout: float, up: Up | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.5)
    extra = f"\nstatus: {json.dumps(up.status(), indent=1)[-4000:]}" if up else ""
    raise AssertionError(f"timed out waiting for {what}{extra}")


def _mesh(tmp_path: Path, first_weight: int) -> Iterator[tuple[Up, str]]:
    if shutil.which("prometheus") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the prometheus binary is required in CI (apt-get install prometheus)")
        pytest.skip("prometheus binary not installed (apt-get install prometheus)")
    root = tmp_path / "mesh"
    root.mkdir()
    _copy_example(root, first_weight=first_weight)
    up = Up(root)
    try:
        yield up, up.prometheus_url()
    finally:
        up.stop()


@pytest.fixture
def healthy_mesh(tmp_path: Path) -> Iterator[tuple[Up, str]]:
    yield from _mesh(tmp_path, 5)


@pytest.fixture
def mesh_at_50(tmp_path: Path) -> Iterator[tuple[Up, str]]:
    yield from _mesh(tmp_path, 50)


class Load:
    """One client through the mesh's client proxy: (status, x-demo-version) per request."""

    def __init__(self, client_port: int) -> None:
        self.stop = threading.Event()
        self.seen: list[tuple[int, str]] = []
        self.thread = threading.Thread(target=self._run, args=(client_port,), daemon=True)
        self.thread.start()

    def _run(self, port: int) -> None:
        with httpx.Client(proxy=f"http://127.0.0.1:{port}", timeout=5) as c:
            while not self.stop.is_set():
                try:
                    r = c.get(f"http://{NAME}.{NS}:8080/")
                    self.seen.append((r.status_code, r.headers.get("x-demo-version", "")))
                except httpx.HTTPError:
                    self.seen.append((0, ""))
                time.sleep(0.02)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


def _query(prom_url: str, promql: str) -> list[dict[str, Any]]:
    try:
        body = httpx.get(f"{prom_url}/api/v1/query", params={"query": promql}, timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return []
    return list(body.get("data", {}).get("result") or [])


def _scraped(prom_url: str) -> bool:
    """Prometheus holds the sidecars' istio_requests_total for the service (via HTTP SD)."""
    return bool(_query(prom_url, f'sum(istio_requests_total{{destination_service="{SERVICE}"}})'))


def _metric(st: dict[str, Any], step: int, name: str) -> dict[str, Any]:
    """The named metric of the analysis run an inline step started ({} if none yet)."""
    for run in st.get("analysisRuns") or []:
        if run["name"].rsplit("-", 2)[-2] == str(step):  # NAME-REV-STEP-N
            for m in run["metricResults"]:
                if m["name"] == name:
                    return dict(m)
    return {}


def _passed(up: Up, step: int) -> bool:
    st = up.status()
    if st.get("currentStepIndex") != step:
        return False
    rate, p99 = _metric(st, step, "success-rate"), _metric(st, step, "p99-latency")
    return rate.get("successful", 0) >= 2 and p99.get("phase") == "Successful"


@pytest.mark.timeout(420)  # above the sum of its own waits: a slow step names itself
def test_seed14_15_healthy_canary_completes_every_step_through_the_manual_gate(
    healthy_mesh: tuple[Up, str],
) -> None:
    up, prom_url = healthy_mesh
    _wait(lambda: up.status().get("phase") == "Healthy", "the rollout to be Healthy", 60, up)
    stable = up.status()["stableRS"]
    load = Load(up.client)
    try:
        _wait(lambda: _scraped(prom_url), "Prometheus to scrape the sidecars via HTTP SD", 60)
        up.command("set-image", {"image": "payment-service:v2.2.0", "env": {"VERSION": "v2"}})
        steps = [s["step"] for s in up.status()["steps"]]
        analysis = [i for i, s in enumerate(steps) if s.startswith("analysis")]
        assert analysis == [2, 5], steps
        for i in analysis:  # each runs until promoted: promote once both metrics passed
            _wait(lambda i=i: _passed(up, i), f"passing measurements at step {i}", 60, up)
            st = up.status()
            weight = st["canary"]["weights"]["canary"]["weight"]
            assert weight == {2: 5, 5: 20}[i]
            rate = _metric(st, i, "success-rate")
            assert rate["failed"] == 0 and rate["phase"] == "Running"
            values = [m["value"] for m in rate["measurements"]]
            assert all(isinstance(v, list) and v and v[0] >= 0.99 for v in values), values
            up.command("promote", {})
        _wait(lambda: any(p.get("reason") == "CanaryPauseStep"  # Argo's name: a pause: {}
                          for p in up.status().get("pauseConditions") or [])
              and up.status().get("currentStepIndex") == len(steps) - 2,
              "the manual gate before the final step", 60, up)
        st = up.status()
        assert st["phase"] == "Paused" and st["canary"]["weights"]["canary"]["weight"] == 50
        assert steps[st["currentStepIndex"]].startswith("manual gate")
        assert steps[st["currentStepIndex"] + 1:] == ["setWeight: 100"]
        up.command("promote", {})
        _wait(lambda: up.status().get("phase") == "Healthy", "the rollout to complete", 60, up)
        st = up.status()
        assert st["stableRS"] == st["currentPodHash"] != stable
        assert st["currentStepIndex"] == len(steps) and st["abort"] is False
        v2 = f"{NAME}-{st['stableRS']}"
        _wait(lambda: up.client_sends_only_to(v2), "the client proxy to send all to v2", 60)
        n = len(load.seen)
        _wait(lambda: len(load.seen) > n + 30, "traffic after the rollout", 60)
        after = load.seen[n + 1:]  # the one request in flight may predate the push
        assert {v for _, v in after} == {"v2"}, sorted(set(after))
    finally:
        load.close()
    prom_pid = up.prometheus_pid()
    assert pid_alive(prom_pid)
    assert up.stop() == 0
    assert not pid_alive(prom_pid)  # the mesh's Prometheus does not outlive `tollway up`


@pytest.mark.timeout(420)  # above the sum of its own waits: a slow step names itself
def test_seed14_15_canary_with_5_percent_errors_aborts_on_fourth_failed_measurement(
    mesh_at_50: tuple[Up, str],
) -> None:
    up, prom_url = mesh_at_50
    _wait(lambda: up.status().get("phase") == "Healthy", "the rollout to be Healthy", 60, up)
    load = Load(up.client)
    try:
        _wait(lambda: _scraped(prom_url), "Prometheus to scrape the sidecars via HTTP SD", 60)
        up.command("set-image", {"image": "payment-service:v2.2.0",
                                 "env": {"VERSION": "v2", "ERROR_RATE": "0.05"}})
        _wait(lambda: up.status().get("phase") == "Degraded", "the abort", 120, up)
        st = up.status()
        assert st["abort"] is True
        assert st["canary"]["weights"]["canary"]["weight"] == 0
        assert st["currentStepIndex"] == 0  # Argo's canary.go: back to 0 on abort
        result = _metric(st, 2, "success-rate")
        assert result["failed"] == 4 and result["phase"] == "Failed"
        assert "4 failed measurements exceed failureLimit 3" in result["message"]
        values = [m["value"][0] for m in result["measurements"]]
        failed = [m["value"][0] for m in result["measurements"] if m["phase"] == "Failed"]
        assert len(failed) == 4 and all(0.95 < v < 0.99 for v in failed), values
        assert values[-1] in failed
        canary = [c for c, v in load.seen if v == "v2"]
        assert canary and 0 < canary.count(500) < len(canary) / 2  # ~5%, not everything
        # what `tollway analyze` suggests: the canary's own series, by destination_workload
        errors = _query(prom_url, "sum by (destination_workload) (istio_requests_total{"
                        f'destination_service="{SERVICE}",response_code=~"5.*"}})')
        assert {r["metric"]["destination_workload"] for r in errors} == {
            f"{NAME}-{st['currentPodHash']}"}
        # Degraded is recorded as the weight 0 is applied, before the push reaches the
        # client proxy: what it applied is waited for before the traffic is read
        v1 = f"{NAME}-{st['stableRS']}"
        _wait(lambda: up.client_sends_only_to(v1), "the client proxy to send all to v1", 60)
        n = len(load.seen)
        _wait(lambda: len(load.seen) > n + 50, "traffic after the abort", 60)
        after = load.seen[n + 1:]  # the one request in flight may predate the push
        assert all(s == (200, "v1") for s in after), sorted(set(after))  # all on stable
    finally:
        load.close()
