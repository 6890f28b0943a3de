"""A basic-canary Rollout (no trafficRouting) through a real `tollway up`: while it rolls
from v1 to v2, the replicas that should run never exceed replicas + maxSurge and the
ready ones never drop below replicas - maxUnavailable, as /v1/local/members reports them."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest
from e2e_mesh import Mesh, wait_until

from tests.conftest import reap_members as _reap

pytestmark = pytest.mark.slow


MANIFESTS = """
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 8080, name: http}]
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: demo:v1
        command: ["tollway", "demo-app"]
        env: [{name: VERSION, value: v1}]
        ports: [{containerPort: 8080}]
  strategy:
    canary:
      maxSurge: 1
      maxUnavailable: 0
      steps:
      - setWeight: 50
      - pause: {duration: 2s}
"""




def _web(mesh: Mesh) -> list[dict[str, object]]:
    return [m for m in mesh.members() if str(m["workload"]).startswith("web-")]


def test_basic_canary_rollout_stays_within_surge_and_unavailable(tmp_path: Path) -> None:
    (tmp_path / "web.yaml").write_text(MANIFESTS)
    mesh = Mesh(tmp_path)
    try:
        mesh.start()
        wait_until(lambda: sum(1 for m in _web(mesh) if m["ready"]) == 4, 60,
                   "4 ready replicas of v1")
        before = {str(m["workload"]) for m in _web(mesh)}
        seen: list[tuple[int, int]] = []
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                try:
                    live = [m for m in _web(mesh) if not m["stopping"]]
                except httpx.HTTPError:
                    continue
                seen.append((len(live), sum(1 for m in live if m["ready"])))
                time.sleep(0.02)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        done = mesh.cli("rollout", "set-image", "web", "demo:v2", "--env", "VERSION=v2")
        assert done.returncode == 0, done.stdout + done.stderr

        def finished() -> bool:
            web = _web(mesh)
            status = httpx.get(mesh.url + "/v1/rollouts/default/web", timeout=5).json()
            return (status["status"].get("phase") == "Healthy" and len(web) == 4
                    and all(m["ready"] and m["workload"] not in before for m in web))

        wait_until(finished, 90, "the rollout to finish with 4 ready v2 replicas")
        stop.set()
        watcher.join(5)
        assert max(n for n, _ in seen) == 5, seen  # it surged, by one at most
        changes = [s for i, s in enumerate(seen) if i == 0 or s != seen[i - 1]]
        assert min(r for _, r in seen) >= 4, changes  # and never had fewer than 4 ready
    finally:
        mesh.stop()
        _reap(tmp_path / ".tollway" / "members.json")
    log = json.dumps(mesh.lines[-5:])
    assert "Traceback" not in log
