"""A Telemetry resource applied to a running `tollway up` takes effect live, for its
namespace only: sampling goes to 0% (a trace the `shop` sidecar starts is no longer
sampled, `bank`'s still is) and access logs go on (the `shop` sidecar writes Envoy's text
line for each request, `bank`'s writes none); deleting it turns both back."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import httpx
from e2e_mesh import Mesh, wait_until

from tests.conftest import reap_members

WORKLOADS = """
apiVersion: v1
kind: Namespace
metadata: {name: %(ns)s}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: %(app)s, namespace: %(ns)s}
spec:
  replicas: 1
  selector: {matchLabels: {app: %(app)s}}
  template:
    metadata: {labels: {app: %(app)s, version: v1}}
    spec:
      containers:
      - name: %(app)s
        image: demo
        command: ["tollway", "demo-app"]
        env: [{name: SERVICE, value: %(app)s}, {name: VERSION, value: v1}]
        ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: %(app)s, namespace: %(ns)s}
spec:
  selector: {app: %(app)s}
  ports: [{name: http, port: 8080}]
"""
MESH_CONFIG = "defaultConfig:\n  tracing:\n    sampling: 100\n"
TELEMETRY = """
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: shop-debug, namespace: shop}
spec:
  tracing: [{randomSamplingPercentage: 0}]
  accessLogging: [{providers: [{name: envoy}]}]
"""
TEXT_LINE = re.compile(r'^\[\S+\] "GET /probe-\d+ HTTP/1.1" 200 ')


def _sidecar(mesh: Mesh, workload: str) -> dict[str, Any]:
    rows = [r for r in mesh.proxies() if r.get("node", {}).get("workload") == workload
            or r.get("workload") == workload]
    assert rows, mesh.proxies()
    return rows[0]


def _inbound(mesh: Mesh, workload: str) -> str:
    for m in mesh.members():
        if workload in str(m.get("name", "")) and m.get("inbound"):
            return str(m["inbound"])
    row = _sidecar(mesh, workload)
    return str(row["inbound"])


def _sampled_flag(mesh: Mesh, workload: str, n: int) -> str:
    """Call the workload's sidecar inbound directly, with no trace context: the sidecar
    starts the trace, and the app echoes the traceparent it was given."""
    r = httpx.get(f"http://{_inbound(mesh, workload)}/probe-{n}", timeout=10)
    assert r.status_code == 200, r.text
    tp = r.json()["headers"].get("Traceparent") or r.json()["headers"]["traceparent"]
    return str(tp)[-2:]


def _log(mesh: Mesh, workload: str) -> str:
    logs = sorted((mesh.root / ".tollway" / "logs").glob(f"{workload}*.sidecar.log"))
    assert logs, list((mesh.root / ".tollway" / "logs").iterdir())
    return "".join(p.read_text(errors="replace") for p in logs)


def _access_lines(mesh: Mesh, workload: str) -> list[str]:
    return [ln for ln in _log(mesh, workload).splitlines() if TEXT_LINE.match(ln)]


def test_telemetry_applied_live_turns_sampling_off_and_logs_on_for_one_namespace(
        tmp_path: Path) -> None:
    root = tmp_path / "mesh"
    root.mkdir()
    (root / "shop.yaml").write_text(WORKLOADS % {"ns": "shop", "app": "web"})
    (root / "bank.yaml").write_text(WORKLOADS % {"ns": "bank", "app": "api"})
    (tmp_path / "mesh.yaml").write_text(MESH_CONFIG)
    (tmp_path / "telemetry.yaml").write_text(TELEMETRY)
    mesh = Mesh(root)
    mesh.extra_args = ["--mesh-config", str(tmp_path / "mesh.yaml")]
    try:
        mesh.start()
        wait_until(lambda: _access_ok(mesh), 60, "both apps answering through the mesh")
        # before: 100% from the mesh config, no access logs anywhere
        assert _sampled_flag(mesh, "web", 1) == "01"
        assert _sampled_flag(mesh, "api", 1) == "01"
        done = mesh.cli("apply", "-f", str(tmp_path / "telemetry.yaml"))
        assert done.returncode == 0, done.stdout + done.stderr
        wait_until(lambda: _sampled_flag(mesh, "web", 2) == "00", 30,
                   "shop's sidecar sampling 0%")
        assert _sampled_flag(mesh, "api", 2) == "01"  # bank untouched
        for n in range(3, 6):
            assert mesh.get("web.shop:8080", f"/probe-{n}").status_code == 200
            assert mesh.get("api.bank:8080", f"/probe-{n}").status_code == 200
        wait_until(lambda: len([ln for ln in _access_lines(mesh, "web")
                                if "/probe-5 " in ln]) >= 1, 20, "shop's access log line")
        assert _access_lines(mesh, "api") == []
        # removed: sampling back to the mesh config's 100%, logging off again
        done = mesh.cli("delete", "-f", str(tmp_path / "telemetry.yaml"))
        assert done.returncode == 0, done.stdout + done.stderr
        wait_until(lambda: _sampled_flag(mesh, "web", 7) == "01", 30, "shop back to 100%")
        assert _snapshot(mesh, "web").get("telemetry", {}).get("access_logs", []) == []
    finally:
        mesh.stop()
        reap_members(root / ".tollway" / "members.json")
        shutil.rmtree(root / ".tollway" / "logs", ignore_errors=True)


def _snapshot(mesh: Mesh, workload: str) -> dict[str, Any]:
    configs = httpx.get(mesh.url + "/debug/configz", headers=mesh.admin_headers(),
                        timeout=10).json()
    found = [c for c in configs.values() if c["node"]["workload"] == workload]
    assert found, list(configs)
    return dict(found[0])


def _access_ok(mesh: Mesh) -> bool:
    try:
        return (mesh.get("web.shop:8080", "/").status_code == 200
                and mesh.get("api.bank:8080", "/").status_code == 200)
    except httpx.HTTPError:
        return False
