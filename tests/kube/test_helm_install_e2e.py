"""`helm install charts/tollway` on the real dev cluster, used through kubectl, then removed.

The chart as a user installs it: `helm install --wait` returns once the control-plane pod is
Running and Ready (its probes pass on the node agent); the API server reaches the validating
webhook through the chart's Service (443 -> 15017) with the chart's Helm-made certificate and
refuses a bad VirtualService naming the field; a good one gets `Reconciled` True from the
control plane's watch; the injecting webhook adds the sidecar to an opted-in pod (server
dry-run, so no pod is made); `helm uninstall` removes what the release made and keeps the
CRDs, as Helm does.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, DevCluster, eventually

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster"), pytest.mark.timeout(900)]

CHART = ROOT / "charts" / "tollway"
SYSTEM = "tollway-system"
NAME = "tollway-control-plane"


class Release:
    def __init__(self, cluster: DevCluster, home: Path, app_ns: str) -> None:
        self.cluster = cluster
        self.home = home
        self.app_ns = app_ns
        self.install_output = ""

    def helm(self, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig),
               "HELM_CACHE_HOME": str(self.home / "cache"),
               "HELM_CONFIG_HOME": str(self.home / "config"),
               "HELM_DATA_HOME": str(self.home / "data")}
        return subprocess.run([str(self.cluster.bin_dir / "helm"), *args,
                               "--kubeconfig", str(self.cluster.kubeconfig)],
                              capture_output=True, text=True, timeout=timeout, env=env)

    def kubectl_apply(self, text: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.cluster.bin_dir / "kubectl"), "apply", "-f", "-"],
                              input=text, capture_output=True, text=True, timeout=60,
                              env={**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig)})


@pytest.fixture(scope="module")
def release(dev_cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    app_ns = f"charte2e-{uuid.uuid4().hex[:6]}"
    rel = Release(dev_cluster, tmp_path_factory.mktemp("helm"), app_ns)
    try:
        proc = rel.helm("install", "tollway", str(CHART), "-n", SYSTEM, "--create-namespace",
                        "--wait", "--timeout", "5m")
        rel.install_output = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"helm install failed: {rel.install_output}"
        dev_cluster.kubectl("create", "namespace", app_ns)
        yield rel
    finally:
        # Idempotent: the last test uninstalls and checks; this only cleans up after a failure.
        rel.helm("uninstall", "tollway", "-n", SYSTEM, "--wait", "--timeout", "2m")
        dev_cluster.kubectl("delete", "namespace", app_ns, SYSTEM, "--wait=false",
                            "--ignore-not-found", check=False)


def pods(cluster: DevCluster) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "pods", "-n", SYSTEM, "-l",
                          "app.kubernetes.io/name=tollway", "-o", "json").stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def test_install_waits_for_a_running_ready_control_plane(release: Release) -> None:
    [pod] = pods(release.cluster)
    assert pod["status"]["phase"] == "Running", pod["status"]
    ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert ready["Ready"] == "True", pod["status"]["conditions"]
    assert pod["status"].get("podIP"), pod["status"]
    logs = release.cluster.kubectl("logs", "-n", SYSTEM, pod["metadata"]["name"]).stdout
    assert "validating webhook on https://0.0.0.0:15017/validate" in logs, logs
    # The Service the webhook configurations name has the pod behind its webhook port.
    eps = release.cluster.kubectl("get", "endpointslices", "-n", SYSTEM, "-l",
                                  f"kubernetes.io/service-name={NAME}", "-o", "json").stdout
    addresses = {a for s in json.loads(eps)["items"] for e in s.get("endpoints") or []
                 for a in e["addresses"]}
    assert pod["status"]["podIP"] in addresses, eps


def virtual_service(ns: str, name: str, timeout: str) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {ns}}}
spec:
  hosts: [web]
  http:
  - timeout: {timeout}
    route:
    - destination: {{host: web}}
"""


def test_validation_webhook_refuses_a_bad_virtualservice_naming_the_field(
        release: Release) -> None:
    proc = release.kubectl_apply(virtual_service(release.app_ns, "bad", "ten seconds"))
    assert proc.returncode != 0, proc.stdout
    assert 'admission webhook "validation.tollway.dev" denied the request' in proc.stderr, \
        proc.stderr
    assert "VirtualService/bad: spec.http[0].timeout: 'ten seconds' is not a duration" \
        in proc.stderr, proc.stderr
    missing = release.cluster.kubectl("get", "virtualservice", "bad", "-n", release.app_ns,
                                      check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr, missing.stdout


def test_good_virtualservice_is_reconciled(release: Release) -> None:
    release.cluster.kubectl("create", "service", "clusterip", "web", "--tcp=80:8080",
                            "-n", release.app_ns)
    proc = release.kubectl_apply(virtual_service(release.app_ns, "good", "10s"))
    assert proc.returncode == 0, proc.stderr

    def reconciled() -> dict[str, Any] | None:
        out = release.cluster.kubectl("get", "virtualservice", "good", "-n", release.app_ns,
                                      "-o", "json").stdout
        for c in json.loads(out).get("status", {}).get("conditions", []):
            if c["type"] == "Reconciled" and c["status"] == "True":
                assert c["reason"] == "Accepted", c
                return dict(c)
        return None

    eventually(reconciled, 120, "Reconciled=True on VirtualService good")


def test_injection_webhook_adds_the_sidecar_to_an_opted_in_pod(release: Release) -> None:
    # Server-side dry-run runs the mutating webhooks (sideEffects: None) and makes no pod.
    out = release.cluster.kubectl(
        "run", "web", "-n", release.app_ns, "--image=tollway-demo:1",
        "--labels=sidecar.istio.io/inject=true", "--dry-run=server", "-o", "json").stdout
    pod = json.loads(out)
    names = [c["name"] for c in pod["spec"]["containers"]]
    assert names[0] == "web" and "tollway-proxy" in names, names
    plain = json.loads(release.cluster.kubectl(
        "run", "plain", "-n", release.app_ns, "--image=tollway-demo:1", "--dry-run=server",
        "-o", "json").stdout)
    assert [c["name"] for c in plain["spec"]["containers"]] == ["plain"]


def test_uninstall_removes_the_release_and_keeps_the_crds(release: Release) -> None:
    proc = release.helm("uninstall", "tollway", "-n", SYSTEM, "--wait", "--timeout", "2m")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cluster = release.cluster
    for kind, name, ns in [("deployment", NAME, SYSTEM), ("service", NAME, SYSTEM),
                           ("serviceaccount", NAME, SYSTEM), ("configmap", "istio", SYSTEM),
                           ("secret", f"{NAME}-webhook-tls", SYSTEM), ("role", NAME, SYSTEM),
                           ("clusterrole", f"{NAME}-{SYSTEM}", None),
                           ("clusterrolebinding", f"{NAME}-{SYSTEM}", None),
                           ("validatingwebhookconfiguration", f"tollway-validator-{SYSTEM}", None),
                           ("mutatingwebhookconfiguration",
                            f"tollway-sidecar-injector-{SYSTEM}", None)]:
        args = ["get", kind, name, *(["-n", ns] if ns else [])]
        got = cluster.kubectl(*args, check=False)
        assert got.returncode != 0 and "NotFound" in got.stderr, f"{kind}/{name} left: {got.stdout}"
    eventually(lambda: not pods(cluster), 120, "control-plane pods gone")
    # What the control plane made at run time stays, as istiod's `istio-ca-secret` does: the
    # mesh's root survives a reinstall (docs/kubernetes.md).
    cluster.kubectl("get", "secret", "tollway-ca", "-n", SYSTEM)
    # Helm never deletes CRDs: objects of the kinds (the good VirtualService) stay readable.
    cluster.kubectl("get", "crd", "virtualservices.networking.istio.io")
    cluster.kubectl("get", "virtualservice", "good", "-n", release.app_ns)
    # With the webhook gone, nothing answers for the kinds any more: a bad object is now
    # kept by the CRD schema alone (timeout is a string there).
    assert release.kubectl_apply(
        virtual_service(release.app_ns, "after", "ten seconds")).returncode == 0
