"""The rollout controller on a real kube-apiserver (`tollway dev cluster`), seeds 14 + 15.

`tollway control-plane --kubernetes` (the Lease holder) reconciles a Rollout applied with
kubectl: ReplicaSets labelled `rollouts-pod-template-hash`, the DestinationRule's subsets
and the VirtualService's weights patched step by step, AnalysisRun objects whose outcome
comes from a real Prometheus, and Argo's status through the status subresource; the
`tollway rollout` commands work with `--kubeconfig -n`.

The metrics here come from a real `prometheus` on the host scraping a small exporter the
test drives (Istio's `istio_requests_total` / duration histogram for the service), not
from sidecars: this test is about the reconciler against the API server. The full path
with injected sidecars carrying the traffic is tests/kube/test_rollout_mesh_e2e.py.

What the test copy of the seeds changes, and why: replicas 10 -> 2 (one machine), the
5m/10m pauses and the 1m interval -> 2s, seed 15's success-rate metric gets `count: 5`
(as written it measures until it fails, so every analysis step would wait for a human;
tests/rollout/test_seed14_15_prometheus_e2e.py keeps that and promotes through it), and
containers get a `command` (the dev node runs commands, it pulls no images). The
template names `http://prometheus.monitoring:9090`; the control plane runs on the host
here, so `--prometheus-url` maps that in-cluster name to the host's Prometheus.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from ruamel.yaml import YAML

from tests.conftest import ROOT, SEED_DIR, DevCluster, free_port
from tests.kube.test_kube_controlplane_e2e import Plane, apply, eventually, namespace

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster"), pytest.mark.timeout(1200),
              pytest.mark.prometheus]
__all__ = ["namespace"]  # the fixture, shared with the control plane's e2e
NAME = "payment-service"


class Exporter:
    """Istio-shaped counters for one service, growing at 20 requests/s with a share of
    5xx the test sets (what the sidecars would report)."""

    def __init__(self, *selectors: str) -> None:
        self.selectors = selectors
        self.error_ratio = 0.0
        self.ok = 0.0
        self.errors = 0.0
        self.last = time.monotonic()
        self.lock = threading.Lock()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.text().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.port = self.server.server_address[1]

    def text(self) -> str:
        with self.lock:
            now = time.monotonic()
            n = 20 * (now - self.last)
            self.last = now
            self.errors += n * self.error_ratio
            self.ok += n * (1 - self.error_ratio)
            ok, errors = self.ok, self.errors
        lines = []
        for sel in self.selectors:
            base = f'{sel},reporter="destination"'
            lines += [f'istio_requests_total{{{base},response_code="200"}} {ok:.3f}',
                      f'istio_requests_total{{{base},response_code="500"}} {errors:.3f}']
            total = ok + errors
            for le in ("10", "50", "100", "250", "+Inf"):
                count = total * (0.2 if le == "10" else 1.0)
                lines.append(f'istio_request_duration_milliseconds_bucket{{{base},le="{le}"}} '
                             f"{count:.3f}")
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def prometheus(tmp_path: Path, namespace: str) -> Iterator[tuple[str, Exporter]]:
    exe = shutil.which("prometheus")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the prometheus binary is required in CI (apt-get install prometheus)")
        pytest.skip("prometheus binary not installed (apt-get install prometheus)")
    exporter = Exporter(  # seed 15's queries name the service in `payments`, as written
        f'destination_service="{NAME}.payments.svc.cluster.local"',
        f'destination_workload="api",destination_workload_namespace="{namespace}"')
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n- job_name: sidecars\n"
        f"  static_configs: [{{targets: ['127.0.0.1:{exporter.port}']}}]\n")
    port = free_port()
    proc = subprocess.Popen(
        [exe, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'prom'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        def scraped() -> bool:
            r = httpx.get(f"{url}/api/v1/query", params={
                "query": "sum(rate(istio_requests_total[5m]))"}, timeout=5)
            return r.status_code == 200 and bool(r.json()["data"]["result"])

        eventually(scraped, 60, "Prometheus has two samples of the exporter")
        yield url, exporter
    finally:
        proc.terminate()
        proc.wait(10)
        exporter.close()


def seeds(ns: str) -> list[dict[str, Any]]:
    yaml = YAML(typ="safe")
    rollout = next(d for d in yaml.load_all((SEED_DIR / "14-argo-rollout.yaml").read_text())
                   if d)
    template = next(d for d in yaml.load_all((SEED_DIR / "15-analysis-template.yaml")
                                             .read_text()) if d)
    rollout["metadata"]["namespace"] = template["metadata"]["namespace"] = ns
    spec = rollout["spec"]
    spec["replicas"] = 2
    for step in spec["strategy"]["canary"]["steps"]:
        if "pause" in step:
            step["pause"] = {"duration": "2s"}
    ctr = spec["template"]["spec"]["containers"][0]
    ctr["command"] = ["sleep", "3600"]
    ctr["env"] = [{"name": "VERSION", "value": "v1"}]
    for metric in template["spec"]["metrics"]:
        if metric["name"] == "success-rate":
            metric["interval"] = "2s"
            metric["count"] = 5  # > failureLimit 3: four failures can end it Failed
    labels = {"app": NAME}
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": NAME, "namespace": ns},
               "spec": {"selector": labels, "ports": [{"name": "http", "port": 8080}]}}
    rule = {"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
            "metadata": {"name": NAME, "namespace": ns},
            "spec": {"host": NAME, "subsets": [{"name": "stable", "labels": labels},
                                               {"name": "canary", "labels": labels}]}}
    vs = {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
          "metadata": {"name": NAME, "namespace": ns},
          "spec": {"hosts": [NAME], "http": [{"name": "primary", "route": [
              {"destination": {"host": NAME, "subset": "stable"}, "weight": 100},
              {"destination": {"host": NAME, "subset": "canary"}, "weight": 0}]}]}}
    return [service, rule, vs, template, rollout]


def get(cluster: DevCluster, kind: str, ns: str, name: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(cluster.kubectl("get", kind, name, "-n", ns, "-o",
                                                     "json").stdout)
    return out


def status(cluster: DevCluster, ns: str) -> dict[str, Any]:
    st: dict[str, Any] = get(cluster, "rollout", ns, NAME).get("status") or {}
    return st


def weights(cluster: DevCluster, ns: str) -> dict[str, int]:
    route = get(cluster, "virtualservice", ns, NAME)["spec"]["http"][0]["route"]
    return {r["destination"]["subset"]: int(r.get("weight", 0)) for r in route}


def replica_sets(cluster: DevCluster, ns: str) -> dict[str, dict[str, Any]]:
    items = json.loads(cluster.kubectl("get", "replicasets", "-n", ns, "-o", "json").stdout)
    return {i["metadata"]["labels"]["rollouts-pod-template-hash"]: i for i in items["items"]
            if "rollouts-pod-template-hash" in (i["metadata"].get("labels") or {})}


def tollway(cluster: DevCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tollway", "rollout", *args,
                           "--kubeconfig", str(cluster.kubeconfig)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_argo_rollout_on_the_cluster_steps_with_analysis_runs_and_aborts_on_errors(
    dev_cluster: DevCluster, namespace: str, tmp_path: Path,
    prometheus: tuple[str, Exporter],
) -> None:
    url, exporter = prometheus
    ns = namespace
    plane = Plane(dev_cluster, ns, tmp_path, "cp-0", "--prometheus-url", url)
    try:
        plane.url()
        apply(dev_cluster, seeds(ns))

        # first sight: the template is stable, one ReplicaSet with Argo's hash label
        def healthy() -> dict[str, Any] | None:
            st = status(dev_cluster, ns)
            return st if st.get("phase") == "Healthy" and st.get("stableRS") else None

        st = eventually(healthy, 120, "Rollout Healthy")
        h1 = st["stableRS"]
        rs = eventually(lambda: replica_sets(dev_cluster, ns).get(h1), 60, "ReplicaSet")
        assert rs["metadata"]["name"] == f"{NAME}-{h1}"
        assert rs["metadata"]["ownerReferences"][0]["kind"] == "Rollout"
        assert rs["spec"]["selector"]["matchLabels"]["rollouts-pod-template-hash"] == h1
        eventually(lambda: (replica_sets(dev_cluster, ns)[h1].get("status") or {})
                   .get("readyReplicas") == 2, 120, "stable pods ready")
        subsets = {s["name"]: s["labels"] for s in
                   get(dev_cluster, "destinationrule", ns, NAME)["spec"]["subsets"]}
        assert subsets["stable"]["rollouts-pod-template-hash"] == h1
        conditions = {c["type"]: c for c in st["conditions"]}
        assert conditions["Healthy"]["status"] == "True"
        assert conditions["Reconciled"]["status"] == "True"  # the control plane's, kept

        # a new revision (new env): 5% to the canary, then analysis runs as objects
        dev_cluster.kubectl("patch", "rollout", NAME, "-n", ns, "--type", "json", "-p",
                            json.dumps([{"op": "replace", "path":
                                         "/spec/template/spec/containers/0/env/0/value",
                                         "value": "v2"}]))
        st = eventually(lambda: (s := status(dev_cluster, ns)).get("currentPodHash") != h1
                        and s, 60, "new revision seen")
        h2 = st["currentPodHash"]
        eventually(lambda: weights(dev_cluster, ns) == {"stable": 95, "canary": 5}, 120,
                   "canary at 5%")
        subsets = {s["name"]: s["labels"] for s in
                   get(dev_cluster, "destinationrule", ns, NAME)["spec"]["subsets"]}
        assert subsets["canary"]["rollouts-pod-template-hash"] == h2
        assert h2 in replica_sets(dev_cluster, ns)

        def run_done() -> dict[str, Any] | None:
            items = json.loads(dev_cluster.kubectl("get", "analysisruns", "-n", ns, "-o",
                                                   "json").stdout)["items"]
            done = [i for i in items if (i.get("status") or {}).get("phase") == "Successful"]
            assert done, [(i["metadata"]["name"], i.get("status")) for i in items]
            return done[0]

        run = eventually(run_done, 120, "an AnalysisRun Successful")
        assert run["metadata"]["labels"]["rollouts-pod-template-hash"] == h2
        assert run["metadata"]["ownerReferences"][0]["name"] == NAME
        results = {m["name"]: m for m in run["status"]["metricResults"]}
        assert results["success-rate"]["successful"] == 5
        assert results["p99-latency"]["phase"] == "Successful"
        assert "istio_requests_total" in json.dumps(run["spec"]["metrics"])

        # the manual gate before the last step (autoPromotionEnabled: false): promote it
        # with the CLI, against the cluster
        # (not the timed pause after setWeight 50, which also reads Paused at 50%: a promote
        # there skips that pause, as Argo's does, and the gate then waits for another)
        steps = seeds(ns)[-1]["spec"]["strategy"]["canary"]["steps"]

        def at_gate() -> bool:
            st = status(dev_cluster, ns)
            return st.get("phase") == "Paused" and st.get("currentStepIndex") == \
                len(steps) - 1 and weights(dev_cluster, ns)["canary"] == 50

        eventually(at_gate, 180, "paused at the gate with 50%")
        shown = tollway(dev_cluster, "status", NAME, "-n", ns)
        assert shown.returncode == 0, shown.stderr
        assert "Paused" in shown.stdout and "analysis" in shown.stdout, shown.stdout
        done = tollway(dev_cluster, "promote", NAME, "-n", ns, "--reason", "e2e")
        assert done.returncode == 0, done.stderr
        st = eventually(lambda: (s := status(dev_cluster, ns)).get("phase") == "Healthy"
                        and s.get("stableRS") == h2 and s, 120, "promoted to h2")
        assert weights(dev_cluster, ns) == {"stable": 100, "canary": 0}
        assert st["currentStepIndex"] == len(seeds(ns)[-1]["spec"]["strategy"]["canary"]
                                             ["steps"])
        assert st["canary"]["weights"]["stable"]["podTemplateHash"] == h2

        # a bad canary: the success-rate run fails -> abort, all to stable. (The fake
        # exporter's errors are service-wide and seed 15's rate()[5m] reads the whole
        # history, so it answers 50% errors to move the ratio below 0.99 within the
        # analysis; 5% from the canary alone is the mesh e2e's case.)
        exporter.error_ratio = 0.5
        changed = tollway(dev_cluster, "set-image", NAME, "payment-service:v2.2.0", "-n", ns,
                          "--env", "VERSION=v3")
        assert changed.returncode == 0, changed.stderr

        def aborted() -> dict[str, Any] | None:
            s = status(dev_cluster, ns)
            return s if s.get("abort") and s.get("phase") == "Degraded" else None

        st = eventually(aborted, 180, "aborted")
        assert weights(dev_cluster, ns) == {"stable": 100, "canary": 0}
        assert st["stableRS"] == h2 and st["currentPodHash"] != h2
        assert "Failed" in st["message"], st["message"]
        conditions = {c["type"]: c for c in st["conditions"]}
        assert conditions["Progressing"]["reason"] == "RolloutAborted"
        items = json.loads(dev_cluster.kubectl("get", "analysisruns", "-n", ns, "-o",
                                               "json").stdout)["items"]
        assert any((i.get("status") or {}).get("phase") == "Failed" for i in items)
        yaml_out = dev_cluster.kubectl("get", "rollout", NAME, "-n", ns, "-o", "yaml").stdout
        for field in ("currentPodHash:", "stableRS:", "currentStepIndex:", "abort: true",
                      "abortedAt:", "canary:", "weights:", "observedGeneration:"):
            assert field in yaml_out, field
    finally:
        plane.stop()


def seed08(ns: str) -> list[dict[str, Any]]:
    """Seed 08's Canary with its target Deployment. The copy: intervals 1m -> 2s (metrics
    10s), threshold 5 -> 2, maxWeight 50 -> 30 (three steps), and no load-test webhook
    (the exporter stands for the traffic here)."""
    canary = next(d for d in YAML(typ="safe").load_all(
        (SEED_DIR / "08-flagger-canary.yaml").read_text()) if d)
    canary["metadata"]["namespace"] = ns
    analysis = canary["spec"]["analysis"]
    analysis.update({"interval": "2s", "threshold": 2, "maxWeight": 30})
    analysis.pop("webhooks")
    for m in analysis["metrics"]:
        m["interval"] = "10s"
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "api", "namespace": ns},
                  "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "api"}},
                           "template": {"metadata": {"labels": {"app": "api"}}, "spec": {
                               "containers": [{"name": "api", "image": "api:v1",
                                               "command": ["sleep", "3600"],
                                               "env": [{"name": "VERSION", "value": "v1"}]}]}}}}
    return [deployment, canary]


def canary_status(cluster: DevCluster, ns: str) -> dict[str, Any]:
    st: dict[str, Any] = get(cluster, "canary", ns, "api").get("status") or {}
    return st


def test_flagger_canary_on_the_cluster_promotes_then_rolls_back_on_errors(
    dev_cluster: DevCluster, namespace: str, tmp_path: Path,
    prometheus: tuple[str, Exporter],
) -> None:
    url, exporter = prometheus
    ns = namespace
    plane = Plane(dev_cluster, ns, tmp_path, "cp-0", "--prometheus-url", url)
    try:
        plane.url()
        apply(dev_cluster, seed08(ns))

        st = eventually(lambda: (s := canary_status(dev_cluster, ns)).get("phase")
                        == "Initialized" and s, 180, "Canary Initialized")
        assert {c["type"]: c["status"] for c in st["conditions"]}["Promoted"] == "True"
        primary = get(dev_cluster, "deployment", ns, "api-primary")
        assert primary["metadata"]["ownerReferences"][0]["kind"] == "Canary"
        assert primary["spec"]["selector"]["matchLabels"] == {"app": "api-primary"}
        eventually(lambda: get(dev_cluster, "deployment", ns, "api")["spec"]["replicas"] == 0,
                   60, "target scaled to zero")
        for svc, app in (("api", "api-primary"), ("api-primary", "api-primary"),
                         ("api-canary", "api")):
            assert get(dev_cluster, "service", ns, svc)["spec"]["selector"]["app"] == app

        def split() -> dict[str, int]:
            route = get(dev_cluster, "virtualservice", ns, "api")["spec"]["http"][-1]["route"]
            return {r["destination"]["host"]: int(r.get("weight", 0)) for r in route}

        assert split() == {"api-primary": 100, "api-canary": 0}

        # a new revision: the target comes back, weights 10 -> 20 -> 30, then promotion
        dev_cluster.kubectl("set", "env", "deployment/api", "-n", ns, "VERSION=v2")
        seen: set[int] = set()

        def promoted() -> bool:
            with_weight = split()["api-canary"]
            seen.add(with_weight)
            st = canary_status(dev_cluster, ns)
            return st.get("phase") == "Succeeded"

        eventually(promoted, 240, "Canary Succeeded")
        assert {10, 20} <= seen, seen
        env = get(dev_cluster, "deployment", ns, "api-primary")["spec"]["template"]["spec"][
            "containers"][0]["env"]
        assert {"name": "VERSION", "value": "v2"} in env
        eventually(lambda: split() == {"api-primary": 100, "api-canary": 0}, 60, "all primary")

        # errors: every check fails -> failedChecks reaches 2 -> Failed, all to primary
        exporter.error_ratio = 0.05
        time.sleep(12)  # the 10 s window holds only erroring traffic
        shown = tollway(dev_cluster, "set-image", "api", "api:v3", "-n", ns, "--env",
                        "VERSION=v3")
        assert shown.returncode == 0, shown.stderr
        st = eventually(lambda: (s := canary_status(dev_cluster, ns)).get("phase")
                        == "Failed" and s, 180, "Canary Failed")
        assert st["failedChecks"] >= 2 and st["canaryWeight"] == 0
        assert split() == {"api-primary": 100, "api-canary": 0}
        eventually(lambda: get(dev_cluster, "deployment", ns, "api")["spec"]["replicas"] == 0,
                   60, "target scaled to zero after the rollback")
        env = get(dev_cluster, "deployment", ns, "api-primary")["spec"]["template"]["spec"][
            "containers"][0]["env"]
        assert {"name": "VERSION", "value": "v2"} in env  # the primary kept the good one
        listed = tollway(dev_cluster, "list", "-n", ns)
        assert "Failed" in listed.stdout, listed.stdout
    finally:
        plane.stop()
