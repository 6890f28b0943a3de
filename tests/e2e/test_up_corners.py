"""Issue 12's behaviour corners and meshConfig.pathNormalization, through `tollway up`.

One mesh: a workload selected by a PeerAuthentication with `portLevelMtls` (which used to
leave it without config, so `up` never got ready), a redirect with derivePort, a
destination that sets the upstream Host, and `--mesh-config` asking for MERGE_SLASHES.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e_mesh import Mesh, wait_until

from tests.conftest import reap_members

pytestmark = pytest.mark.slow

MANIFESTS = """apiVersion: apps/v1
kind: Deployment
metadata: {name: shop}
spec:
  replicas: 1
  selector: {matchLabels: {app: shop}}
  template:
    metadata: {labels: {app: shop, version: v1}}
    spec:
      containers:
      - name: shop
        image: shop:1
        command: ["tollway", "demo-app"]
        env: [{name: VERSION, value: v1}, {name: SERVICE, value: shop}]
        ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: shop}
spec:
  selector: {app: shop}
  ports: [{name: http, port: 8080}]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: shop}
spec:
  hosts: [shop]
  http:
  - match: [{uri: {prefix: /old}}]
    redirect: {uri: /new, scheme: https, derivePort: FROM_REQUEST_PORT}
  - match: [{uri: {prefix: /plain}}]
    redirect: {uri: /new, scheme: https, derivePort: FROM_PROTOCOL_DEFAULT}
  - route:
    - destination: {host: shop}
      headers: {request: {set: {host: shop.internal}}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: shop-ports}
spec:
  selector: {matchLabels: {app: shop}}
  mtls: {mode: PERMISSIVE}
  portLevelMtls:
    8080: {mode: PERMISSIVE}
"""


def test_corners_through_tollway_up(tmp_path: Path) -> None:
    root = tmp_path / "shop"
    root.mkdir()
    (root / "shop.yaml").write_text(MANIFESTS)
    mesh_config = tmp_path / "mesh.yaml"
    mesh_config.write_text("pathNormalization:\n  normalization: MERGE_SLASHES\n"
                           "enableAutoMtls: true\n")
    mesh = Mesh(root)
    mesh.extra_args = ["--mesh-config", str(mesh_config)]
    try:
        mesh.start()  # ready: the portLevelMtls workload got its config
        assert any("enableAutoMtls is not applied by Tollway" in line for line in mesh.lines)
        wait_until(lambda: mesh.get("shop:8080", "/").status_code == 200, timeout=60)
        r = mesh.get("shop:8080", "/old/x?q=1")
        assert (r.status_code, r.headers["location"]) == (301, "https://shop:8080/new?q=1")
        r = mesh.get("shop:8080", "/plain")
        assert r.headers["location"] == "https://shop/new"
        seen = mesh.get("shop:8080", "/a//b/./c?x=//y").json()
        assert seen["path"] == "/a/b/c?x=//y"
        assert seen["host"] == "shop.internal"
    finally:
        mesh.stop()
        reap_members(root / ".tollway" / "members.json")
