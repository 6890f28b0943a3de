"""Helpers for e2e tests that run traffic through injected sidecars on the dev cluster.

As users do it: `helm install tollway charts/tollway -n tollway-system --create-namespace`,
`kubectl label namespace NS istio-injection=enabled`, `kubectl apply` of the seeds (copied
from examples/, which only add a `command` and env for the dev node), and a meshed client
pod whose app calls `http://SERVICE.NS:PORT/` with no proxy settings. The dev node has no
`kubectl exec`, so the client prints one JSON line per request and tests read
`kubectl logs`.

Shared by the mesh tests (tests/kube/test_mesh_*_e2e.py): `installed_mesh()` is the
module fixture's body.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from tests.conftest import EXAMPLES_DIR, ROOT, SEED_DIR, DevCluster, eventually

CHART = ROOT / "charts" / "tollway"
SYSTEM = "tollway-system"

# The client app: plain urllib to the URLs in $TARGETS (comma separated), $THREADS
# concurrent loops, one JSON line per request: {"n", "t", "url", "ok", "status",
# "version", "xfcc", "error"} (xfcc: the x-forwarded-client-cert the demo app was sent,
# which the server's sidecar sets only for an mTLS peer). No proxy env: the pod's capture
# rules take it to the sidecar.
CLIENT = r"""
import json, os, threading, time, urllib.request, urllib.error
targets = [u for u in os.environ["TARGETS"].split(",") if u]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
lock = threading.Lock()
count = [0]
def loop():
    while True:
        for url in targets:
            t = time.time()
            line = {"url": url, "t": round(t, 3)}
            try:
                with opener.open(url, timeout=10) as r:
                    body = json.loads(r.read())
                seen = {k.lower(): v for k, v in (body.get("headers") or {}).items()}
                line.update(ok=True, status=r.status, version=body.get("version"),
                            xfcc=seen.get("x-forwarded-client-cert", ""))
            except urllib.error.HTTPError as e:
                line.update(ok=False, status=e.code, error=str(e),
                            body=e.read()[:300].decode(errors="replace"))
            except Exception as e:
                line.update(ok=False, status=0, error=repr(e))
            with lock:
                count[0] += 1
                line["n"] = count[0]
                print(json.dumps(line), flush=True)
            time.sleep(float(os.environ.get("PAUSE", "0.05")))
for _ in range(int(os.environ.get("THREADS", "1"))):
    threading.Thread(target=loop, daemon=True).start()
while True:
    time.sleep(3600)
"""


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in YAML(typ="safe").load_all(path.read_text()) if d]


def seed_with_commands(example: str, seed: str, namespace: str,
                       probe: bool = True) -> list[dict[str, Any]]:
    """The examples/ copy of a seed (it adds `command` and env for the dev node), checked
    to have the seed's objects, with a readiness httpGet probe on the app (so Ready means
    serving, and the injector's probe rewriting is exercised)."""
    seed_docs = load_docs(SEED_DIR / seed)
    docs = load_docs(EXAMPLES_DIR / example / seed)
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == \
        [(d["kind"], d["metadata"]["name"]) for d in seed_docs]
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
        if doc["kind"] == "Deployment" and probe:
            ctr = doc["spec"]["template"]["spec"]["containers"][0]
            ctr["readinessProbe"] = {"httpGet": {"port": 8080, "path": "/"},
                                     "periodSeconds": 2}
    return docs


def service(name: str, namespace: str, port: int = 8080, selector: dict[str, str] | None = None
            ) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": selector or {"app": name},
                     "ports": [{"name": "http", "port": port, "targetPort": 8080}]}}


def client(namespace: str, targets: list[str], name: str = "client", threads: int = 1,
           pause: float = 0.05, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, **(labels or {})}},
                "spec": {"containers": [{
                    "name": name, "image": "client:1",
                    "command": [sys.executable, "-c", CLIENT],
                    "env": [{"name": "TARGETS", "value": ",".join(targets)},
                            {"name": "THREADS", "value": str(threads)},
                            {"name": "PAUSE", "value": str(pause)}],
                }]},
            },
        },
    }


class Mesh:
    """The chart installed on the dev cluster and one injection-enabled namespace."""

    def __init__(self, cluster: DevCluster, home: Path, namespace: str) -> None:
        self.cluster = cluster
        self.home = home
        self.ns = namespace
        self.namespaces = [namespace]
        self.env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig),
                    "HELM_CACHE_HOME": str(home / "cache"),
                    "HELM_CONFIG_HOME": str(home / "config"),
                    "HELM_DATA_HOME": str(home / "data")}

    def helm(self, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.cluster.bin_dir / "helm"), *args], capture_output=True,
                              text=True, timeout=timeout, env=self.env)

    def kubectl(self, *args: str, check: bool = True, timeout: float = 120,
                stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(self.cluster.bin_dir / "kubectl"), *args], input=stdin,
                              capture_output=True, text=True, timeout=timeout, env=self.env)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr}")
        return proc

    def new_namespace(self, prefix: str) -> str:
        """Another namespace labelled istio-injection=enabled, removed with the mesh;
        it becomes `self.ns` (what the other helpers use)."""
        ns = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.namespaces.append(ns)
        self.kubectl("create", "namespace", ns)
        self.kubectl("label", "namespace", ns, "istio-injection=enabled")
        self.ns = ns
        return ns

    def apply(self, docs: list[dict[str, Any]]) -> str:
        text = "\n---\n".join(json.dumps(d) for d in docs)
        return self.kubectl("apply", "-f", "-", stdin=text).stdout

    def pods(self, selector: str) -> list[dict[str, Any]]:
        out = self.kubectl("get", "pods", "-n", self.ns, "-l", selector, "-o", "json").stdout
        items: list[dict[str, Any]] = json.loads(out)["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def wait_ready(self, selector: str, count: int, sidecar: bool = True,
                   timeout: float = 300) -> list[dict[str, Any]]:
        """`count` pods Ready with every container ready (2/2 with the sidecar)."""
        def ready() -> list[dict[str, Any]] | None:
            found = self.pods(selector)
            good = []
            for p in found:
                names = [c["name"] for c in p["spec"]["containers"]]
                if sidecar != ("tollway-proxy" in names):
                    raise AssertionError(f"pod {p['metadata']['name']} containers {names}")
                statuses = p["status"].get("containerStatuses") or []
                if len(statuses) == len(names) and all(s.get("ready") for s in statuses):
                    good.append(p)
            return good if len(good) == count and len(found) == count else None

        result: list[dict[str, Any]] = eventually(
            ready, timeout, f"{count} pods {selector} ready in {self.ns}")
        return result

    def lines(self, deployment: str = "client", tail: int = 4000) -> list[dict[str, Any]]:
        pods = self.pods(f"app={deployment}")
        if not pods:
            return []
        out = self.kubectl("logs", "-n", self.ns, pods[0]["metadata"]["name"], "-c",
                           deployment, f"--tail={tail}", check=False).stdout
        rows = []
        for line in out.splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
        return rows

    def since(self, t: float, url: str | None = None, deployment: str = "client"
              ) -> list[dict[str, Any]]:
        return [r for r in self.lines(deployment) if r.get("t", 0) >= t
                and (url is None or r.get("url") == url)]

    def proxy_log(self, pod: dict[str, Any]) -> str:
        return self.kubectl("logs", "-n", self.ns, pod["metadata"]["name"], "-c",
                            "tollway-proxy", "--tail=50", check=False).stdout


def versions(rows: list[dict[str, Any]]) -> Counter[str]:
    return Counter(str(r.get("version") if r.get("ok") else f"error:{r.get('status')}")
                   for r in rows)


@contextmanager
def installed_mesh(cluster: DevCluster, home: Path, prefix: str, *helm_args: str
                   ) -> Iterator[Mesh]:
    """helm install (waited; `helm_args` e.g. `--set controlPlane.replicas=2`), a namespace
    labelled istio-injection=enabled; afterwards the namespaces (`mesh.namespaces`) and the
    release are removed whatever happened."""
    mesh = Mesh(cluster, home, "")
    mesh.namespaces = []
    try:
        proc = mesh.helm("install", "tollway", str(CHART), "-n", SYSTEM, "--create-namespace",
                         "--wait", "--timeout", "5m", *helm_args)
        assert proc.returncode == 0, f"helm install failed: {proc.stdout}{proc.stderr}"
        mesh.new_namespace(prefix)
        yield mesh
    finally:
        if mesh.namespaces:
            mesh.kubectl("delete", "namespace", *mesh.namespaces, "--wait=false",
                         "--ignore-not-found", check=False)
        mesh.helm("uninstall", "tollway", "-n", SYSTEM, "--wait", "--timeout", "2m")
        mesh.kubectl("delete", "namespace", SYSTEM, "--wait=false", "--ignore-not-found",
                     check=False)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the next test's install needs them gone
            left = mesh.kubectl("get", "namespace", *mesh.namespaces, SYSTEM,
                                "--ignore-not-found", "-o", "name", check=False).stdout.strip()
            if not left:
                break
            time.sleep(2)
