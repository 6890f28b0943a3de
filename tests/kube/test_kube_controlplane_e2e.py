"""`tollway control-plane --kubernetes` against a real kube-apiserver (`tollway dev cluster`).

`kubectl apply` is the only way config gets in: a VirtualService applied before its
DestinationRule is refused then accepted, each with its `Reconciled` condition written
back; a VirtualService naming a subset no rule defines is refused with the field named;
a pod with a sidecar becomes an endpoint at its pod IP and leaves when deleted.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ruamel.yaml import YAML

from tests.conftest import ROOT, SEED_DIR, DevCluster
from tests.conftest import eventually as poll

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster"), pytest.mark.timeout(1200)]


def eventually(check: Callable[[], Any], timeout: float = 90.0, what: str = "") -> Any:
    """The shared poll, also waiting out the control plane's HTTP errors while it starts."""
    return poll(check, timeout, what, retry_on=(httpx.HTTPError,))


def dump(docs: list[dict[str, Any]]) -> str:
    import io

    out = io.StringIO()
    YAML(typ="safe").dump_all(docs, out)
    return out.getvalue()


def apply(cluster: DevCluster, docs: list[dict[str, Any]]) -> None:
    proc = subprocess.run([str(cluster.bin_dir / "kubectl"), "apply", "-f", "-"],
                          input=dump(docs), capture_output=True, text=True, timeout=60,
                          env={"KUBECONFIG": str(cluster.kubeconfig), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr


@pytest.fixture
def namespace(dev_cluster: DevCluster) -> Iterator[str]:
    ns = f"k8scp-{uuid.uuid4().hex[:6]}"
    dev_cluster.kubectl("create", "namespace", ns)
    dev_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f",
                        str(ROOT / "charts" / "tollway" / "crds"), timeout=180)
    for crd in ("virtualservices", "destinationrules"):
        eventually(lambda crd=crd: "True" in dev_cluster.kubectl(  # type: ignore[misc]
            "get", f"crd/{crd}.networking.istio.io", "-o",
            "jsonpath={.status.conditions[?(@.type=='Established')].status}").stdout,
            120, f"CRD {crd} established")
    try:
        yield ns
    finally:
        dev_cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


class Plane:
    """One `tollway control-plane --kubernetes` process (a replica)."""

    def __init__(self, cluster: DevCluster, ns: str, folder: Path, name: str,
                 *extra: str) -> None:
        self.log = folder / f"{name}.log"
        self.name = name
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tollway", "control-plane", "--kubernetes",
                 "--kubeconfig", str(cluster.kubeconfig), "--listen", "127.0.0.1:0",
                 "--namespace", ns, "--id", name, "--state-dir", str(folder / name), *extra],
                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)

    def text(self) -> str:
        return self.log.read_text()

    def url(self) -> str:
        def ready() -> str | None:
            assert self.proc.poll() is None, self.text()
            m = re.search(r"serving on (http://127\.0\.0\.1:\d+)", self.text())
            return m.group(1) if m else None

        return str(eventually(ready, 120, f"{self.name}'s ready line"))

    def leads(self) -> bool:
        return f"{self.name} leads" in self.text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        print(self.text()[-3000:])


@pytest.fixture
def control_plane(dev_cluster: DevCluster, namespace: str, tmp_path: Path) -> Iterator[str]:
    plane = Plane(dev_cluster, namespace, tmp_path, "cp-0")
    try:
        yield plane.url()
    finally:
        plane.stop()


def condition(cluster: DevCluster, kind: str, ns: str, name: str) -> dict[str, Any] | None:
    proc = cluster.kubectl("get", kind, name, "-n", ns, "-o", "json")
    status = json.loads(proc.stdout).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == "Reconciled"), None)


def seed02(ns: str) -> dict[str, dict[str, Any]]:
    docs = [d for d in YAML(typ="safe").load_all((SEED_DIR / "02-canary-split-90-10.yaml")
                                                 .read_text()) if d]
    for d in docs:
        d["metadata"]["namespace"] = ns
    return {d["kind"]: d for d in docs}


def sidecar_pod(ns: str) -> dict[str, Any]:
    sleep = ["sleep", "3600"]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "myapp-v1-0", "namespace": ns,
                         "labels": {"app": "myapp", "version": "v1"}},
            "spec": {"automountServiceAccountToken": False, "terminationGracePeriodSeconds": 1,
                     "containers": [
                         {"name": "app", "image": "busybox", "command": sleep,
                          "ports": [{"containerPort": 8080}]},
                         {"name": "tollway-proxy", "image": "tollway", "command": sleep,
                          "ports": [{"name": "tollway-in", "containerPort": 15006}]}]}}


def test_kubectl_apply_reaches_the_store_with_status_and_pods_become_endpoints(
        dev_cluster: DevCluster, namespace: str, control_plane: str) -> None:
    ns, url = namespace, control_plane
    docs = seed02(ns)
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "myapp", "namespace": ns},
               "spec": {"selector": {"app": "myapp"},
                        "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}
    apply(dev_cluster, [service, sidecar_pod(ns), docs["VirtualService"]])

    refused = eventually(lambda: condition(dev_cluster, "virtualservice.networking.istio.io",
                                           ns, "myapp"), what="a Reconciled condition")
    assert refused["status"] == "False", refused
    assert "spec.http[0].route[0].destination.subset" in refused["message"]

    apply(dev_cluster, [docs["DestinationRule"]])
    eventually(lambda: (condition(dev_cluster, "virtualservice.networking.istio.io", ns, "myapp")
                        or {}).get("status") == "True", what="the VirtualService accepted")
    dr = condition(dev_cluster, "destinationrule.networking.istio.io", ns, "myapp")
    assert dr is not None and dr["status"] == "True"

    pod_ip = eventually(lambda: json.loads(dev_cluster.kubectl(
        "get", "pod", "myapp-v1-0", "-n", ns, "-o", "json").stdout)["status"].get("podIP"),
        120, "the pod's IP")
    host = f"myapp.{ns}.svc.cluster.local:80"

    def endpoints() -> list[dict[str, Any]]:
        data = httpx.get(f"{url}/debug/registryz", timeout=10).json()
        return list(data["endpoints"].get(host) or [])

    eps = eventually(endpoints, what=f"an endpoint for {host}")
    # as its EndpointSlice lists it: the pod IP at the targetPort, which the pod's capture
    # rules send to the sidecar's inbound 15006; mTLS, since the pod has a sidecar
    assert [(e["address"], e["port"]) for e in eps] == [(pod_ip, 8080)], eps
    assert eps[0]["labels"]["security.istio.io/tlsMode"] == "istio", eps

    bad = json.loads(json.dumps(docs["VirtualService"]))
    bad["metadata"]["name"] = "myapp-bad"
    bad["spec"]["http"][0]["route"][1]["destination"]["subset"] = "v3"
    apply(dev_cluster, [bad])
    cond = eventually(lambda: condition(dev_cluster, "virtualservice.networking.istio.io", ns,
                                        "myapp-bad"), what="the bad VirtualService's condition")
    assert cond["status"] == "False" and cond["reason"] == "Refused"
    assert "spec.http[0].route[1].destination.subset: subset 'v3'" in cond["message"], cond

    dev_cluster.kubectl("delete", "pod", "myapp-v1-0", "-n", ns, "--wait=false")
    eventually(lambda: endpoints() == [], what="the deleted pod's endpoint gone")


def test_a_service_account_token_gets_a_certificate_for_its_own_account_only(
        dev_cluster: DevCluster, namespace: str, control_plane: str) -> None:
    """TokenReview through real sockets: SA a's projected-style token (audience tollway)
    registers and is signed as a; as b it is refused (403); a token for the API server's
    audience, or a forged one, proves nothing (401)."""
    import asyncio

    from tollway.proxy import tls

    ns, url = namespace, control_plane
    for sa in ("a", "b"):
        dev_cluster.kubectl("create", "serviceaccount", sa, "-n", ns)

    def token(sa: str, *audience: str) -> str:
        args = ("--audience", audience[0]) if audience else ()
        return dev_cluster.kubectl("create", "token", sa, "-n", ns, *args).stdout.strip()

    tok_a, tok_b, tok_api = token("a", "tollway"), token("b", "tollway"), token("a")

    def register(name: str, sa: str, tok: str) -> int:
        return httpx.post(f"{url}/v1/register", timeout=20,
                          json={"node": {"name": name, "namespace": ns, "service_account": sa}},
                          headers={"Authorization": f"Bearer {tok}"}).status_code

    assert register(f"a-1.{ns}", "a", tok_a) == 200
    assert register(f"b-1.{ns}", "b", tok_a) == 403
    assert register(f"b-1.{ns}", "b", tok_api) == 401
    assert register(f"b-1.{ns}", "b", tok_a[:-4] + "AAAA") == 401
    assert register(f"b-1.{ns}", "b", tok_b) == 200
    id_a = f"spiffe://cluster.local/ns/{ns}/sa/a"
    id_b = f"spiffe://cluster.local/ns/{ns}/sa/b"

    async def main() -> None:
        creds = await tls.issue(id_a, tls.http_signer(url, f"a-1.{ns}", token=lambda: tok_a))
        assert creds.spiffe_id == id_a
        with pytest.raises(tls.SignRefused) as stolen:
            await tls.issue(id_b, tls.http_signer(url, f"b-1.{ns}", token=lambda: tok_a))
        assert stolen.value.status == 403
        with pytest.raises(tls.SignRefused) as wrong_audience:
            await tls.issue(id_a, tls.http_signer(url, f"a-1.{ns}", token=lambda: tok_api))
        assert wrong_audience.value.status == 401

    asyncio.run(main())


def test_two_replicas_share_one_ca_and_the_lease_moves_when_the_leader_dies(
        dev_cluster: DevCluster, namespace: str, tmp_path: Path) -> None:
    """Both replicas start at once: one CA Secret (race-safe create-or-get), both sign
    with its root; one leads; kill -9 the leader and the other takes the Lease within
    the lease duration (15 s) plus its retry period."""
    import asyncio

    from tollway.proxy import tls

    ns = namespace
    planes = [Plane(dev_cluster, ns, tmp_path, f"cp-{i}") for i in range(2)]
    try:
        urls = [p.url() for p in planes]
        dev_cluster.kubectl("create", "serviceaccount", "a", "-n", ns)
        tok = dev_cluster.kubectl("create", "token", "a", "-n", ns, "--audience",
                                  "tollway").stdout.strip()
        roots = []
        for url in urls:
            assert httpx.post(f"{url}/v1/register", timeout=20, headers={
                "Authorization": f"Bearer {tok}"}, json={"node": {
                    "name": f"a-1.{ns}", "namespace": ns, "service_account": "a"}}
            ).status_code == 200
            creds = asyncio.run(tls.issue(f"spiffe://cluster.local/ns/{ns}/sa/a",
                                          tls.http_signer(url, f"a-1.{ns}", token=lambda: tok)))
            roots.append(creds.roots)
        assert roots[0] == roots[1]
        secrets = dev_cluster.kubectl("get", "secrets", "-n", ns, "-o", "name").stdout.split()
        assert secrets.count("secret/tollway-ca") == 1

        leader = eventually(lambda: next((p for p in planes if p.leads()), None),
                            60, "a leader")
        other = next(p for p in planes if p is not leader)
        assert not other.leads()
        leader.proc.kill()
        killed = time.monotonic()
        eventually(other.leads, 60, "the other replica leading")
        took = time.monotonic() - killed
        print(f"lease handed over {took:.1f} s after the leader was killed")
        assert took < 15 + 2 * 2 + 5  # lease duration + retry periods + a loaded host
        holder = json.loads(dev_cluster.kubectl(
            "get", "lease", "tollway-control-plane", "-n", ns, "-o", "json").stdout)
        assert holder["spec"]["holderIdentity"] == other.name
        assert holder["spec"]["leaseTransitions"] >= 1
    finally:
        for p in planes:
            p.stop()


def test_kubectl_apply_of_a_bad_virtual_service_is_refused_by_the_webhook(
        dev_cluster: DevCluster, namespace: str, tmp_path: Path) -> None:
    """The webhook runs in the host process on the bridge IP (the API server runs in the
    host netns); its configuration is the one `render_configuration` makes, limited to
    this test's namespace so no other test's apply goes through it."""
    from tollway.kube import webhook

    ns, bridge = namespace, "10.244.0.1"
    plane = Plane(dev_cluster, ns, tmp_path, "cp-hook", "--webhook-listen", f"{bridge}:0")
    name = f"tollway-validation-{ns}"
    try:
        plane.url()
        m = re.search(r"validating webhook on (https://\S+/validate) \(CA (\S+)\)",
                      plane.text())
        assert m, plane.text()
        config = webhook.render_configuration(
            Path(m.group(2)).read_text(), url=m.group(1), name=name,
            namespace_selector={"matchLabels": {"kubernetes.io/metadata.name": ns}})
        apply(dev_cluster, [config])
        bad = seed02(ns)["VirtualService"]
        bad["spec"]["http"][0]["timeout"] = "ten seconds"

        attempts = iter(range(100))

        def refused() -> str:  # a fresh name each time: an early accept is not "unchanged"
            bad["metadata"]["name"] = f"bad-{next(attempts)}"
            proc = subprocess.run([str(dev_cluster.bin_dir / "kubectl"), "apply", "-f", "-"],
                                  input=dump([bad]), capture_output=True, text=True, timeout=60,
                                  env={"KUBECONFIG": str(dev_cluster.kubeconfig),
                                       "PATH": "/usr/bin:/bin"})
            assert proc.returncode != 0, "the bad VirtualService was accepted"
            return proc.stderr

        stderr = eventually(refused, 60, "the webhook refusing")
        assert "denied the request" in stderr, stderr
        assert "spec.http[0].timeout: 'ten seconds' is not a duration" in stderr, stderr
        good = seed02(ns)["VirtualService"]
        apply(dev_cluster, [good])
        assert dev_cluster.kubectl("get", "virtualservice.networking.istio.io", "myapp",
                                   "-n", ns, "-o", "name").stdout.strip()
    finally:
        dev_cluster.kubectl("delete", "validatingwebhookconfiguration", name,
                            "--ignore-not-found", check=False)
        plane.stop()


def test_a_revocation_on_one_replica_reaches_the_other_and_a_restarted_one(
        dev_cluster: DevCluster, namespace: str, tmp_path: Path) -> None:
    """`POST /v1/ca/revoke` on replica A is written to the CA Secret before it is answered;
    replica B (which served nothing of it) pushes the serial in its proxies' trust bundle
    within its follow period; a replica started afterwards has it from the start."""
    import base64

    ns = namespace
    planes = [Plane(dev_cluster, ns, tmp_path, f"cp-{i}") for i in range(2)]
    try:
        urls = [p.url() for p in planes]
        dev_cluster.kubectl("create", "serviceaccount", "a", "-n", ns)
        tok = dev_cluster.kubectl("create", "token", "a", "-n", ns, "--audience",
                                  "tollway").stdout.strip()
        node = f"a-1.{ns}"

        def admin(i: int) -> dict[str, str]:
            token = (tmp_path / f"cp-{i}" / "admin-token").read_text().strip()
            return {"Authorization": f"Bearer {token}"}

        def revoked_at(url: str, headers: dict[str, str]) -> list[str]:
            r = httpx.get(f"{url}/debug/configz", params={"proxy": node}, headers=headers,
                          timeout=20)
            assert r.status_code == 200, r.text
            trust = r.json()[node]["trust"]  # KeyError (retried) until it has a config
            return list(trust.get("revoked_serials", []))

        for url in urls:  # a proxy on each replica, so each compiles a trust bundle
            assert httpx.post(f"{url}/v1/register", timeout=20, headers={
                "Authorization": f"Bearer {tok}"}, json={"node": {
                    "name": node, "namespace": ns, "service_account": "a"}}).status_code == 200
        assert "abc123" not in eventually(lambda: revoked_at(urls[1], admin(1)) or ["-"], 60)

        r = httpx.post(f"{urls[0]}/v1/ca/revoke", json={"serial": "ABC123"}, timeout=20,
                       headers=admin(0))
        assert r.status_code == 200, r.text
        secret = json.loads(dev_cluster.kubectl("get", "secret", "tollway-ca", "-n", ns,
                                                "-o", "json").stdout)
        listed = base64.b64decode(secret["data"]["revoked-serials"]).decode().split()
        assert listed == ["abc123"]  # in the Secret by the time A answered
        eventually(lambda: "abc123" in revoked_at(urls[1], admin(1)), 30,
                   "replica B pushing the revocation made on A")

        late = Plane(dev_cluster, ns, tmp_path, "cp-2")
        planes.append(late)
        url = late.url()
        assert httpx.post(f"{url}/v1/register", timeout=20, headers={
            "Authorization": f"Bearer {tok}"}, json={"node": {
                "name": node, "namespace": ns, "service_account": "a"}}).status_code == 200
        assert "abc123" in eventually(lambda: revoked_at(url, admin(2)), 60)
    finally:
        for p in planes:
            p.stop()
