"""`tollway up` guards: one `up` per state dir, busy ports said before anything is applied,
warnings printed (never an exit 1)."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES_DIR, free_port, reap_members
from tests.e2e.e2e_mesh import Mesh
from tollway.cli import up as up_mod
from tollway.config.findings import Finding, Severity
from tollway.control.store import ApplyResult

TOLLWAY = [sys.executable, "-m", "tollway"]


def _up(folder: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TOLLWAY, "up", str(folder), "--no-prometheus", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    folder = tmp_path / "canary"
    shutil.copytree(EXAMPLES_DIR / "canary", folder)
    return folder


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_second_up_on_the_same_folder_says_already_running_and_touches_nothing(
        canary: Path) -> None:
    mesh = Mesh(canary)
    mesh.start(timeout=240)
    try:
        before = {m["name"]: (m["pid"], m["restarts"]) for m in mesh.members()}
        t0 = time.monotonic()
        second = _up(canary, "--api-port", str(free_port()), "--client-port", str(free_port()))
        assert time.monotonic() - t0 < 30
        assert second.returncode == 1, second.stdout + second.stderr
        assert second.stderr.strip() == (
            f"tollway up: {canary} is already running (pid {mesh.proc.pid if mesh.proc else 0}"
            f", api {mesh.url}); stop it first, or pass --state-dir to run a second copy")
        assert second.stdout == ""
        time.sleep(1.0)
        after = {m["name"]: (m["pid"], m["restarts"]) for m in mesh.members()}
        assert after == before  # not one replica restarted
    finally:
        mesh.stop()
        reap_members(canary / ".tollway" / "members.json")
    # The lock dies with its holder: the folder can be brought up again at once.
    assert mesh.proc is not None and mesh.proc.returncode == 0


@pytest.mark.parametrize("which", ["--client-port", "--api-port"])
def test_a_busy_port_is_one_sentence_before_anything_is_applied(canary: Path,
                                                                which: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        ports = {"--client-port": str(free_port()), "--api-port": str(free_port()),
                 which: str(port)}
        proc = _up(canary, *[x for kv in ports.items() for x in kv])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    role = "the client proxy" if which == "--client-port" else "the control plane API"
    assert proc.stderr.strip() == (f"tollway up: port {port} ({role}) is in use; stop what "
                                   f"uses it or pass {which} with a free port")
    assert not (canary / ".tollway" / "members.json").exists()  # nothing started
    assert not (canary / ".tollway" / "logs").exists()


def test_warnings_are_printed_once_and_do_not_stop_up(tmp_path: Path) -> None:
    said: list[str] = []
    up = up_mod.Up(tmp_path, tmp_path / ".tollway", free_port(), free_port(), 8000,
                   said.append)
    warning = Finding("cm.yaml", 3, "ConfigMap", "settings", "kind",
                      "ConfigMap is not used in local mode; ignored here", Severity.WARNING)
    up._folder_result(ApplyResult(True, (warning,), (("ConfigMap", "default", "settings"),)))
    up._folder_result(ApplyResult(True, (warning,), ()))
    assert said == [warning.render(), f"applied from {tmp_path}: 1 changed, 0 deleted"]


def test_a_whole_file_finding_has_no_placeholders(tmp_path: Path) -> None:
    bad = tmp_path / "a.yaml"
    bad.write_text("kind: Service\nmetadata: {name: x\nspec: [\n")
    proc = subprocess.run([*TOLLWAY, "validate", str(tmp_path)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1
    first = proc.stdout.splitlines()[0]
    assert first.startswith(f"{bad}:3: error: YAML syntax error: "), first
    assert "-/-" not in proc.stdout and ": -:" not in proc.stdout


EXTRA = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {greeting: hello}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: myapp-v1}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: myapp-v1}
  minReplicas: 1
  maxReplicas: 5
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_up_runs_a_real_folder_with_kinds_local_mode_ignores(canary: Path) -> None:
    (canary / "extra.yaml").write_text(EXTRA)
    mesh = Mesh(canary)
    mesh.start(timeout=240)
    try:
        said = "".join(mesh.lines)
        for kind in ("ConfigMap/settings", "HorizontalPodAutoscaler/myapp-v1"):
            line = next((x for x in mesh.lines if kind in x), "")
            assert ": warning: " in line and "ignored here" in line, said
        assert mesh.versions(10).total() == 10
    finally:
        code = mesh.stop()
        reap_members(canary / ".tollway" / "members.json")
    assert code == 0
    assert sum(1 for x in mesh.lines if "ConfigMap/settings" in x) == 1  # said once


def _alive(pids: set[int]) -> set[int]:
    from tollway.control.local.procs import pid_alive

    return {p for p in pids if pid_alive(p)}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_second_signal_stops_up_at_once_with_nothing_left(canary: Path) -> None:
    mesh = Mesh(canary)
    mesh.start(timeout=240)
    assert mesh.proc is not None
    pids = {int(m["pid"]) for m in mesh.members() if m["pid"]}
    rows = json.loads((canary / ".tollway" / "members.json").read_text()).values()
    pids |= {int(r[k]) for r in rows for k in ("sidecar_pid", "app_pid") if r.get(k)}
    assert len(pids) >= 6
    try:
        mesh.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        mesh.proc.send_signal(signal.SIGTERM)
        code = mesh.proc.wait(15)
        assert code in (0, 143)  # 0 if the orderly stop won the race, else killed at once
        deadline = time.monotonic() + 5
        while _alive(pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(pids)  # checked before the clean-up below could hide it
    finally:
        reap_members(canary / ".tollway" / "members.json")


def test_a_killed_runs_gateway_on_another_offset_is_stopped_not_left_running(
        tmp_path: Path) -> None:
    """A restarted `tollway up` adopts the killed run's client and gateway proxies when
    their ports are the ones it was given; one on other ports (here the gateway, another
    --gateway-port-offset: tests/control/test_local_prometheus.py's restart) is stopped,
    as replicas the plan dropped are. It used to be left serving for good, with no
    members.json naming it (one orphan `istio-ingressgateway` sidecar per full test run)."""
    from tollway.control import push
    from tollway.control.local.procs import PortAllocator, pid_alive
    from tollway.control.local.supervisor import Supervisor
    from tollway.control.plane import ControlPlane

    sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
    strays = {name: subprocess.Popen(sleeper)
              for name in (up_mod.GATEWAY_NODE.name, up_mod.CLIENT_NODE.name)}
    state = tmp_path / ".tollway"
    state.mkdir()
    client_port = free_port()
    rows = {
        up_mod.GATEWAY_NODE.name: {"ports": {"gateway_offset": 1000, "admin": free_port()},
                                   "kind": "gateway", "sidecar_pid": strays[
                                       up_mod.GATEWAY_NODE.name].pid, "app_pid": None},
        up_mod.CLIENT_NODE.name: {"ports": {"outbound": client_port, "admin": free_port()},
                                  "kind": "client", "sidecar_pid": strays[
                                      up_mod.CLIENT_NODE.name].pid, "app_pid": None},
    }
    (state / "members.json").write_text(json.dumps(rows))

    async def main() -> None:
        up = up_mod.Up(tmp_path, state, free_port(), client_port, 2000, lambda _l: None)
        plane = ControlPlane(up.store, debounce=push.Debouncer(0.005, 0.02))
        up.supervisor = Supervisor(plane, control_url="http://127.0.0.1:9", state_dir=state,
                                   workdir=tmp_path, sidecar_argv=lambda _e, _u: sleeper)
        up._members(PortAllocator([client_port]))
        try:
            gateway, client = (up.supervisor.members[n.name]
                               for n in (up_mod.GATEWAY_NODE, up_mod.CLIENT_NODE))
            assert client.sidecar is not None and client.sidecar.adopted  # same port: kept
            assert await asyncio.to_thread(strays[up_mod.GATEWAY_NODE.name].wait, 10) == \
                -signal.SIGTERM  # the old offset's gateway: stopped
            assert pid_alive(strays[up_mod.CLIENT_NODE.name].pid)
            assert gateway.sidecar is None or not gateway.sidecar.adopted
        finally:
            await up.supervisor.stop_all()
            plane.close()

    try:
        asyncio.run(main())
    finally:
        for proc in strays.values():
            proc.kill()
            proc.wait()
