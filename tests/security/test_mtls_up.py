"""Workload certificates through a real `tollway up`: rotation, revocation, VM proxies.

The mesh is examples/authz with seed 09 (STRICT mesh-wide), so every call between
proxies must be mTLS with a certificate from the control plane's CA.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from tests.conftest import free_port
from tests.e2e.e2e_mesh import EXAMPLES, Mesh, wait_until
from tests.security.test_seeds_up import PAY, SEED_DIR, member, plaintext_refused, via

CHECKOUT_ID = "spiffe://cluster.local/ns/checkout/sa/checkout-service"


def _mesh(tmp_path: Path, *extra: str) -> Mesh:
    root = tmp_path / "mesh"
    shutil.copytree(EXAMPLES / "authz", root)
    shutil.copy(SEED_DIR / "09-strict-mtls.yaml", root)
    mesh = Mesh(root)
    mesh.extra_args = list(extra)
    return mesh


def presented(port: int) -> x509.Certificate:
    """The certificate a sidecar's inbound presents (TLS 1.3: readable without a client
    certificate, which the sidecar then refuses)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw) as tls_sock:
        der = tls_sock.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)



@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    m = _mesh(tmp_path)
    m.start()
    try:
        yield m
    finally:
        m.stop()


@pytest.mark.slow
def test_certificates_rotate_under_traffic_without_failures(tmp_path: Path) -> None:
    mesh = _mesh(tmp_path, "--cert-ttl", "3s")
    mesh.start()
    try:
        pay = member(mesh, "payment-service")
        first = presented(pay["inbound"])
        assert first.not_valid_after_utc - first.not_valid_before_utc <= dt.timedelta(seconds=4)
        statuses = []
        deadline = time.monotonic() + 7.0  # more than two lifetimes of the first certificate
        with httpx.Client(proxy=f"http://127.0.0.1:{member(mesh, 'checkout-service')['outbound']}",
                          timeout=10) as client:
            while time.monotonic() < deadline:
                statuses.append(client.get(PAY + "/api/v1/payments").status_code)
                time.sleep(0.02)
        assert statuses and set(statuses) == {200}, sorted(set(statuses))
        now = presented(pay["inbound"])
        assert now.serial_number != first.serial_number
        assert now.not_valid_after_utc > dt.datetime.now(dt.UTC)  # the first one expired
        logs = mesh.root / ".tollway" / "logs"
        renewed = [p.name for p in logs.glob("*.sidecar.log")
                   if "workload certificate for" in p.read_text()
                   and "renewed" in p.read_text()]
        assert any(n.startswith("payment-service") for n in renewed), renewed
        assert any(n.startswith("tollway-client") for n in renewed), renewed
    finally:
        mesh.stop()


@pytest.mark.slow
def test_revoking_a_workload_certificate_cuts_that_caller_off(mesh: Mesh) -> None:
    checkout = member(mesh, "checkout-service")
    assert via(checkout["outbound"], "GET", "/api/v1/payments").status_code == 200
    serial = format(presented(checkout["inbound"]).serial_number, "x")
    r = httpx.post(mesh.url + "/v1/ca/revoke", json={"serial": serial}, timeout=5,
                   headers=mesh.admin_headers())
    assert r.status_code == 200 and serial in r.json()["revoked_serials"], r.text

    def refused() -> bool:
        return via(checkout["outbound"], "GET", "/api/v1/payments").status_code == 503

    wait_until(refused, 15, "payment-service's sidecar to refuse the revoked checkout")
    logs = mesh.root / ".tollway" / "logs"
    pay_log = next(logs.glob("payment-service*.sidecar.log")).read_text()
    assert f"peer certificate of {CHECKOUT_ID} is revoked" in pay_log
    # the rest of the mesh is unaffected: the client proxy still reaches RBAC's answer
    r = via(mesh.client_port, "GET", "/api/v1/payments")
    assert (r.status_code, r.text) == (403, "RBAC: access denied")


@pytest.mark.slow
def test_vm_proxy_registers_with_labels_and_talks_mtls_with_the_mesh(mesh: Mesh) -> None:
    """`tollway proxy --control-plane`: registered, certified, reachable, and calling out."""
    app_port, inbound, outbound = free_port(), free_port(), free_port()
    env = dict(os.environ, PORT=str(app_port), SERVICE="vm-api", VERSION="vm")
    app = subprocess.Popen([sys.executable, "-m", "tollway", "demo-app"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proxy = subprocess.Popen(
        [sys.executable, "-m", "tollway", "proxy", "--control-plane", mesh.url,
         "--workload", "vm-api", "--namespace", "checkout",
         "--service-account", "checkout-service", "--label", "app=vm-api",
         "--token-file", str(mesh.token_file("checkout", "checkout-service")),
         "--label", "version=vm", "--inbound-port", str(inbound), "--app-port",
         str(app_port), "--port", str(outbound), "--admin-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def synced() -> bool:
            rows = [p for p in mesh.proxies() if p["name"] == "vm-api.checkout"]
            return bool(rows) and rows[0]["status"] == "SYNCED"

        wait_until(synced, 60, "the VM proxy to register and acknowledge its config")
        row = next(p for p in mesh.proxies() if p["name"] == "vm-api.checkout")
        assert row["origin"] == "vm"
        assert row["labels"] == {"app": "vm-api", "version": "vm"}
        assert row["inbound"] == f"127.0.0.1:{inbound}"
        assert row["ports"] == {"inbound": inbound, "app": app_port, "outbound": outbound}
        # its identity: the CA signed the namespace and service account it registered with
        cert = presented(inbound)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.UniformResourceIdentifier) == [CHECKOUT_ID]
        assert plaintext_refused(inbound)  # STRICT reaches the VM too

        def reachable() -> bool:  # the `app` label made it host vm-api.checkout
            with httpx.Client(proxy=f"http://127.0.0.1:{mesh.client_port}", timeout=10) as c:
                return c.get("http://vm-api.checkout:8080/hello").status_code == 200

        wait_until(reachable, 30, "the mesh to route vm-api.checkout to the VM")
        with httpx.Client(proxy=f"http://127.0.0.1:{mesh.client_port}", timeout=10) as c:
            seen = c.get("http://vm-api.checkout:8080/hello").json()
        assert seen["service"] == "vm-api"
        xfcc = {k.lower(): v for k, v in seen["headers"].items()}["x-forwarded-client-cert"]
        assert f"By={CHECKOUT_ID}" in xfcc
        assert "URI=spiffe://cluster.local/ns/default/sa/tollway-client" in xfcc
        # and out of the VM: payment-service's RBAC lets the checkout identity in
        r = via(outbound, "POST", "/api/v1/payments/7")
        assert r.status_code == 200, r.text
        pay_xfcc = {k.lower(): v for k, v in r.json()["headers"].items()}
        assert f"URI={CHECKOUT_ID}" in pay_xfcc["x-forwarded-client-cert"]
    finally:
        proxy.send_signal(signal.SIGTERM)
        app.terminate()
        for p in (proxy, app):
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.mark.parametrize(("args", "said"), [
    (["--label", "app"], "--label 'app' is not KEY=VALUE"),
    (["--label", "=x"], "--label '=x' is not KEY=VALUE"),
    (["--inbound-port", "9000"], "--inbound-port and --app-port go together"),
    (["--app-port", "9000"], "--inbound-port and --app-port go together"),
    (["--service-port", "80"], "--service-port needs --inbound-port and --app-port"),
])
def test_vm_flags_are_checked_in_one_sentence(args: list[str], said: str) -> None:
    from typer.testing import CliRunner

    from tollway.cli.main import app

    result = CliRunner().invoke(app, ["proxy", "--control-plane", "http://127.0.0.1:1",
                                      "--workload", "vm-api", *args])
    assert result.exit_code == 2, result.output
    assert said in result.output and "Traceback" not in result.output


def test_vm_flags_without_a_control_plane_are_refused(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tollway.cli.main import app

    result = CliRunner().invoke(app, ["proxy", "--config", str(tmp_path / "x.json"),
                                      "--label", "app=a", "--address", "10.0.0.1"])
    assert result.exit_code == 2
    assert "--label, --address only apply with --control-plane URL" in result.output
