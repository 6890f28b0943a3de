"""Issue 10, tried as an attacker on the same machine would: the control plane of a real
`tollway up` (examples/authz, STRICT mesh-wide, a gateway TLS Secret) through its socket.

Every test here failed before workload attestation and the API guard: the CA signed any
registered node's identity for anyone, anyone could register and join a service's
endpoints, revoke, apply from a cross-site `text/plain` POST, read Secrets' private keys,
and the API answered any `Host` (DNS rebinding).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.e2e.e2e_mesh import EXAMPLES, Mesh
from tests.security.test_seeds_up import SEED_DIR, member, via
from tollway.proxy import tls

PAY_ID = "spiffe://cluster.local/ns/payments/sa/payment-service"
KEY_B64 = "LS0tLS1CRUdJTiBQUklWQVRF"  # base64 of "-----BEGIN PRIVATE" (the Secret's tls.key)
ALLOW_ALL_TEXT = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-everyone, namespace: payments}
spec:
  action: ALLOW
  rules: [{}]
"""



@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    root = tmp_path_factory.mktemp("attacks") / "mesh"
    shutil.copytree(EXAMPLES / "authz", root)
    shutil.copy(SEED_DIR / "09-strict-mtls.yaml", root)
    shutil.copy(EXAMPLES / "gateway" / "wildcard-tls.yaml", root)
    (root / "ns-ingress.yaml").write_text(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: istio-ingress}\n")
    m = Mesh(root)
    m.start()
    try:
        yield m
    finally:
        m.stop()


def admin_token(mesh: Mesh) -> str:
    return (mesh.root / ".tollway" / "admin-token").read_text().strip()


def workload_token(mesh: Mesh, namespace: str, service_account: str) -> str:
    done = mesh.cli("token", "create", "--namespace", namespace,
                    "--service-account", service_account)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def node_of(mesh: Mesh, workload: str) -> str:
    return next(p["name"] for p in mesh.proxies() if p["workload"] == workload)


def test_no_certificate_for_another_workloads_identity(mesh: Mesh) -> None:
    node = node_of(mesh, "payment-service")
    _key, csr = tls.new_key_and_csr(PAY_ID)
    anonymous = httpx.post(mesh.url + "/v1/ca/sign", json={"csr": csr, "node": node},
                           timeout=10)
    assert anonymous.status_code == 401, anonymous.text
    assert "cert_chain" not in anonymous.text
    # a real credential, but for another service account: still no certificate
    other = workload_token(mesh, "checkout", "checkout-service")
    forged = httpx.post(mesh.url + "/v1/ca/sign", json={"csr": csr, "node": node},
                        headers=bearer(other), timeout=10)
    assert forged.status_code == 403, forged.text
    assert "cert_chain" not in forged.text
    # garbage in the Authorization header is refused as no credential, in one sentence
    junk = httpx.post(mesh.url + "/v1/ca/sign", json={"csr": csr, "node": node},
                      headers=bearer("tw1.e30.AAAA"), timeout=10)
    assert junk.status_code == 401 and "Traceback" not in junk.text


def _registration(name: str, namespace: str, sa: str, app: str) -> dict[str, object]:
    inbound = free_port()
    return {"node": {"name": name, "workload": name.split(".")[0], "namespace": namespace,
                     "service_account": sa, "labels": {"app": app}},
            "admin": "", "inbound": f"127.0.0.1:{inbound}", "address": "127.0.0.1",
            "ports": {"inbound": inbound, "app": inbound}}


def test_no_registration_without_the_right_credential(mesh: Mesh) -> None:
    url = mesh.url + "/v1/register"
    body = _registration("intruder.payments", "payments", "payment-service", "payment-service")
    r = httpx.post(url, json=body, timeout=10)
    assert r.status_code == 401, r.text
    # a token for another namespace cannot register into payments
    checkout = workload_token(mesh, "checkout", "checkout-service")
    r = httpx.post(url, json=body, headers=bearer(checkout), timeout=10)
    assert r.status_code == 403, r.text
    # a token of payments' own namespace, but another service account, cannot take
    # payment-service's endpoints by copying its label
    intruder = workload_token(mesh, "payments", "intruder")
    joining = _registration("intruder.payments", "payments", "intruder", "payment-service")
    r = httpx.post(url, json=joining, headers=bearer(intruder), timeout=10)
    assert r.status_code == 403, r.text
    assert "payment-service" in r.text
    names = {p["name"] for p in mesh.proxies()}
    assert "intruder.payments" not in names
    # ... and the real payment-service is still what its clients reach
    checkout_out = member(mesh, "checkout-service")["outbound"]
    assert via(checkout_out, "GET", "/api/v1/payments").status_code == 200


def test_no_revocation_without_the_admin_credential(mesh: Mesh) -> None:
    url = mesh.url + "/v1/ca/revoke"
    r = httpx.post(url, json={"serial": "abcdef"}, timeout=10)
    assert r.status_code == 401, r.text
    workload = workload_token(mesh, "payments", "payment-service")
    r = httpx.post(url, json={"serial": "abcdef"}, headers=bearer(workload), timeout=10)
    assert r.status_code == 403, r.text


def test_no_snapshot_stream_or_config_dump_without_a_credential(mesh: Mesh) -> None:
    """The gateway's snapshot carries its TLS key: a stream is as secret as the key."""
    gateway = node_of(mesh, "istio-ingressgateway")
    with httpx.stream("GET", mesh.url + "/v1/stream", params={"node": gateway},
                      timeout=10) as r:
        assert r.status_code == 401
    r = httpx.get(mesh.url + "/debug/configz", timeout=10)
    assert r.status_code == 401 and "PRIVATE KEY" not in r.text


def _deny_still_applies(mesh: Mesh) -> None:
    r = via(mesh.client_port, "GET", "/api/v1/payments")
    assert (r.status_code, r.text) == (403, "RBAC: access denied")


def test_cross_site_requests_change_nothing(mesh: Mesh) -> None:
    """A web page the user has open can send a `text/plain` POST without a preflight."""
    body = json.dumps({"text": ALLOW_ALL_TEXT, "filename": "x.yaml"})
    simple = httpx.post(mesh.url + "/v1/apply", content=body,
                        headers={"Content-Type": "text/plain",
                                 "Origin": "http://evil.example"}, timeout=10)
    assert simple.status_code in (401, 403, 415), simple.text
    # even with the JSON type and the admin token, another origin is refused
    cross = httpx.post(mesh.url + "/v1/apply", content=body,
                       headers={"Content-Type": "application/json",
                                "Origin": "http://evil.example", **bearer(admin_token(mesh))},
                       timeout=10)
    assert cross.status_code == 403, cross.text
    form = httpx.post(mesh.url + "/v1/rollouts/payments/payment-service/abort",
                      data={"x": "1"}, timeout=10)
    assert form.status_code in (401, 403, 415), form.text
    _deny_still_applies(mesh)


def test_dns_rebinding_is_refused(mesh: Mesh) -> None:
    """A name the attacker controls, re-pointed at 127.0.0.1: the Host header gives it away."""
    port = mesh.api_port
    for path in ("/v1/proxies", "/v1/resources", "/healthz"):
        r = httpx.get(mesh.url + path, headers={"Host": f"evil.example:{port}"}, timeout=10)
        assert r.status_code == 421, (path, r.status_code, r.text)
    r = httpx.post(mesh.url + "/v1/delete", json={"text": "", "filename": "x"},
                   headers={"Host": f"evil.example:{port}", **bearer(admin_token(mesh))},
                   timeout=10)
    assert r.status_code == 421, r.text
    assert httpx.get(mesh.url + "/healthz", timeout=10).status_code == 200
    assert httpx.get(f"http://localhost:{port}/healthz", timeout=10).status_code == 200


def test_secrets_are_never_returned_with_their_keys(mesh: Mesh) -> None:
    url = mesh.url + "/v1/resources/secret/wildcard-tls"
    r = httpx.get(url, params={"namespace": "istio-ingress"}, timeout=10)
    assert r.status_code == 401, r.text[:200]
    r = httpx.get(url, params={"namespace": "istio-ingress"},
                  headers=bearer(admin_token(mesh)), timeout=10)
    assert r.status_code == 200, r.text
    assert KEY_B64 not in r.text
    data = r.json()["items"][0]["data"]
    assert set(data) == {"tls.crt", "tls.key"} and "redacted" in data["tls.key"]
    everything = httpx.get(mesh.url + "/v1/resources", headers=bearer(admin_token(mesh)),
                           timeout=10)
    assert everything.status_code == 200 and KEY_B64 not in everything.text


def test_the_cli_on_this_machine_needs_no_flags(mesh: Mesh, tmp_path: Path) -> None:
    got = mesh.cli("get", "secret", "-n", "istio-ingress", "-o", "json")
    assert got.returncode == 0, got.stdout + got.stderr
    assert "wildcard-tls" in got.stdout and KEY_B64 not in got.stdout
    extra = tmp_path / "extra.yaml"
    extra.write_text("apiVersion: v1\nkind: ServiceAccount\n"
                     "metadata: {name: helper, namespace: payments}\n")
    done = mesh.cli("apply", "-f", str(extra))
    assert done.returncode == 0, done.stdout + done.stderr
    gone = mesh.cli("delete", "-f", str(extra))
    assert gone.returncode == 0, gone.stdout + gone.stderr
    # a wrong token given explicitly is refused, in one sentence
    bad = mesh.cli("get", "secret", "-n", "istio-ingress", "--token", "nope")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr, bad.stderr
