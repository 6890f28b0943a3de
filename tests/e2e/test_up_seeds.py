"""Seeds through a real `tollway up`: header routing, mirroring, and the HTTPS gateway."""

from __future__ import annotations

import shutil
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from e2e_mesh import EXAMPLES, Mesh, running

from tests.tools.h2spec import check, run_h2spec

pytestmark = pytest.mark.slow


def _version(mesh: Mesh, host: str, headers: dict[str, str] | None = None) -> str:
    with httpx.Client(proxy=f"http://127.0.0.1:{mesh.client_port}", timeout=10) as c:
        r = c.get(f"http://{host}/", headers=headers or {})
    assert r.status_code == 200, r.text
    return str(r.json()["version"])


def test_seed_06_ab_header_regex_is_anchored(mesh_factory: Callable[[str], Mesh]) -> None:
    mesh = mesh_factory("ab-header")
    for value, want in (("user-123", "v2"), ("user-1234", "v2"), ("user-12", "v1"),
                        ("user-12345", "v1")):
        assert _version(mesh, "myapp:8080", {"user-id": value}) == want, value
    assert _version(mesh, "myapp:8080") == "v1"


def test_seed_13_header_canary(mesh_factory: Callable[[str], Mesh]) -> None:
    mesh = mesh_factory("header-canary")
    assert _version(mesh, "frontend:8080", {"x-canary-user": "true"}) == "v2"
    assert _version(mesh, "frontend:8080", {"x-user-segment": "beta"}) == "v2"
    assert _version(mesh, "frontend:8080", {"x-user-segment": "alpha"}) == "v1"
    assert {_version(mesh, "frontend:8080") for _ in range(20)} == {"v1"}


def test_seed_05_mirror_copies_to_v2(mesh_factory: Callable[[str], Mesh]) -> None:
    mesh = mesh_factory("mirror")
    assert {_version(mesh, "myapp:8080") for _ in range(20)} == {"v1"}
    v2 = next(m for m in mesh.members() if m["workload"].endswith("v2"))

    def shadowed() -> int:
        stats = httpx.get(f"http://127.0.0.1:{v2['ports']['app']}/__demo/stats",
                          timeout=10).json()
        return sum(n for host, n in stats["by_host"].items() if "-shadow" in host)

    # mirrorPercent 100: a copy of each of the 20, sent off the request path (the last
    # ones may still be on their way when the answers are in)
    deadline, shadow = time.monotonic() + 60, 0
    while (shadow := shadowed()) < 20 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert shadow == 20, f"{shadow} mirrored copies reached v2, 20 sent"


def _https_get(port: int, host: str, path: str, cafile: str) -> tuple[int, str]:
    ctx = ssl.create_default_context(cafile=cafile)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                    .encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode(errors="replace")


def test_seed_16_https_gateway_routes_by_prefix(mesh_factory: Callable[[str], Mesh]) -> None:
    mesh = mesh_factory("gateway")
    port = 443 + mesh.offset
    cafile = str(mesh.root / "wildcard-tls.crt")
    status, body = _https_get(port, "api.example.com", "/api/payments/x", cafile)
    assert status == 200 and '"service": "payment-service"' in body
    status, body = _https_get(port, "api.example.com", "/api/orders", cafile)
    assert status == 200 and '"service": "order-service"' in body


H2SPEC_ROUTE = """apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: h2spec
spec:
  hosts: [localhost]
  gateways: [istio-ingress/main-gateway]
  http:
  - route:
    - destination: {host: order-service.orders.svc.cluster.local, port: {number: 8080}}
"""


def test_seed_16_https_gateway_passes_h2spec(tmp_path: Path) -> None:
    """Every h2spec case (-S, over TLS with ALPN h2) against the gateway `tollway up` runs,
    a separate process with its TLS from the Gateway's credentialName. h2spec's requests
    carry `:authority localhost:PORT`, so the copy of the seed also serves host localhost
    (routed to a real app, whose replies have bodies, as h2spec's flow-control cases need). No
    deviation is accepted here (an h2-only TLS listener, as in test_h2spec.py); afterwards
    the seed's own route still answers."""
    root = tmp_path / "gateway"
    shutil.copytree(EXAMPLES / "gateway", root)
    seed = root / "16-ingress-gateway.yaml"
    seed.write_text(seed.read_text().replace('- "*.example.com"',
                                             '- "*.example.com"\n    - localhost'))
    (root / "h2spec.yaml").write_text(H2SPEC_ROUTE)
    with running(root) as mesh:
        port = 443 + mesh.offset
        check(run_h2spec(("localhost", port), tmp_path, tls=True), {})
        status, body = _https_get(port, "api.example.com", "/api/orders",
                                  str(mesh.root / "wildcard-tls.crt"))
        assert status == 200 and '"service": "order-service"' in body


def test_seed_11_payment_split_across_namespaces(mesh_factory: Callable[[str], Mesh]) -> None:
    mesh = mesh_factory("payment")
    seen = mesh.versions(200, host="payment-service.payments:8080")
    assert set(seen) == {"v1", "v2"}, seen
    assert 0.03 <= seen["v2"] / 200 <= 0.2, seen


def _attempts(mesh: Mesh, workload: str) -> int:
    total = 0
    for m in mesh.members():
        if m["workload"] == workload:
            stats = httpx.get(f"http://127.0.0.1:{m['ports']['app']}/__demo/stats").json()
            total += stats["total"]
    return total


def test_seed_12_retries_on_gateway_errors_and_409_not_500(
    mesh_factory: Callable[[str], Mesh],
) -> None:
    mesh = mesh_factory("retries")
    for path, status, tries in (("/status/503", 503, 4), ("/status/409", 409, 4),
                                ("/status/500", 500, 1)):
        before = _attempts(mesh, "order-service")
        r = mesh.get("order-service:8080", path)
        assert r.status_code == status
        assert _attempts(mesh, "order-service") - before == tries, path


BAD_V1 = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: api-v1-bad
spec:
  replicas: 1
  selector:
    matchLabels: {app: api, version: v1}
  template:
    metadata:
      labels: {app: api, version: v1}
    spec:
      containers:
      - name: api
        command: ["tollway", "demo-app"]
        env:
        - {name: VERSION, value: "v1-bad"}
        - {name: ERROR_RATE, value: "1"}
        ports:
        - containerPort: 8080
"""


def test_seed_07_failing_replica_is_ejected_and_split_holds(
    mesh_factory: Callable[[str], Mesh],
) -> None:
    mesh = mesh_factory("outlier")
    bad = mesh.root / "bad.yaml"
    bad.write_text(BAD_V1)
    applied = mesh.cli("apply", "-f", str(bad))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    from e2e_mesh import wait_until

    wait_until(lambda: any(m["workload"] == "api-v1-bad" and m["ready"]
                           for m in mesh.members()), what="the failing replica")
    # the client proxy's own config, not proxy-status: SYNCED holds until the control
    # plane rebuilt for the new replica, so it can be read before the push carries it
    def client_knows_it() -> bool:
        try:
            clusters = mesh.applied_config().get("clusters") or ()
        except httpx.HTTPError:
            return False
        return any(e.get("workload") == "api-v1-bad"
                   for c in clusters for e in c.get("endpoints") or ())

    wait_until(client_knows_it, 60, "the client proxy to learn the failing replica")
    first = mesh.versions(150, host="api:8080")
    assert first["500"] <= 6, first  # five in a row, then it is ejected for 30 s
    assert first["500"] >= 1, first  # it did receive traffic before
    later = mesh.versions(200, host="api:8080")
    assert "500" not in later and "v1-bad" not in later, later
    assert 0.03 <= later["v2"] / 200 <= 0.2, later
