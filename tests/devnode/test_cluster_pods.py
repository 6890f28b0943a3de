"""Pods on a real local Kubernetes (`tollway dev cluster up`) run by the devnode agent.

Seed 01's Deployments (given a `command` each, since devnode runs commands, not images) plus a
Service: pods Running and Ready with their own IPs; another pod reaches them through the
Service's short name, full name and ClusterIP (real CoreDNS, real kube-proxy); scaling changes
pods and EndpointSlices; a deleted pod is replaced; a crashing container shows restarts in
`kubectl get pods`; `kubectl logs` reads through the agent's kubelet endpoint.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.conftest import EXAMPLES_DIR, SEED_DIR, DevCluster, eventually

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster"), pytest.mark.timeout(1200)]
NS = "devnode-e2e"


def seed01_with_commands() -> list[dict[str, Any]]:
    """Seed 01 with a `command` each: examples/canary's copy (`tollway demo-app`), as the README
    has users apply it; only a readiness probe is added, so Ready means serving."""
    yaml = YAML(typ="safe")
    seed = [d for d in yaml.load_all((SEED_DIR / "01-canary-deployments.yaml").read_text()) if d]
    text = (EXAMPLES_DIR / "canary" / "01-canary-deployments.yaml").read_text()
    docs = [d for d in yaml.load_all(text) if d]
    assert [d["metadata"]["name"] for d in docs] == [d["metadata"]["name"] for d in seed]
    for doc in docs:
        ctr = doc["spec"]["template"]["spec"]["containers"][0]
        assert ctr["command"] == ["tollway", "demo-app"]
        ctr["readinessProbe"] = {"httpGet": {"port": 8080, "path": "/"}, "periodSeconds": 2}
        doc["metadata"]["namespace"] = NS
    return docs


SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "myapp", "namespace": NS},
    "spec": {
        "selector": {"app": "myapp"},
        "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
    },
}

# Asks the Service by short name, full name and ClusterIP (from the Service link env vars the
# agent injects), prints one JSON line per attempt, forever.
CLIENT = r"""
import json, os, time, urllib.request
ip = os.environ.get("MYAPP_SERVICE_HOST", "")
fqdn = "http://myapp.%s.svc.cluster.local/" % os.environ["NS"]
targets = {"short": "http://myapp/", "fqdn": fqdn, "clusterip": "http://%s/" % ip}
while True:
    for name, url in targets.items():
        try:
            body = json.loads(urllib.request.urlopen(url, timeout=3).read())
            line = {"target": name, "ok": True, "version": body.get("version")}
        except Exception as e:
            line = {"target": name, "ok": False, "error": str(e)}
        print(json.dumps(line), flush=True)
    time.sleep(1)
"""


def client_pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "client", "namespace": NS},
        "spec": {
            "containers": [
                {
                    "name": "client",
                    "image": "client:1",
                    "command": [sys.executable, "-c", CLIENT],
                    "env": [
                        {
                            "name": "NS",
                            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                        }
                    ],
                }
            ]
        },
    }


def crasher() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "crasher", "namespace": NS},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "crasher"}},
            "template": {
                "metadata": {"labels": {"app": "crasher"}},
                "spec": {
                    "containers": [
                        {
                            "name": "c",
                            "image": "crash:1",
                            "command": ["sh", "-c", "echo up; exit 3"],
                        }
                    ]
                },
            },
        },
    }


def apply(cluster: DevCluster, docs: list[dict[str, Any]], tmp: Path) -> None:
    path = tmp / f"apply-{time.monotonic_ns()}.yaml"
    out = io.StringIO()
    YAML().dump_all(docs, out)
    path.write_text(out.getvalue())
    cluster.kubectl("apply", "-f", str(path))


def pods(cluster: DevCluster, selector: str) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "pods", "-n", NS, "-l", selector, "-o", "json").stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def ready_pods(cluster: DevCluster, selector: str, count: int) -> list[dict[str, Any]] | None:
    found = pods(cluster, selector)
    good = [
        p
        for p in found
        if p["status"].get("phase") == "Running"
        and p["status"].get("podIP")
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in p["status"].get("conditions", [])
        )
    ]
    return good if len(good) == count == len(found) else None


def slice_addresses(cluster: DevCluster) -> set[str]:
    out = cluster.kubectl(
        "get", "endpointslices", "-n", NS, "-l", "kubernetes.io/service-name=myapp", "-o", "json"
    ).stdout
    return {
        addr
        for s in json.loads(out)["items"]
        for ep in s.get("endpoints") or []
        if (ep.get("conditions") or {}).get("ready")
        for addr in ep["addresses"]
    }


@pytest.fixture(scope="module")
def app(dev_cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    tmp = tmp_path_factory.mktemp("devnode-e2e")
    dev_cluster.kubectl("create", "namespace", NS)
    apply(dev_cluster, [*seed01_with_commands(), SERVICE], tmp)
    eventually(lambda: ready_pods(dev_cluster, "app=myapp", 4), 240, "4 myapp pods Ready")
    apply(dev_cluster, [client_pod(), crasher()], tmp)
    try:
        yield dev_cluster
    finally:
        dev_cluster.kubectl("delete", "namespace", NS, "--wait=true", "--timeout=120s", check=False)


def test_seed01_pods_run_ready_with_own_ips(app: DevCluster) -> None:
    found = ready_pods(app, "app=myapp", 4)
    assert found is not None
    ips = {p["status"]["podIP"] for p in found}
    assert len(ips) == 4 and all(ip.startswith("10.244.") for ip in ips)
    assert {p["spec"]["nodeName"] for p in found} == {"tollway-dev"}
    versions = sorted(p["metadata"]["labels"]["version"] for p in found)
    assert versions == ["v1", "v1", "v1", "v2"]
    events = app.kubectl("get", "events", "-n", NS, "--field-selector", "reason=Pulled").stdout
    assert "not pulled: devnode runs the container's command on the host" in events
    assert slice_addresses(app) == ips


def test_a_pod_reaches_the_service_by_name_and_cluster_ip(app: DevCluster) -> None:
    def answered() -> set[str] | None:
        logs = app.kubectl("logs", "-n", NS, "client", "--tail=60").stdout
        lines = [json.loads(x) for x in logs.splitlines() if x.startswith("{")]
        ok = {x["target"] for x in lines if x["ok"] and x["version"] in ("v1", "v2")}
        return ok if ok == {"short", "fqdn", "clusterip"} else None

    eventually(answered, 180, "client reaching myapp by short name, FQDN and ClusterIP")


def test_scaling_changes_pods_and_endpoint_slices(app: DevCluster) -> None:
    app.kubectl("scale", "-n", NS, "deployment/myapp-v1", "--replicas=5")
    grown = eventually(lambda: ready_pods(app, "app=myapp", 6), 180, "6 myapp pods Ready")
    eventually(
        lambda: slice_addresses(app) == {p["status"]["podIP"] for p in grown}, 60, "6 slices"
    )
    app.kubectl("scale", "-n", NS, "deployment/myapp-v1", "--replicas=1")
    shrunk = eventually(lambda: ready_pods(app, "app=myapp", 2), 180, "2 myapp pods")
    eventually(
        lambda: slice_addresses(app) == {p["status"]["podIP"] for p in shrunk}, 60, "2 slices"
    )
    app.kubectl("scale", "-n", NS, "deployment/myapp-v1", "--replicas=3")
    eventually(lambda: ready_pods(app, "app=myapp", 4), 180, "back to 4")


def test_a_deleted_pod_is_replaced(app: DevCluster) -> None:
    before = ready_pods(app, "app=myapp,version=v2", 1)
    assert before is not None
    old = before[0]["metadata"]["name"]
    app.kubectl("delete", "pod", "-n", NS, old, "--wait=true", "--timeout=90s")
    after = eventually(lambda: ready_pods(app, "app=myapp,version=v2", 1), 180, "replacement Ready")
    assert after[0]["metadata"]["name"] != old
    assert after[0]["status"]["podIP"] in slice_addresses(app)


def test_a_crashing_container_shows_restarts(app: DevCluster) -> None:
    def restarting() -> str | None:
        table = app.kubectl("get", "pods", "-n", NS, "-l", "app=crasher", "--no-headers").stdout
        cols = table.split()
        return table if len(cols) >= 4 and cols[3].isdigit() and int(cols[3]) >= 2 else None

    table = eventually(restarting, 180, "crasher RESTARTS >= 2")
    assert (
        "CrashLoopBackOff" in table
        or "Error" in table
        or "Completed" in table
        or "Running" in table
    )
    pod = pods(app, "app=crasher")[0]
    status = pod["status"]["containerStatuses"][0]
    assert status["lastState"]["terminated"]["exitCode"] == 3
    assert app.kubectl("logs", "-n", NS, pod["metadata"]["name"], "--previous").stdout == "up\n"


PROBE = r"""
import json, os, socket
for name in ("CAPTURED", "PLAIN"):
    try:
        socket.create_connection((os.environ[name], 9999), timeout=3).close()
        print(json.dumps({name: "connected"}), flush=True)
    except OSError as e:
        print(json.dumps({name: type(e).__name__}), flush=True)
"""


def test_iptables_from_an_init_container_apply_to_that_pod_only(
    app: DevCluster, tmp_path: Path
) -> None:
    """What sidecar interception runs on: an init container's REDIRECT rule in its pod's netns."""
    redirect = [
        "iptables",
        "-t",
        "nat",
        "-A",
        "PREROUTING",
        "-p",
        "tcp",
        "--dport",
        "9999",
        "-j",
        "REDIRECT",
        "--to-ports",
        "8080",
    ]
    captured = seed01_with_commands()[1]["spec"]["template"]["spec"]  # a demo app on 8080
    captured["initContainers"] = [{"name": "capture", "image": "init:1", "command": redirect}]
    apply(
        app,
        [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "captured", "namespace": NS, "labels": {"role": "captured"}},
                "spec": captured,
            }
        ],
        tmp_path,
    )
    pod = eventually(lambda: ready_pods(app, "role=captured", 1), 180, "captured pod Ready")[0]
    plain = ready_pods(app, "app=myapp,version=v2", 1)
    assert plain is not None
    prober = client_pod()
    prober["metadata"]["name"] = "prober"
    prober["spec"]["restartPolicy"] = "Never"
    prober["spec"]["containers"][0]["command"] = [sys.executable, "-c", PROBE]
    prober["spec"]["containers"][0]["env"] = [
        {"name": "CAPTURED", "value": pod["status"]["podIP"]},
        {"name": "PLAIN", "value": plain[0]["status"]["podIP"]},
    ]
    apply(app, [prober], tmp_path)

    def result() -> dict[str, str] | None:
        logs = app.kubectl("logs", "-n", NS, "prober", check=False).stdout
        merged: dict[str, str] = {}
        for line in logs.splitlines():
            merged.update(json.loads(line))
        return merged if len(merged) == 2 else None

    # Port 9999 is redirected to the app only inside the captured pod's namespace.
    assert eventually(result, 120, "prober output") == {
        "CAPTURED": "connected",
        "PLAIN": "ConnectionRefusedError",
    }
    host_rules = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True)
    assert "--dport 9999" not in host_rules.stdout
