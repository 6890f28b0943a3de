"""The mesh's own Prometheus (`tollway.control.local.prometheus`).

Pure parts (which Prometheus, the config, the command line) without processes; the runner
against real processes: a stale one left by a killed `tollway up` is stopped (and only if
it is ours), a taken port falls back, the real `prometheus` binary discovers targets
through http_sd and is restarted when it dies, and a SIGKILLed `tollway up` takes its
Prometheus with it while a restarted one starts its own on the same port.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from ruamel.yaml import YAML

from tests.conftest import free_port
from tollway.control.local import prometheus as prom
from tollway.control.local.procs import pid_alive
from tollway.rollout.analysis.providers import ProviderError
from tollway.rollout.analysis.providers.prometheus import resolve_address

PROMETHEUS = shutil.which("prometheus")


def _need_binary() -> str:
    if PROMETHEUS is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the prometheus binary is required in CI (apt-get install prometheus)")
        pytest.skip("prometheus binary not installed (apt-get install prometheus)")
    return PROMETHEUS


# ---- pure -----------------------------------------------------------------------------


def test_decide_env_url_wins_and_runs_none() -> None:
    d = prom.decide(env_url=" http://10.1.2.3:9090/ ", port=9090, binary="/usr/bin/prometheus")
    assert (d.mode, d.url, d.note) == ("external", "http://10.1.2.3:9090", "")
    assert prom.decide(env_url="http://x:1", port=None, binary=None).mode == "external"


def test_decide_disabled_or_missing_binary() -> None:
    off = prom.decide(env_url=None, port=None, binary="/usr/bin/prometheus")
    assert (off.mode, off.url, off.note) == ("none", None, "")
    missing = prom.decide(env_url="", port=9090, binary=None)
    assert missing.mode == "none" and missing.url is None
    assert "`apt-get install prometheus`" in missing.note and "\n" not in missing.note
    run = prom.decide(env_url=None, port=9090, binary="/usr/bin/prometheus")
    assert (run.mode, run.binary) == ("run", "/usr/bin/prometheus")


def test_provider_error_without_a_prometheus_says_how_to_install_one() -> None:
    for given_address in (None, "http://prometheus.monitoring:9090"):
        with pytest.raises(ProviderError, match=r"apt-get install prometheus"):
            resolve_address(given_address, None)
    assert resolve_address("http://prometheus.monitoring:9090",
                           "http://127.0.0.1:9090") == "http://127.0.0.1:9090"


def _parse(text: str) -> Any:
    return YAML(typ="safe").load(StringIO(text))


@given(url=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60),
       scrape=st.integers(1, 30_000), refresh=st.integers(1, 30_000))
def test_render_config_round_trips_any_url_and_interval(url: str, scrape: int,
                                                         refresh: int) -> None:
    cfg = _parse(prom.render_config(url, scrape_interval=scrape / 1000,
                                    sd_refresh=refresh / 1000))
    g = cfg["global"]
    assert g["scrape_timeout"] == g["scrape_interval"]  # Prometheus refuses a longer one
    assert g["scrape_interval"] == (f"{scrape // 1000}s" if scrape % 1000 == 0
                                    else f"{scrape}ms")
    (job,) = cfg["scrape_configs"]
    (sd,) = job["http_sd_configs"]
    assert sd["url"] == url
    assert sd["refresh_interval"] == (f"{refresh // 1000}s" if refresh % 1000 == 0
                                      else f"{refresh}ms")


def test_render_config_defaults_are_short() -> None:
    cfg = _parse(prom.render_config("http://127.0.0.1:15010/v1/sd/prometheus"))
    assert cfg["global"]["scrape_interval"] == "1s"
    assert cfg["scrape_configs"][0]["http_sd_configs"][0]["refresh_interval"] == "2s"
    assert cfg["scrape_configs"][0]["job_name"] == prom.JOB


def test_argv_listens_on_loopback_and_dies_with_its_parent() -> None:
    plain = prom.argv("/usr/bin/prometheus", Path("/s/p.yml"), Path("/s/data"), 9191)
    assert plain[0] == "/usr/bin/prometheus"
    assert "--web.listen-address=127.0.0.1:9191" in plain
    assert "--storage.tsdb.path=/s/data" in plain and "--config.file=/s/p.yml" in plain
    wrapped = prom.argv("/usr/bin/prometheus", Path("/s/p.yml"), Path("/s/data"), 9191,
                        setpriv="/usr/bin/setpriv")
    assert wrapped == ["/usr/bin/setpriv", "--pdeathsig", "TERM", "--", *plain]


def test_prepare_for_up_without_binary_says_so_and_runs_none(tmp_path: Path) -> None:
    said: list[str] = []
    runner, url = asyncio.run(prom.prepare_for_up(
        tmp_path, 9090, "http://127.0.0.1:1/v1/sd/prometheus", said.append, env={},
        which=lambda _name: None))
    assert runner is None and url is None
    (line,) = said
    assert "apt-get install prometheus" in line and "ready" not in line


def test_prepare_for_up_with_env_url_uses_it(tmp_path: Path) -> None:
    said: list[str] = []
    runner, url = asyncio.run(prom.prepare_for_up(
        tmp_path, 9090, "http://127.0.0.1:1/v1/sd/prometheus", said.append,
        env={prom.ENV_URL: "http://127.0.0.1:9999"}, which=lambda _name: "/bin/true"))
    assert (runner, url, said) == (None, "http://127.0.0.1:9999", [])
    assert asyncio.run(prom.ready_suffix(None, url)) == "; prometheus http://127.0.0.1:9999"
    assert asyncio.run(prom.ready_suffix(None, None)) == ""


# ---- the runner, with real processes ---------------------------------------------------


def _fake(args: list[str]) -> subprocess.Popen[bytes]:
    """A process whose command line carries `args` (as a stale Prometheus's would)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", *args])


def test_prepare_stops_a_stale_prometheus_of_ours_only(tmp_path: Path) -> None:
    runner = prom.MeshPrometheus("/usr/bin/prometheus", tmp_path, free_port(), "http://x")
    runner.home.mkdir(parents=True)
    ours = _fake([f"--config.file={runner.config_path}"])
    other = _fake(["--config.file=/elsewhere/prometheus.yml"])
    try:
        runner.pid_path.write_text(json.dumps({"pid": other.pid}))
        asyncio.run(runner.prepare())
        assert other.poll() is None  # a recycled pid is never signalled
        runner.pid_path.write_text(json.dumps({"pid": ours.pid}))
        assert runner.recorded() == ours.pid
        asyncio.run(runner.prepare())
        assert ours.wait(5) == -signal.SIGTERM
        assert not runner.pid_path.exists()
    finally:
        for p in (ours, other):
            p.kill()
            p.wait()


def test_prepare_falls_back_to_a_free_port_and_says_so(tmp_path: Path) -> None:
    said: list[str] = []
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = int(busy.getsockname()[1])
        runner = prom.MeshPrometheus("/usr/bin/prometheus", tmp_path, taken, "http://x",
                                     echo=said.append)
        asyncio.run(runner.prepare())
    assert runner.port != taken and runner.url == f"http://127.0.0.1:{runner.port}"
    (line,) = said
    assert f"port {taken} is in use" in line and f"127.0.0.1:{runner.port}" in line
    assert "--prometheus-port" in line and "ready" not in line


class _SD:
    """A control plane's http_sd answer pointing at one tiny exporter."""

    def __init__(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/v1/sd/prometheus":
                    body = json.dumps([{"targets": [f"127.0.0.1:{outer.port}"], "labels": {
                        "proxy": "app-0.default", "__metrics_path__": "/stats/prometheus"}}])
                elif self.path == "/stats/prometheus":
                    body = "# TYPE istio_requests_total counter\nistio_requests_total 7\n"
                else:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                if self.path.startswith("/v1/"):  # Prometheus' http_sd insists on it
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def sd() -> Iterator[_SD]:
    s = _SD()
    yield s
    s.server.shutdown()
    s.server.server_close()


def _query(url: str, q: str) -> list[Any]:
    try:
        body = httpx.get(f"{url}/api/v1/query", params={"query": q}, timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return []
    return list(body.get("data", {}).get("result") or [])


async def _until(cond: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(cond):
            return True
        await asyncio.sleep(0.2)
    return False


@pytest.mark.prometheus
@pytest.mark.timeout(90)
def test_real_prometheus_scrapes_http_sd_targets_restarts_and_stops(
    tmp_path: Path, sd: _SD,
) -> None:
    binary = _need_binary()
    promtool = shutil.which("promtool")

    async def go() -> None:
        runner = prom.MeshPrometheus(binary, tmp_path, free_port(),
                                     f"http://127.0.0.1:{sd.port}/v1/sd/prometheus")
        await runner.prepare()
        assert await runner.start()
        try:
            assert await runner.wait_ready(30), runner.last_log_line()
            if promtool is not None:  # the Debian package ships it beside prometheus
                check = subprocess.run([promtool, "check", "config", str(runner.config_path)],
                                       capture_output=True, text=True, check=False)
                assert check.returncode == 0, check.stdout + check.stderr
            q = 'istio_requests_total{job="tollway-sidecars",proxy="app-0.default"}'
            assert await _until(lambda: _query(runner.url, q), 30)
            assert await prom.ready_suffix(runner, runner.url) == f"; prometheus {runner.url}"
            first = runner.proc.pid if runner.proc else 0
            os.kill(first, signal.SIGKILL)  # it crashes: the watcher starts it again
            assert await _until(lambda: runner.proc is not None and runner.proc.pid != first,
                                30)
            assert await runner.wait_ready(30), runner.last_log_line()
            assert json.loads(runner.pid_path.read_text())["pid"] == runner.proc.pid
        finally:
            pid = runner.proc.pid if runner.proc else 0
            await runner.stop()
        assert not pid_alive(pid) and not runner.pid_path.exists()

    asyncio.run(go())


MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        command: [PYTHON, -m, tollway.demo.app]
"""


class _UpProc:
    def __init__(self, root: Path, api: int, client: int, prom_port: int) -> None:
        env = {k: v for k, v in os.environ.items() if k != prom.ENV_URL}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tollway", "up", str(root), "--api-port", str(api),
             "--client-port", str(client), "--gateway-port-offset", str(free_port() - 80),
             "--prometheus-port", str(prom_port)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith("tollway: ready:"):
                self.ready.set()
        self.ready.set()

    def ready_line(self) -> str:
        assert self.ready.wait(90), "".join(self.lines)
        return next((x for x in self.lines if x.startswith("tollway: ready:")),
                    "".join(self.lines))


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
@pytest.mark.prometheus
@pytest.mark.timeout(150)
def test_killed_tollway_up_takes_its_prometheus_and_a_restart_runs_a_fresh_one(
    tmp_path: Path,
) -> None:
    _need_binary()
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) not installed")
    root = tmp_path / "mesh"
    root.mkdir()
    (root / "web.yaml").write_text(MANIFEST.replace("PYTHON", json.dumps(sys.executable)))
    api, client, port = free_port(), free_port(), free_port()
    first = _UpProc(root, api, client, port)
    second: _UpProc | None = None
    try:
        line = first.ready_line()
        assert line.rstrip().endswith(f"; prometheus http://127.0.0.1:{port}"), line
        assert line.startswith("tollway: ready: 1 replicas; client proxy ")  # text kept
        pid = int(json.loads((root / ".tollway/prometheus/pid.json").read_text())["pid"])
        first.proc.kill()  # SIGKILL: no shutdown code runs in `tollway up`
        first.proc.wait()
        assert _wait_gone(pid, 15), "Prometheus outlived a killed tollway up"
        second = _UpProc(root, api, client, port)
        line = second.ready_line()
        assert line.rstrip().endswith(f"; prometheus http://127.0.0.1:{port}"), line
        new_pid = int(json.loads((root / ".tollway/prometheus/pid.json").read_text())["pid"])
        assert new_pid != pid and pid_alive(new_pid)
        second.proc.send_signal(signal.SIGTERM)
        assert second.proc.wait(30) == 0
        assert not pid_alive(new_pid)
    finally:
        for up in (first, second):
            if up is not None and up.proc.poll() is None:
                up.proc.kill()
                up.proc.wait()
        _reap(root / ".tollway" / "members.json")


def _reap(members: Path) -> None:
    """Whatever a killed `tollway up` left running (only if the test failed midway)."""
    try:
        rows = json.loads(members.read_text())
    except (OSError, ValueError):
        return
    for row in rows.values():
        for key in ("sidecar_pid", "app_pid"):
            if row.get(key) and pid_alive(int(row[key])):
                os.kill(int(row[key]), signal.SIGKILL)
