"""A rollout through a real `tollway up` under steady load must fail no request.

Two rollouts of a two-replica Rollout from v1 to v2, each with retries switched off on the
route (`retries: {attempts: 0}`), so that a single connection to an endpoint nobody
listens on shows up as a failed request instead of being hidden by a retry on another
host:

- subset-routed (Argo + Istio DestinationRule subsets): setWeight 50 runs one canary
  replica; setWeight 100 scales the canary to two while half the traffic is routed to it,
  so the second canary replica joins the canary subset while traffic flows to that subset.
- basic canary (no trafficRouting, the Service selects both sets): replicas are started and
  retired on both sides while the Service routes to all of them.

A replica may become an endpoint only once its sidecar and app listen, and may stop only
after every other proxy has stopped sending to it; either slip is a 503 "upstream connect
error ... connection refused" from the client proxy.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
from e2e_mesh import Mesh, wait_until

from tests.conftest import reap_members as _reap

pytestmark = pytest.mark.slow

CONTAINER = """
      containers:
      - name: web
        image: demo:v1
        command: ["tollway", "demo-app"]
        env: [{name: VERSION, value: v1}]
        ports: [{containerPort: 8080}]
"""

SUBSETS = """
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 8080, name: http}]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http:
  - name: primary
    retries: {attempts: 0}
    route:
    - destination: {host: web, subset: stable}
      weight: 100
    - destination: {host: web, subset: canary}
      weight: 0
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: web}
spec:
  host: web
  subsets:
  - {name: stable, labels: {app: web}}
  - {name: canary, labels: {app: web}}
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:""" + CONTAINER + """
  strategy:
    canary:
      trafficRouting:
        istio:
          virtualService: {name: web, routes: [primary]}
          destinationRule: {name: web, canarySubsetName: canary, stableSubsetName: stable}
      steps:
      - setWeight: 50
      - pause: {duration: 1s}
      - setWeight: 100
"""

BASIC = """
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 8080, name: http}]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http:
  - retries: {attempts: 0}
    route:
    - destination: {host: web}
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:""" + CONTAINER + """
  strategy:
    canary:
      maxSurge: 1
      maxUnavailable: 0
      steps:
      - setWeight: 50
      - pause: {duration: 1s}
"""


class Load:
    """Clients through the client proxy, as fast as they go: every status, every error."""

    def __init__(self, mesh: Mesh, clients: int = 3) -> None:
        self.proxy = f"http://127.0.0.1:{mesh.client_port}"
        self.ok: dict[str, int] = {}
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True)
                         for _ in range(clients)]

    def _run(self) -> None:
        with httpx.Client(proxy=self.proxy, timeout=10) as client:
            while not self._stop.is_set():
                try:
                    r = client.get("http://web:8080/")
                    failed = "" if r.status_code == 200 else f"{r.status_code} {r.text[:160]}"
                    version = r.json()["version"] if not failed else ""
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    failed, version = repr(exc), ""
                with self._lock:
                    if failed:
                        self.failures.append(f"{time.monotonic():.3f} {failed}")
                    else:
                        self.ok[version] = self.ok.get(version, 0) + 1

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)




def _status(mesh: Mesh) -> dict[str, object]:
    r = httpx.get(mesh.url + "/v1/rollouts/default/web", timeout=5)
    return dict(r.json().get("status") or {}) if r.status_code == 200 else {}


def _web(mesh: Mesh) -> list[dict[str, object]]:
    return [m for m in mesh.members() if str(m["workload"]).startswith("web-")]


@pytest.mark.timeout(150)
@pytest.mark.parametrize("manifests", [SUBSETS, BASIC], ids=["subsets", "basic-canary"])
def test_rollout_under_load_fails_no_request(tmp_path: Path, manifests: str) -> None:
    (tmp_path / "web.yaml").write_text(manifests)
    mesh = Mesh(tmp_path)
    try:
        mesh.start()
        wait_until(lambda: _status(mesh).get("phase") == "Healthy"
                   and sum(1 for m in _web(mesh) if m["ready"]) == 2, 60,
                   "two ready v1 replicas")
        before = {str(m["workload"]) for m in _web(mesh)}
        with Load(mesh) as load:
            wait_until(lambda: load.ok.get("v1", 0) >= 50, 20, "steady v1 traffic")
            done = mesh.cli("rollout", "set-image", "web", "demo:v2", "--env", "VERSION=v2")
            assert done.returncode == 0, done.stdout + done.stderr

            def v2_serves_alone() -> bool:
                st = _status(mesh)
                new = [m for m in _web(mesh) if m["workload"] not in before]
                return (st.get("phase") == "Healthy" and st.get("currentStepIndex") is not None
                        and len(new) == 2 and all(m["ready"] for m in new))

            wait_until(v2_serves_alone, 60, "the rollout to finish with two ready v2 replicas")
            served = load.ok.get("v2", 0)
            wait_until(lambda: load.ok.get("v2", 0) >= served + 50, 20, "steady v2 traffic")
        assert load.ok.get("v1", 0) > 0 and load.ok.get("v2", 0) > 0, load.ok
        assert load.failures == [], (
            f"{len(load.failures)} of {sum(load.ok.values()) + len(load.failures)} requests "
            f"failed during the rollout: {load.failures[:5]}")
    finally:
        mesh.stop()
        _reap(tmp_path / ".tollway" / "members.json")
