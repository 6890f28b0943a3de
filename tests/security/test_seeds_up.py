"""Seeds 09 + 10 through `tollway up`: STRICT mesh-wide, only checkout-service may pay.

Calls leave through a sidecar's outbound listener as that workload's app would make them:
checkout-service's sidecar presents `cluster.local/ns/checkout/sa/checkout-service`, the
built-in client proxy presents `cluster.local/ns/default/sa/tollway-client`; plaintext goes
straight to an inbound. Certificates come from the control plane's CA (`/v1/ca/sign`).
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.e2e_mesh import EXAMPLES, Mesh

SEED_DIR = Path(__file__).resolve().parents[1] / "data" / "seed"
PAY = "http://payment-service.payments:8080"


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    root = tmp_path / "mesh"
    shutil.copytree(EXAMPLES / "authz", root)
    shutil.copy(SEED_DIR / "09-strict-mtls.yaml", root)
    m = Mesh(root)
    m.start()
    try:
        yield m
    finally:
        m.stop()


def member(mesh: Mesh, workload: str) -> dict[str, int]:
    for row in mesh.members():
        if row["workload"] == workload:
            return {k: int(v) for k, v in row["ports"].items()}
    raise AssertionError(f"no member {workload}: {mesh.members()}")


def via(port: int, method: str, path: str) -> httpx.Response:
    with httpx.Client(proxy=f"http://127.0.0.1:{port}", timeout=10) as c:
        return c.request(method, PAY + path)


def plaintext_refused(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /api/v1/payments HTTP/1.1\r\nHost: payment-service\r\n\r\n")
        try:
            return s.recv(100) == b""
        except ConnectionResetError:
            return True


@pytest.mark.slow
def test_seed_09_and_10_through_tollway_up(mesh: Mesh) -> None:
    pay = member(mesh, "payment-service")
    checkout = member(mesh, "checkout-service")
    # 09: plaintext to any sidecar is refused, at the connection
    assert plaintext_refused(pay["inbound"])
    assert plaintext_refused(checkout["inbound"])
    # 10: checkout-service may GET/POST /api/v1/payments*
    for method, path in (("GET", "/api/v1/payments"), ("POST", "/api/v1/payments/42")):
        r = via(checkout["outbound"], method, path)
        assert r.status_code == 200, (method, path, r.text)
        assert r.json()["service"] == "payment-service"
        # over mTLS: payment's sidecar tells its app who called, from the certificate
        xfcc = {k.lower(): v for k, v in r.json()["headers"].items()}["x-forwarded-client-cert"]
        assert "URI=spiffe://cluster.local/ns/checkout/sa/checkout-service" in xfcc
        assert "By=spiffe://cluster.local/ns/payments/sa/payment-service" in xfcc
    # every other method, path and caller gets 403 RBAC: access denied
    for port, method, path in ((checkout["outbound"], "DELETE", "/api/v1/payments"),
                               (checkout["outbound"], "GET", "/admin"),
                               (mesh.client_port, "GET", "/api/v1/payments")):
        r = via(port, method, path)
        assert (r.status_code, r.text) == (403, "RBAC: access denied"), (port, method, path)
