"""Zero trust and control-plane failover on the real dev cluster, the way users run them.

`helm install tollway charts/tollway -n tollway-system --create-namespace --set
controlPlane.replicas=2`; namespaces labelled istio-injection=enabled; `kubectl apply`.

- seeds 09+10: payment-service in `payments` behind the seed's AuthorizationPolicy (only
  `cluster.local/ns/checkout/sa/checkout-service`, only `/api/v1/payments*`); clients with
  that identity, with another one, and without a sidecar; a non-meshed client's plaintext
  is answered 403 under PERMISSIVE (no identity) and refused outright once the seed's
  mesh-wide STRICT PeerAuthentication is applied, while checkout keeps its 200s;
- a pod's app with its own projected token (audience tollway) gets a certificate for its
  own service account only: never checkout-service's, never as another pod's node;
- killing the leading control-plane pod under traffic fails no request, the other replica
  takes the Lease, config changes still reach the sidecars and the webhook still refuses
  a bad VirtualService naming the field.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SEED_DIR, DevCluster, eventually
from tests.kube.meshcluster import (
    SYSTEM,
    Mesh,
    client,
    installed_mesh,
    load_docs,
    seed_with_commands,
    service,
    versions,
)

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster"), pytest.mark.timeout(1800)]

THIEF = Path(__file__).resolve().parents[1] / "data" / "kube" / "thief.py"
CHECKOUT_ID = "cluster.local/ns/checkout/sa/checkout-service"


@pytest.fixture(scope="module")
def mesh(dev_cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with installed_mesh(dev_cluster, tmp_path_factory.mktemp("helm"), "ksec",
                        "--set", "controlPlane.replicas=2") as m:
        yield m


def namespace(mesh: Mesh, name: str, meshed: bool = True) -> str:
    """A namespace with a fixed name (the seeds name them), removed with the mesh."""
    mesh.kubectl("create", "namespace", name)
    mesh.namespaces.append(name)
    if meshed:
        mesh.kubectl("label", "namespace", name, "istio-injection=enabled")
    return name


def in_ns(docs: list[dict[str, Any]], ns: str) -> list[dict[str, Any]]:
    for d in docs:
        d["metadata"]["namespace"] = ns
    return docs


def payment_service() -> list[dict[str, Any]]:
    deploy = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "payment-service", "namespace": "payments"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "payment-service"}},
                 "template": {
                     "metadata": {"labels": {"app": "payment-service", "version": "v1"}},
                     "spec": {"containers": [{
                         "name": "payment-service", "image": "payment-service:1",
                         "command": ["tollway", "demo-app"],
                         "env": [{"name": "VERSION", "value": "pay"}],
                         "ports": [{"containerPort": 8080}],
                         "readinessProbe": {"httpGet": {"port": 8080, "path": "/"},
                                            "periodSeconds": 2}}]}}}}
    return [deploy, service("payment-service", "payments")]


def rows_for(mesh: Mesh, ns: str, deployment: str, url: str, since: float
             ) -> list[dict[str, Any]]:
    mesh.ns = ns
    return mesh.since(since, url, deployment)


def statuses(rows: list[dict[str, Any]]) -> set[int]:
    return {int(r.get("status") or 0) for r in rows}


def test_seeds_09_10_strict_mtls_and_only_checkout_reaches_payments(mesh: Mesh) -> None:
    namespace(mesh, "payments")
    namespace(mesh, "checkout")
    other = namespace(mesh, f"ksec-other-{int(time.time()) % 100000}")
    plain = namespace(mesh, f"ksec-plain-{int(time.time()) % 100000}", meshed=False)
    made_root = mesh.kubectl("get", "namespace", "istio-system", check=False).returncode != 0
    if made_root:
        namespace(mesh, "istio-system", meshed=False)
    ok_url = "http://payment-service.payments:8080/api/v1/payments/42"
    denied_url = "http://payment-service.payments:8080/admin/refunds"
    mesh.apply([*payment_service(), *in_ns(load_docs(SEED_DIR / "10-authorization-policy.yaml"),
                                           "payments")])
    checkout = client("checkout", [ok_url, denied_url], name="checkout-service")
    checkout["spec"]["template"]["spec"]["serviceAccountName"] = "checkout-service"
    mesh.apply([{"apiVersion": "v1", "kind": "ServiceAccount",
                 "metadata": {"name": "checkout-service", "namespace": "checkout"}}, checkout,
                client(other, [ok_url]), client(plain, [ok_url])])
    for ns, app, sidecar in (("payments", "payment-service", True),
                             ("checkout", "checkout-service", True), (other, "client", True),
                             (plain, "client", False)):
        mesh.ns = ns
        mesh.wait_ready(f"app={app}", 1, sidecar=sidecar)
    start = time.time()

    def permissive() -> bool:
        c_ok = rows_for(mesh, "checkout", "checkout-service", ok_url, start)[-10:]
        c_denied = rows_for(mesh, "checkout", "checkout-service", denied_url, start)[-10:]
        o = rows_for(mesh, other, "client", ok_url, start)[-10:]
        p = rows_for(mesh, plain, "client", ok_url, start)[-10:]
        assert all(len(x) == 10 for x in (c_ok, c_denied, o, p)), "waiting for traffic"
        assert versions(c_ok) == {"pay": 10}, c_ok  # checkout's identity, allowed path
        assert statuses(c_denied) == {403}, c_denied  # checkout, path not in the rule
        assert statuses(o) == {403}, o  # another identity (default SA of another ns)
        assert statuses(p) == {403}, p  # plaintext reaches the pod: no identity, denied
        return True

    eventually(permissive, 300, "the authorization policy enforced under PERMISSIVE")

    strict = in_ns(load_docs(SEED_DIR / "09-strict-mtls.yaml"), "istio-system")
    try:
        mesh.apply(strict)
        applied = time.time()

        def refused() -> bool:
            p = rows_for(mesh, plain, "client", ok_url, applied)[-10:]
            assert len(p) == 10, "waiting for plaintext attempts"
            assert not [r for r in p if r.get("ok") or r.get("status")], p  # no HTTP answer
            return True

        eventually(refused, 300, "plaintext from the non-meshed pod refused under STRICT")
        after = time.time()
        time.sleep(5)
        c_ok = rows_for(mesh, "checkout", "checkout-service", ok_url, after)
        assert c_ok and versions(c_ok) == {"pay": len(c_ok)}, c_ok  # mTLS keeps working
        assert statuses(rows_for(mesh, other, "client", ok_url, after)) == {403}
        plain_rows = rows_for(mesh, plain, "client", ok_url, after)
        assert plain_rows and not [r for r in plain_rows if r.get("ok")], plain_rows
    finally:
        mesh.kubectl("delete", "-n", "istio-system", "peerauthentication.security.istio.io",
                     "default", "--ignore-not-found", check=False)


def thief_pod(ns: str, victim_node: str) -> dict[str, Any]:
    """Not injected (its calls go straight to the control plane's Service), with the
    projected token a sidecar would get, mounted in the app container."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "thief", "namespace": ns,
                     "labels": {"app": "thief", "sidecar.istio.io/inject": "false"}},
        "spec": {
            "serviceAccountName": "thief", "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "thief", "image": "thief:1",
                "command": [sys.executable, str(THIEF)],
                "env": [{"name": "CONTROL_PLANE",
                         "value": f"http://tollway-control-plane.{SYSTEM}.svc:15010"},
                        {"name": "VICTIM_NODE", "value": victim_node},
                        {"name": "POD_NAME",
                         "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "POD_NAMESPACE",
                         "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
                "volumeMounts": [{"name": "tollway-token",
                                  "mountPath": "/var/run/secrets/tokens"}]}],
            "volumes": [{"name": "tollway-token", "projected": {"sources": [{
                "serviceAccountToken": {"audience": "tollway", "expirationSeconds": 3600,
                                        "path": "tollway-token"}}]}}]}}


def test_a_pod_gets_a_certificate_for_its_own_service_account_only(mesh: Mesh) -> None:
    if "checkout" not in mesh.namespaces:
        namespace(mesh, "checkout")
    mesh.ns = "checkout"
    victims = mesh.pods("app=checkout-service")
    if not victims:
        sa = {"apiVersion": "v1", "kind": "ServiceAccount",
              "metadata": {"name": "checkout-service", "namespace": "checkout"}}
        victim = client("checkout", ["http://127.0.0.1:1/"], name="checkout-service")
        victim["spec"]["template"]["spec"]["serviceAccountName"] = "checkout-service"
        mesh.apply([sa, victim])
        victims = mesh.wait_ready("app=checkout-service", 1)
    victim_node = f"{victims[0]['metadata']['name']}.checkout"
    ns = mesh.new_namespace("ksec-thief")
    mesh.apply([{"apiVersion": "v1", "kind": "ServiceAccount",
                 "metadata": {"name": "thief", "namespace": ns}}, thief_pod(ns, victim_node)])

    def report() -> dict[str, str]:
        out = mesh.kubectl("logs", "-n", ns, "thief", "-c", "thief", check=False).stdout
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        assert lines, out
        found: dict[str, str] = json.loads(lines[-1])
        return found

    got = eventually(report, 300, "the thief pod's report")
    own = f"spiffe://cluster.local/ns/{ns}/sa/thief"
    assert got["register_self"] == 200, got  # its own pod, its own account
    assert got["sign_self"] == own, got
    assert got["register_as_checkout"] == 403, got  # another account: refused
    assert got["register_victim_node"] == 403, got  # another pod's node: refused
    assert got["sign_as_victim_node"] == "403", got
    # asking for checkout's identity as itself never yields it (refused, or its own)
    assert got["sign_victim_id_as_self"] in ("400", "403", own), got
    assert f"spiffe://{CHECKOUT_ID}" not in json.dumps(got)


def lease_holder(mesh: Mesh) -> str:
    out = mesh.kubectl("get", "lease", "tollway-control-plane", "-n", SYSTEM, "-o",
                       "jsonpath={.spec.holderIdentity}", check=False).stdout.strip()
    return out


def test_killing_the_leading_control_plane_pod_fails_no_request(mesh: Mesh) -> None:
    ns = mesh.new_namespace("ksec-cp")
    url = f"http://myapp.{ns}:8080/"
    mesh.apply([*seed_with_commands("canary", "01-canary-deployments.yaml", ns),
                service("myapp", ns),
                *in_ns(load_docs(SEED_DIR / "02-canary-split-90-10.yaml"), ns)])
    mesh.wait_ready("app=myapp", 4)
    mesh.apply([client(ns, [url], threads=2, pause=0.02)])
    mesh.wait_ready("app=client", 1)
    start = time.time()
    eventually(lambda: len([r for r in mesh.since(start, url) if r.get("ok")]) >= 100, 300,
               "steady traffic")
    planes = [p["metadata"]["name"] for p in json.loads(mesh.kubectl(
        "get", "pods", "-n", SYSTEM, "-l", "app.kubernetes.io/name=tollway", "-o",
        "json").stdout)["items"]]
    assert len(planes) == 2, planes
    leader = eventually(lambda: lease_holder(mesh) if lease_holder(mesh) in planes else "",
                        120, "a leader among the control-plane pods")
    killed = time.time()
    mesh.kubectl("delete", "pod", leader, "-n", SYSTEM, "--grace-period=0", "--force",
                 "--wait=false")
    new = eventually(lambda: (h := lease_holder(mesh)) != leader and h, 90,
                     "another replica holding the Lease")
    took = time.time() - killed
    print(f"lease moved from {leader} to {new} {took:.1f} s after the kill")
    assert took < 15 + 2 * 2 + 30  # lease duration + retry periods + a loaded host

    weights = in_ns(load_docs(SEED_DIR / "02-canary-split-90-10.yaml"), ns)[0]
    weights["spec"]["http"][0]["route"][0]["weight"] = 100
    weights["spec"]["http"][0]["route"][1]["weight"] = 0
    mesh.apply([weights])
    changed = time.time()

    def all_v1() -> Any:
        last = mesh.since(changed, url)[-200:]
        return len(last) == 200 and versions(last) == {"v1": 200}

    eventually(all_v1, 300, "the weight change applied after the failover")

    bad = in_ns(load_docs(SEED_DIR / "02-canary-split-90-10.yaml"), ns)[0]
    bad["metadata"]["name"] = "bad-after-failover"
    bad["spec"]["http"][0]["timeout"] = "ten seconds"
    proc = subprocess.run([str(mesh.cluster.bin_dir / "kubectl"), "apply", "-f", "-"],
                          input=json.dumps(bad), capture_output=True, text=True, timeout=120,
                          env=mesh.env)
    assert proc.returncode != 0, "a bad VirtualService was accepted after the failover"
    assert "spec.http[0].timeout" in proc.stderr, proc.stderr

    during = mesh.since(killed, url)  # every request sent from the kill on
    failed = [r for r in during if not r.get("ok")]
    print(f"{len(during)} requests from the kill to the end, {len(failed)} failed")
    if failed:
        from collections import Counter

        print(Counter(str(r.get("error"))[:120] for r in failed))
        print(f"failures from {failed[0]['t'] - killed:+.1f} s to "
              f"{failed[-1]['t'] - killed:+.1f} s after the kill")
        print(mesh.kubectl("get", "pods", "-n", ns, "-o", "wide").stdout)
        for pod in mesh.pods("app=client"):
            print(mesh.proxy_log(pod))
    assert len(during) > 200 and not failed, failed[:5]
