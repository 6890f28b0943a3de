"""`tollway up` on the examples: traffic through the client port moves as applied."""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Callable

import pytest
from e2e_mesh import Mesh, Stream, wait_until

pytestmark = pytest.mark.slow


def test_blue_green_switch_under_load_has_no_failures(
    mesh_factory: Callable[[str], Mesh],
) -> None:
    mesh = mesh_factory("blue-green")
    root = mesh.root
    with Stream(mesh) as stream:
        stream.wait_for(lambda v: len(v) >= 20 and set(v) == {"blue"})
        for target, version in (("switch", "green"), ("03-blue-green.yaml", "blue"),
                                ("switch", "green")):
            done = mesh.cli("apply", "-f", str(root / target))
            assert done.returncode == 0, done.stdout + done.stderr
            stream.wait_for(lambda v, want=version: len(v) >= 20 and set(v[-20:]) == {want})
    assert stream.failures == []
    assert len(stream.versions) > 100


def _set_replicas(path: str, workload: str, n: int) -> None:
    with open(path) as f:
        text = f.read()
    pattern = rf"(name: {workload}\nspec:\n  replicas: )\d+"
    new, count = re.subn(pattern, rf"\g<1>{n}", text)
    assert count == 1
    with open(path, "w") as f:
        f.write(new)


def _ready_replicas(mesh: Mesh, workload: str) -> int:
    return sum(1 for m in mesh.members() if m["workload"] == workload and m["ready"]
               and not m["stopping"])


def test_scale_3_to_1_to_3_and_kill_a_replica_without_failures(
    mesh_factory: Callable[[str], Mesh],
) -> None:
    mesh = mesh_factory("canary")
    deployments = str(mesh.root / "01-canary-deployments.yaml")
    with Stream(mesh) as stream:
        stream.wait_for(lambda v: len(v) >= 20)
        for n in (1, 3):
            _set_replicas(deployments, "myapp-v1", n)
            applied = mesh.cli("apply", "-f", deployments)
            assert applied.returncode == 0, applied.stdout + applied.stderr
            wait_until(lambda n=n: _ready_replicas(mesh, "myapp-v1") == n
                       and len([m for m in mesh.members() if m["workload"] == "myapp-v1"]) == n,
                       what=f"{n} replicas of myapp-v1")
            stream.wait_for(lambda v: len(v) >= 30)
        victim = next(m for m in mesh.members() if m["workload"] == "myapp-v1")
        os.kill(victim["pid"], signal.SIGKILL)
        wait_until(lambda: any(m["name"] == victim["name"] and m["restarts"] == 1
                               and m["ready"] for m in mesh.members()),
                   what="the killed replica to restart")
        stream.wait_for(lambda v: len(v) >= 30)
    assert stream.failures == []


def test_control_plane_killed_and_restarted_while_traffic_flows_then_split_90_10(
    mesh_factory: Callable[[str], Mesh],
) -> None:
    mesh = mesh_factory("canary")
    with Stream(mesh) as stream:
        stream.wait_for(lambda v: len(v) >= 20)
        mesh.kill()
        stream.wait_for(lambda v: len(v) >= 50)  # proxies keep serving their last snapshot
        mesh.start()
        assert any("adopted 4 replicas" in line for line in mesh.lines)
        wait_until(lambda: len(mesh.proxies()) == 6
                   and all(p["status"] == "SYNCED" for p in mesh.proxies()),
                   what="every proxy to resync")
        stream.wait_for(lambda v: len(v) >= 50 and set(v) == {"v1", "v2"})
    assert stream.failures == []
    # seed 01 + 02: about 90% v1, 10% v2
    seen = mesh.versions(300)
    assert 0.04 <= seen["v2"] / 300 <= 0.18, seen
    status = mesh.cli("proxy-status", "-o", "json")
    assert status.returncode == 0
    rows = json.loads(status.stdout)
    assert {r["workload"] for r in rows} >= {"myapp-v1", "myapp-v2", "tollway-client"}
    assert all(r["status"] == "SYNCED" and r["acked"] == r["version"] for r in rows)
    assert all(r["inbound"] and r["admin"] for r in rows if r["kind"] == "sidecar")
    assert mesh.stop() == 0
