"""The habits istioctl, kubectl, Argo and hey users bring, each with its output and exit code."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from ruamel.yaml import YAML

from tests.conftest import EXAMPLES_DIR, reap_members, start_demo_app
from tests.e2e.e2e_mesh import Mesh
from tollway.cli import helpstyle
from tollway.cli.main import app
from tollway.cli.rollout import render

TOLLWAY = [sys.executable, "-m", "tollway"]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TOLLWAY, *args], capture_output=True, text=True, timeout=60,
                          env=env)


# ---------------------------------------------------------------- no mesh needed

def test_version_prints_the_package_version() -> None:
    proc = _run("--version")
    assert proc.returncode == 0
    assert proc.stdout == f"tollway {version('tollway')}\n"


def test_shell_completion_is_there() -> None:
    # The shell is named, not detected: under `make` the parent process is sh, which
    # typer's detection (shellingham) finds first and does not support.
    env = {**os.environ, "SHELL": "/bin/bash", "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    shown = _run("--show-completion", "bash", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "_tollway_completion" in shown.stdout and "_TOLLWAY_COMPLETE" in shown.stdout
    asked = _run(env={**os.environ, "_TOLLWAY_COMPLETE": "complete_bash",
                      "COMP_WORDS": "tollway proxy-", "COMP_CWORD": "1"})
    assert asked.returncode == 0
    assert set(asked.stdout.split()) == {"proxy-config", "proxy-status"}
    kinds = _run(env={**os.environ, "_TOLLWAY_COMPLETE": "complete_bash",
                      "COMP_WORDS": "tollway get dest", "COMP_CWORD": "2"})
    assert kinds.stdout.split() == ["destinationrules"]


def _all_command_paths(command: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield prefix
    for name, sub in (getattr(command, "commands", None) or {}).items():
        yield from _all_command_paths(sub, (*prefix, name))


def test_help_boxes_name_values_never_python_types() -> None:
    command = helpstyle.tidy(typer.main.get_command(app))
    paths = list(_all_command_paths(command))
    assert len(paths) > 20
    for path in paths:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            command.main(args=[*path, "--help"], prog_name="tollway", standalone_mode=False)
        text = out.getvalue()
        assert "Usage: tollway" in text, path
        for python_type in ("<int", "<str>", "<bool>", "<float>", "<path>", "<list"):
            assert python_type not in text, f"tollway {' '.join(path)} --help:\n{text}"
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        command.main(args=["up", "--help"], prog_name="tollway", standalone_mode=False)
    assert "--api-port" in out.getvalue() and "PORT" in out.getvalue()


def test_loadtest_help_lists_heys_flags_with_what_they_do() -> None:
    proc = _run("loadtest", "--help", env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0
    for flag, words in (("-n", "Number of requests"), ("-c", "concurrently"),
                        ("-q", "Rate limit"), ("-z", "10s"), ("-m", "HTTP method"),
                        ("-H", "header"), ("-d", "body"), ("-T", "Content-Type"),
                        ("-t", "Timeout")):
        line = next((x for x in proc.stdout.splitlines()
                     if x.startswith("│") and f" {flag} " in x), "")
        assert words in line, (flag, proc.stdout)


def _wait_connected(port: int, timeout: float) -> None:
    """Until some process holds an established TCP connection to 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = row.split()
            if fields[2].endswith(f":{port:04X}") and fields[3] == "01":
                return
        time.sleep(0.2)
    raise AssertionError(f"nothing connected to port {port} within {timeout}s")


def test_loadtest_ctrl_c_prints_the_summary_so_far() -> None:
    demo = start_demo_app()
    try:
        proc = subprocess.Popen([*TOLLWAY, "loadtest", "-z", "120s", "-c", "2", "-q", "20",
                                 f"http://127.0.0.1:{demo.port}/"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_connected(demo.port, timeout=60)  # the load is running (a loaded host is slow)
        # a connection is not an answer: wait until the app served 3 requests, so one of
        # the 2 sequential workers sent its second, i.e. counted its first answer (a fixed
        # second after connecting could end the run with nothing counted)
        served = 0
        deadline = time.monotonic() + 60
        while served < 3:
            assert time.monotonic() < deadline, f"the app served {served} requests in 60 s"
            time.sleep(0.1)
            served = httpx.get(f"http://127.0.0.1:{demo.port}/__demo/stats",
                               timeout=10).json()["total"]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        demo.stop()
    assert proc.returncode == 130, err
    assert "(stopped by Ctrl-C)" in out, out + err
    sent = int(out.split(" requests in ")[0])
    assert sent > 0 and "status [200]" in out


def test_rollout_status_never_prints_none_and_counts_steps_from_one() -> None:
    obj = {"kind": "Rollout", "metadata": {"namespace": "default", "name": "web"},
           "status": {
               "phase": "Paused", "currentStepIndex": 1,
               "steps": [{"index": 0, "step": "setWeight: 20", "current": False},
                         {"index": 1, "step": "analysis: judge", "current": True},
                         {"index": 2, "step": "setWeight: 100", "current": False}],
               "analysisRuns": [{"name": "web-1", "phase": "Running", "metricResults": [
                   {"name": "judge", "phase": "Running", "successful": 0, "failed": 0,
                    "error": 1, "measurements": [
                        {"value": None, "phase": "Error",
                         "message": "no data from Prometheus"}]}]}],
               "decisions": [{"actor": "controller", "phase": "Paused", "step": 1,
                              "weight": 20, "reason": "analysis running"}]}}
    text = render(obj)
    assert "None" not in text, text
    assert "[Error]" in text and "last: no data from Prometheus" in text
    assert "  step: 2/3" in text
    assert "->  2. analysis: judge" in text and "    1. setWeight: 20" in text
    assert "Paused step 2 weight 20%" in text


# ---------------------------------------------------------------- against a running mesh

@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    folder = tmp_path_factory.mktemp("habits") / "canary"
    shutil.copytree(EXAMPLES_DIR / "canary", folder)
    m = Mesh(folder)
    m.start(timeout=240)
    try:
        yield m
    finally:
        m.stop()
        reap_members(folder / ".tollway" / "members.json")


@pytest.mark.slow
def test_get_of_an_unknown_kind_is_kubectls_error(mesh: Mesh) -> None:
    proc = mesh.cli("get", "foo")
    assert proc.returncode == 1
    assert proc.stderr == 'error: the server doesn\'t have a resource type "foo"\n'
    missing = mesh.cli("get", "dr", "nope")
    assert missing.returncode == 1
    assert missing.stderr == ('Error from server (NotFound): destinationrules "nope" '
                              "not found\n")
    empty = mesh.cli("get", "pa")
    assert empty.returncode == 0 and empty.stderr == "No resources found in default namespace.\n"


@pytest.mark.slow
def test_get_wide_name_and_all_namespaces(mesh: Mesh) -> None:
    plain = mesh.cli("get", "deploy")
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.splitlines()[0].split() == ["NAME", "GENERATION", "VERSION", "SOURCE"]
    assert plain.stdout.splitlines()[1].split()[-1] == "folder"  # where it came from
    wide = mesh.cli("get", "deploy", "-o", "wide")
    assert wide.stdout.splitlines()[0].split()[:7] == ["NAME", "GENERATION", "VERSION",
                                                       "SOURCE", "KIND", "API", "VERSION"]
    assert "apps/v1" in wide.stdout
    names = mesh.cli("get", "deployments", "-o", "name")
    assert names.stdout == "deployment.apps/myapp-v1\ndeployment.apps/myapp-v2\n"
    everywhere = mesh.cli("get", "vs", "-A")
    assert everywhere.stdout.splitlines()[0].split()[0] == "NAMESPACE"
    assert mesh.cli("get", "vs", "-n", "elsewhere").stdout == ""
    bad = mesh.cli("get", "vs", "-o", "table")
    assert bad.returncode == 2 and "yaml, json, wide, name" in bad.stderr


@pytest.mark.slow
def test_describe_shows_metadata_spec_and_status(mesh: Mesh) -> None:
    proc = mesh.cli("describe", "virtualservice", "myapp")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "Name:         myapp" and lines[1] == "Namespace:    default"
    assert "Kind:         VirtualService" in lines and "Spec:" in lines
    assert "      weight: 90" in lines
    assert mesh.cli("describe", "vs", "nope").returncode == 1


@pytest.mark.slow
def test_proxy_status_as_yaml(mesh: Mesh) -> None:
    proc = mesh.cli("proxy-status", "-o", "yaml")
    assert proc.returncode == 0, proc.stderr
    rows = YAML(typ="safe").load(proc.stdout)
    assert {r["name"] for r in rows} == {r["name"] for r in mesh.proxies()}
    assert {r["status"] for r in rows} == {"SYNCED"}


@pytest.mark.slow
def test_proxy_config_reads_the_proxys_own_config(mesh: Mesh) -> None:
    clusters = mesh.cli("proxy-config", "cluster", "tollway-client")
    assert clusters.returncode == 0, clusters.stderr
    assert clusters.stdout.splitlines()[0].split() == ["SERVICE", "FQDN", "PORT", "SUBSET",
                                                       "DIRECTION", "ENDPOINTS"]
    subsets = {tuple(line.split()[2:5]) for line in clusters.stdout.splitlines()[1:]}
    assert {("v1", "outbound", "3"), ("v2", "outbound", "1")} <= subsets
    endpoints = mesh.cli("proxy-config", "endpoint", "tollway-client")
    rows = [line.split() for line in endpoints.stdout.splitlines()[1:]]
    assert len(rows) == 4 and {r[1] for r in rows} == {"HEALTHY"}
    assert {r[2] for r in rows} == {"myapp-v1", "myapp-v2"}
    routes = mesh.cli("proxy-config", "routes", "tollway-client")
    assert "default/myapp" in routes.stdout
    replica = next(p["name"] for p in mesh.proxies() if p["workload"] == "myapp-v2")
    listeners = mesh.cli("proxy-config", "listener", replica, "-o", "json")
    kinds = {x["kind"] for x in json.loads(listeners.stdout)}
    assert kinds == {"inbound", "outbound"}
    nobody = mesh.cli("proxy-config", "cluster", "nobody")
    assert nobody.returncode == 1 and "no proxy named nobody" in nobody.stderr
    wrong = mesh.cli("proxy-config", "secrets", "tollway-client")
    assert wrong.returncode == 2 and "cluster, listener, route, endpoint" in wrong.stderr
