"""Sidecar injection on a real cluster (`tollway dev cluster`): a namespace labelled
`istio-injection=enabled` gets pods with tollway-init and tollway-proxy, the init container
really installs the capture rules in the pod's network namespace (exit 0), a pod labelled
`sidecar.istio.io/inject=false` is left alone.

The webhook server (tollway.kube.webhook, with /inject) runs on the host at the bridge IP,
as the API server runs in the host netns; the MutatingWebhookConfiguration is Istio's
namespace hook, limited to this test's namespace so no other test's pods go through it.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DevCluster
from tollway.devcluster import layout

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster"), pytest.mark.timeout(900)]

BRIDGE = str(layout.BRIDGE_IP)  # the API server reaches the host there
SERVER = """
import asyncio, sys
from pathlib import Path
from tollway.kube import inject, webhook
d = Path(sys.argv[1])
async def main():
    runner, port = await webhook.serve_webhook(
        sys.argv[2], 0, d / "tls.crt", d / "tls.key", inject.Settings(image="tollway:e2e"))
    print(port, flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


@pytest.fixture
def injector(tmp_path: Path) -> Iterator[tuple[str, str]]:
    from tollway.kube import webhook

    ca, cert, key = webhook.serving_credentials([BRIDGE])
    (tmp_path / "tls.crt").write_text(cert)
    (tmp_path / "tls.key").write_text(key)
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(tmp_path), BRIDGE],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().strip()
        assert port.isdigit(), "the webhook server did not start"
        yield f"https://{BRIDGE}:{port}/inject", ca
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _kubectl_in(cluster: DevCluster, doc: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(cluster.bin_dir / "kubectl"), "apply", "-f", "-"],
                          input=json.dumps(doc), capture_output=True, text=True, timeout=60,
                          env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)})


def _pod(name: str, ns: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"containers": [{"name": "app", "image": "app:1",
                                     "command": ["sleep", "3600"]}]}}


def test_a_labelled_namespace_gets_the_sidecar_and_capture(
        dev_cluster: DevCluster, injector: tuple[str, str]) -> None:
    url, ca = injector
    ns = f"inject-{uuid.uuid4().hex[:6]}"
    hook = f"tollway-injector-{ns}"
    config = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": hook},
        "webhooks": [{
            "name": "namespace.sidecar-injector.tollway.dev",
            "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "failurePolicy": "Fail", "timeoutSeconds": 10,
            "clientConfig": {"url": url, "caBundle": base64.b64encode(ca.encode()).decode()},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["pods"]}],
            "namespaceSelector": {"matchLabels": {"istio-injection": "enabled",
                                                  "kubernetes.io/metadata.name": ns}},
            "objectSelector": {"matchExpressions": [{
                "key": "sidecar.istio.io/inject", "operator": "NotIn", "values": ["false"]}]},
        }],
    }
    dev_cluster.kubectl("create", "namespace", ns)
    try:
        dev_cluster.kubectl("label", "namespace", ns, "istio-injection=enabled")
        done = _kubectl_in(dev_cluster, config)
        assert done.returncode == 0, done.stderr
        # the API server's webhook client may take a moment to see the new configuration
        deadline = time.monotonic() + 60
        while True:
            name = f"web-{uuid.uuid4().hex[:5]}"
            done = _kubectl_in(dev_cluster, _pod(name, ns, {"app": "web"}))
            assert done.returncode == 0, done.stderr
            pod = json.loads(dev_cluster.kubectl("get", "pod", name, "-n", ns,
                                                 "-o", "json").stdout)
            if pod["spec"].get("initContainers") or time.monotonic() > deadline:
                break
            time.sleep(2)
        names = [c["name"] for c in pod["spec"]["containers"]]
        assert names == ["app", "tollway-proxy"], names
        [init] = pod["spec"]["initContainers"]
        assert init["name"] == "tollway-init" and init["command"][:2] == ["tollway", "iptables"]
        assert pod["spec"]["containers"][0]["command"] == ["sleep", "3600"]  # untouched
        proxy = pod["spec"]["containers"][1]
        assert proxy["securityContext"]["runAsUser"] == 1337
        assert "sidecar.istio.io/status" in pod["metadata"]["annotations"]
        yaml_text = dev_cluster.kubectl("get", "pod", name, "-n", ns, "-o", "yaml").stdout
        assert "tollway-init" in yaml_text and "audience: tollway" in yaml_text

        def init_exit() -> int | None:
            got = json.loads(dev_cluster.kubectl("get", "pod", name, "-n", ns,
                                                 "-o", "json").stdout)
            for st in got.get("status", {}).get("initContainerStatuses", []):
                term = (st.get("state") or {}).get("terminated") or (
                    st.get("lastState") or {}).get("terminated")
                if term:
                    return int(term["exitCode"])
            return None

        deadline = time.monotonic() + 180
        code = init_exit()
        while code is None and time.monotonic() < deadline:
            time.sleep(2)
            code = init_exit()
        logs = dev_cluster.kubectl("logs", name, "-n", ns, "-c", "tollway-init",
                                   check=False).stdout
        assert code == 0, f"tollway-init did not install the capture rules ({code}): {logs}"

        opted_out = f"plain-{uuid.uuid4().hex[:5]}"
        done = _kubectl_in(dev_cluster, _pod(opted_out, ns, {"sidecar.istio.io/inject": "false"}))
        assert done.returncode == 0, done.stderr
        plain = json.loads(dev_cluster.kubectl("get", "pod", opted_out, "-n", ns,
                                               "-o", "json").stdout)
        assert [c["name"] for c in plain["spec"]["containers"]] == ["app"]
        assert not plain["spec"].get("initContainers")
    finally:
        dev_cluster.kubectl("delete", "mutatingwebhookconfiguration", hook,
                            "--ignore-not-found", check=False)
        dev_cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
