"""Seeds 14+15 (an Argo Rollout) and seed 08 (a Flagger Canary) on the dev cluster, with
real traffic through injected sidecars.

As users run it: `helm install tollway charts/tollway` (the control plane's Lease holder
runs the rollout controller), a namespace labelled `istio-injection=enabled`, `kubectl
apply` of the Rollout/Canary, and a meshed client pod calling `http://SERVICE:8080/` with
no proxy settings. The mesh's Prometheus is the Debian `prometheus` binary on the host,
scraping each sidecar where the injector's `prometheus.io/scrape|port|path` annotations
say (the status port 15020; the test lists the pods for it, see HostPrometheus). In the cluster
it is `http://prometheus.monitoring:9090`, seed 15's address as written: a Service
without selector whose EndpointSlice points at the host's bridge address, the way the dev
cluster serves CoreDNS.

What the test copies change, and why:
- the examples/ copies (a `command` for the dev node, `tollway demo-app`), replicas 10 ->
  2, pauses 5m/10m -> 2s, metric intervals 1m -> 2s;
- seed 15's queries name namespace `payments`; the copy names the test's namespace;
- the healthy rollout: success-rate gets `count: 3` (as written it measures until it
  fails, so each analysis step would wait for a human);
- the bad rollout: seed 15 as written again (no count), and the first `setWeight` 5 ->
  50: the query is service-wide, so at 5% weight a canary failing 5% of requests moves
  it to ~99.75% and passes `>= 0.99` (arithmetic; Argo does the same); at 50% it goes to
  ~97.5% once the canary's traffic outweighs the stable-only history in `rate()[5m]`.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import EXAMPLES_DIR, DevCluster, eventually, free_port
from tests.kube.meshcluster import (
    CHART,
    SYSTEM,
    Mesh,
    client,
    installed_mesh,
    load_docs,
    service,
)

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster"), pytest.mark.timeout(1800),
              pytest.mark.prometheus]
BRIDGE = "10.244.0.1"
NAME = "payment-service"


class HostPrometheus:
    """`prometheus` on the host's bridge address, scraping the meshed pods of the mesh's
    namespaces (`mesh.namespaces`: each test's own).

    Debian's prometheus is built without Kubernetes service discovery, so this plays it:
    every 2 s the pods of those namespaces whose `prometheus.io/scrape` annotation is
    "true" (the injector sets it, with `prometheus.io/port|path`: the sidecar's status port
    15020) are written to a file_sd list, as kubernetes_sd's pod role would find them."""

    def __init__(self, mesh: Mesh, folder: Path) -> None:
        exe = shutil.which("prometheus")
        if exe is None:
            pytest.fail("the prometheus binary is required (apt-get install prometheus)")
        self.mesh = mesh
        self.port = free_port()
        self.targets = folder / "targets.json"
        self.targets.write_text("[]")
        config = folder / "prometheus.yml"
        config.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "sidecars", "file_sd_configs": [
                {"files": [str(self.targets)], "refresh_interval": "2s"}]}]}))
        self.proc = subprocess.Popen(
            [exe, f"--config.file={config}", f"--storage.tsdb.path={folder / 'prom'}",
             f"--web.listen-address={BRIDGE}:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://{BRIDGE}:{self.port}"
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._discover, daemon=True)
        self.thread.start()

    def _discover(self) -> None:
        while not self.stopping.wait(2.0):
            out = self.mesh.kubectl("get", "pods", "--all-namespaces", "-o", "json",
                                    check=False)
            try:
                pods = json.loads(out.stdout)["items"]
            except ValueError:
                continue
            groups = []
            watched = set(self.mesh.namespaces)
            for pod in pods:
                if pod["metadata"]["namespace"] not in watched:
                    continue
                ann = pod["metadata"].get("annotations") or {}
                ip = (pod.get("status") or {}).get("podIP")
                if ann.get("prometheus.io/scrape") != "true" or not ip or \
                        pod["metadata"].get("deletionTimestamp"):
                    continue
                groups.append({"targets": [f"{ip}:{ann.get('prometheus.io/port', '15020')}"],
                               "labels": {"__metrics_path__": ann.get("prometheus.io/path",
                                                                      "/stats/prometheus"),
                                          "pod": pod["metadata"]["name"]}})
            tmp = self.targets.with_suffix(".tmp")
            tmp.write_text(json.dumps(groups))
            tmp.replace(self.targets)

    def in_cluster(self) -> list[dict[str, Any]]:
        """`prometheus.monitoring:9090` -> this process (Service + EndpointSlice)."""
        return [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "monitoring"}},
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "prometheus", "namespace": "monitoring"},
             "spec": {"ports": [{"name": "http", "port": 9090, "targetPort": self.port}]}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": "prometheus-host", "namespace": "monitoring",
                          "labels": {"kubernetes.io/service-name": "prometheus"}},
             "addressType": "IPv4", "endpoints": [{"addresses": [BRIDGE]}],
             "ports": [{"name": "http", "port": self.port, "protocol": "TCP"}]},
        ]

    def query(self, promql: str) -> list[Any]:
        try:
            r = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        except httpx.HTTPError:
            return []  # still starting
        result: list[Any] = r.json()["data"]["result"]
        return result

    def stop(self) -> None:
        self.stopping.set()
        self.proc.terminate()
        self.proc.wait(15)


@pytest.fixture(scope="module")
def shared_mesh(dev_cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[tuple[Mesh, HostPrometheus]]:
    """One chart install (+ the upgrade naming the mesh's Prometheus) for the module: ~40 s
    of helm and Prometheus start-up each test would pay again. Tests stay apart by
    namespace (`mesh`); every query they make names theirs."""
    home = tmp_path_factory.mktemp("rollouts")
    with installed_mesh(dev_cluster, home, "rollouts") as m:
        prom = HostPrometheus(m, home)
        try:
            m.apply(prom.in_cluster())
            # the chart's value for the mesh's Prometheus (seed 15's p99 metric names no
            # address; Flagger's built-ins need a metrics server)
            done = m.helm("upgrade", "tollway", str(CHART), "-n", SYSTEM, "--reuse-values",
                          "--set", "rollouts.prometheusUrl=http://prometheus.monitoring:9090",
                          "--wait", "--timeout", "5m")
            assert done.returncode == 0, done.stdout + done.stderr
            # as a user would next: `kubectl apply` the moment `helm upgrade --wait` returns
            # (a valid VirtualService, so the validating webhook must be called and admit it)
            probe = json.dumps({"apiVersion": "networking.istio.io/v1beta1",
                                "kind": "VirtualService",
                                "metadata": {"name": "probe", "namespace": m.ns},
                                "spec": {"hosts": ["probe"], "http": [
                                    {"route": [{"destination": {"host": "probe"}}]}]}})
            tried = m.kubectl("apply", "--dry-run=server", "-f", "-", stdin=probe,
                              check=False)
            assert tried.returncode == 0, \
                f"kubectl apply right after helm upgrade --wait: {tried.stderr}"
            yield m, prom
        except BaseException:
            print(m.kubectl("logs", "-n", SYSTEM, "deploy/tollway-control-plane",
                            "--tail=80", check=False).stdout)
            raise
        finally:
            prom.stop()
            m.kubectl("delete", "namespace", "monitoring", "--wait=false",
                      "--ignore-not-found", check=False)


@pytest.fixture
def mesh(shared_mesh: tuple[Mesh, HostPrometheus]) -> Iterator[tuple[Mesh, HostPrometheus]]:
    """The module's mesh seen from a namespace of the test's own (labelled for injection,
    scraped by the Prometheus, deleted afterwards): a test never sees another's objects,
    pods or series, whatever the order."""
    base, prom = shared_mesh
    ns = base.new_namespace("rollouts")
    own = Mesh(base.cluster, base.home, ns)
    try:
        yield own, prom
    finally:
        base.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found",
                     check=False)


def rollout_docs(ns: str) -> dict[str, dict[str, Any]]:
    docs = {d["kind"]: d for d in load_docs(EXAMPLES_DIR / "rollout" / "14-argo-rollout.yaml")
            + load_docs(EXAMPLES_DIR / "rollout" / "15-analysis-template.yaml")
            + load_docs(EXAMPLES_DIR / "rollout" / "routing.yaml")
            if d["kind"] != "Namespace"}
    for d in docs.values():
        d["metadata"]["namespace"] = ns
    spec = docs["Rollout"]["spec"]
    spec["replicas"] = 2
    for step in spec["strategy"]["canary"]["steps"]:
        if "pause" in step:
            step["pause"] = {"duration": "2s"}
    ctr = spec["template"]["spec"]["containers"][0]
    ctr["readinessProbe"] = {"httpGet": {"port": 8080, "path": "/"}, "periodSeconds": 2}
    ctr.setdefault("ports", [{"containerPort": 8080}])
    for m in docs["AnalysisTemplate"]["spec"]["metrics"]:
        m["provider"]["prometheus"]["query"] = m["provider"]["prometheus"]["query"].replace(
            f"{NAME}.payments.svc", f"{NAME}.{ns}.svc")
        if m["name"] == "success-rate":
            m["interval"] = "2s"
    docs["Service"] = service(NAME, ns)
    return docs


def status(mesh: Mesh, kind: str, name: str) -> dict[str, Any]:
    out = mesh.kubectl("get", kind, name, "-n", mesh.ns, "-o", "json").stdout
    st: dict[str, Any] = json.loads(out).get("status") or {}
    return st


def set_env(container: dict[str, Any], **env: str) -> None:
    keep = [e for e in container.get("env") or [] if e["name"] not in env]
    container["env"] = keep + [{"name": k, "value": v} for k, v in env.items()]


def test_seed14_15_rollout_steps_with_analysis_runs_and_aborts_a_5pct_canary(
    mesh: tuple[Mesh, HostPrometheus],
) -> None:
    m, prom = mesh
    ns = m.ns
    docs = rollout_docs(ns)
    healthy_template = copy.deepcopy(docs["AnalysisTemplate"])
    for metric in healthy_template["spec"]["metrics"]:
        if metric["name"] == "success-rate":
            metric["count"] = 3
    m.apply([docs["Service"], docs["DestinationRule"], docs["VirtualService"],
             healthy_template, docs["Rollout"]])
    eventually(lambda: status(m, "rollout", NAME).get("phase") == "Healthy", 300, "Healthy")
    m.wait_ready(f"app={NAME}", 2)
    m.apply([client(ns, [f"http://{NAME}:8080/"], threads=2, pause=0.05)])
    m.wait_ready("app=client", 1)
    svc = f'destination_service="{NAME}.{ns}.svc.cluster.local"'
    eventually(lambda: prom.query(f"sum(rate(istio_requests_total{{{svc}}}[1m]))"), 180,
               "Prometheus sees the sidecars' request counts")

    # a new image-tag (a new env in our dev node): steps through the weights with runs
    rollout = docs["Rollout"]
    set_env(rollout["spec"]["template"]["spec"]["containers"][0], VERSION="v2")
    m.apply([rollout])
    seen: set[str] = set()

    steps = rollout["spec"]["strategy"]["canary"]["steps"]

    def at_gate() -> bool:
        # the manual gate (autoPromotionEnabled: false) before the last step, not the timed
        # pause after setWeight 50: both read Paused at 50%, and a promote during the timed
        # pause skips that pause (as Argo's does), leaving the gate waiting
        st = status(m, "rollout", NAME)
        w = (st.get("canary") or {}).get("weights", {}).get("canary", {}).get("weight")
        seen.add(str(w))
        return st.get("phase") == "Paused" and w == 50 and \
            st.get("currentStepIndex") == len(steps) - 1

    eventually(at_gate, 300, "paused at the manual gate at 50%")
    assert {"5", "20", "50"} <= seen, seen
    runs = json.loads(m.kubectl("get", "analysisruns", "-n", ns, "-o", "json").stdout)["items"]
    good = [r for r in runs if (r.get("status") or {}).get("phase") == "Successful"]
    assert len(good) >= 2, [(r["metadata"]["name"], r.get("status")) for r in runs]
    rows = m.since(time.time() - 20)
    assert rows and all(r["ok"] for r in rows), [r for r in rows if not r["ok"]][:5]
    assert {"v1", "v2"} <= {r.get("version") for r in rows}
    m.kubectl("annotate", "rollout", NAME, "-n", ns,
              "tollway.dev/rollout-command=" + json.dumps(
                  {"id": uuid.uuid4().hex, "action": "promote", "actor": "e2e"}))
    eventually(lambda: status(m, "rollout", NAME).get("phase") == "Healthy", 180, "promoted")

    # a canary answering 5% errors: seed 15 as written (no count), first weight 50
    m.apply([docs["AnalysisTemplate"]])
    bad = copy.deepcopy(rollout)
    bad["spec"]["strategy"]["canary"]["steps"][0] = {"setWeight": 50}
    set_env(bad["spec"]["template"]["spec"]["containers"][0], VERSION="v3",
            ERROR_RATE="0.05")
    m.apply([bad])
    st = eventually(lambda: (s := status(m, "rollout", NAME)).get("abort") and s, 400,
                    "aborted on the canary's errors")
    assert st["phase"] == "Degraded" and "Failed" in st["message"], st["message"]
    assert st["canary"]["weights"]["canary"]["weight"] == 0
    vs = json.loads(m.kubectl("get", "virtualservice", NAME, "-n", ns, "-o", "json").stdout)
    assert [r["weight"] for r in vs["spec"]["http"][0]["route"]] == [100, 0]
    only_answered_by(m, "v2")
    out = m.kubectl("get", "rollout", NAME, "-n", ns, "-o", "yaml").stdout
    for field in ("currentPodHash:", "stableRS:", "currentStepIndex:", "abort: true"):
        assert field in out, field



def only_answered_by(m: Mesh, version: str) -> list[dict[str, Any]]:
    """The last 4 s of the client's traffic, once it was all answered by `version`.

    Waited for (60 s): the VirtualService a test reads from the API server comes before
    the control plane's watch, rebuild and push carry it to the client's sidecar, so a
    fixed 5 s then 4 s of rows only hoped the push had landed a second after it."""
    def last() -> list[dict[str, Any]]:
        rows = m.since(time.time() - 4)
        seen = sorted({str(r.get("version")) for r in rows if r["ok"]})
        assert rows and seen == [version], f"the last 4 s: {len(rows)} requests, {seen}"
        return rows

    rows: list[dict[str, Any]] = eventually(last, 60, f"only {version} answering")
    return rows


def canary_phase(m: Mesh, phase: str, timeout: float) -> list[tuple[float, str, int, int]]:
    """Wait for the Canary `api` to reach `phase`; (time, phase, weight, failedChecks) as
    seen on the way, and on a timeout the control plane's log in the failure."""
    seen: list[tuple[float, str, int, int]] = []

    def reached() -> bool:
        st = status(m, "canary", "api")
        now = (round(time.time(), 1), str(st.get("phase")), int(st.get("canaryWeight") or 0),
               int(st.get("failedChecks") or 0))
        if not seen or seen[-1][1:] != now[1:]:
            seen.append(now)
        return now[1] == phase

    try:
        eventually(reached, timeout, f"Canary {phase}")
    except AssertionError as e:
        logs = m.kubectl("logs", "-n", SYSTEM, "deploy/tollway-control-plane", "--tail=60",
                         check=False).stdout
        raise AssertionError(f"{e}\nseen: {seen}\ncontrol plane:\n{logs}") from None
    return seen


def test_seed08_flagger_canary_promotes_then_rolls_back_a_5pct_canary(
    mesh: tuple[Mesh, HostPrometheus],
) -> None:
    """Seed 08 as written but for time (analysis interval 1m -> 5s, metric windows 1m ->
    30s, threshold 5 -> 2, maxWeight 50 -> 30) and without its load-test webhook (the meshed
    client is the load): Flagger's built-in metrics come from the sidecars through the
    mesh's Prometheus. Why 5s/30s and not less: a window must hold enough of the canary's
    requests for 5% errors to show (rate() never counts a counter's first sample, so the
    first 500 of each new series is invisible); with 2s/10s a 5%-error canary once passed
    three checks in a row at 10-30% of the traffic and was promoted."""
    m, prom = mesh
    ns = m.ns
    deployment = load_docs(EXAMPLES_DIR / "flagger" / "workloads.yaml")[0]
    canary = load_docs(EXAMPLES_DIR / "flagger" / "08-flagger-canary.yaml")[0]
    for d in (deployment, canary):
        d["metadata"]["namespace"] = ns
    ctr = deployment["spec"]["template"]["spec"]["containers"][0]
    ctr["readinessProbe"] = {"httpGet": {"port": 8080, "path": "/"}, "periodSeconds": 2}
    analysis = canary["spec"]["analysis"]
    analysis.update({"interval": "5s", "threshold": 2, "maxWeight": 30})
    analysis.pop("webhooks")
    for metric in analysis["metrics"]:
        metric["interval"] = "30s"
    m.apply([deployment, canary])
    eventually(lambda: status(m, "canary", "api").get("phase") == "Initialized", 300,
               "Initialized")
    m.wait_ready("app=api-primary", 2)
    eventually(lambda: not m.pods("app=api"), 120, "the target scaled to zero")
    m.apply([client(ns, ["http://api:8080/"], threads=4, pause=0.02)])
    m.wait_ready("app=client", 1)
    wl = f'destination_workload="api-primary",destination_workload_namespace="{ns}"'
    eventually(lambda: prom.query(f'sum(rate(istio_requests_total{{{wl}}}[1m]))'), 180,
               "Prometheus sees the primary's sidecars")

    # a new revision: the target comes back as the canary, 10 -> 20 -> 30, then promoted
    started = time.time()
    set_env(ctr, VERSION="v2")
    m.apply([deployment])
    timeline = canary_phase(m, "Succeeded", 400)
    print("promotion:", timeline)
    weights = {w for _, _, w, _ in timeline}
    assert {10, 20} <= weights, timeline
    wl = f'destination_workload="api",destination_workload_namespace="{ns}"'
    # (over a range: the canary's pods, scaled to zero now, left Prometheus's targets)
    assert prom.query(f'sum(max_over_time(istio_requests_total{{{wl},reporter="destination"}}'
                      '[15m]))'), "the canary's sidecars were never measured"
    m.wait_ready("app=api-primary", 2)
    # Ready pods reach the client's sidecar later (watch, rebuild, push): waited for, where
    # a fixed 5 s only hoped the last 40 answers came from them
    eventually(lambda: {r.get("version") for r in m.since(started)[-40:]} == {"v2"}, 60,
               "the last 40 answers from the primary's v2")
    rows = m.since(started)
    failed = [r for r in rows if not r["ok"]]
    if failed:
        print(m.proxy_log(m.pods("app=client")[0]))
        print(m.kubectl("get", "pods", "-n", ns, "-o", "wide").stdout)
        print(m.kubectl("get", "events", "-n", ns, "--sort-by=.lastTimestamp").stdout[-6000:])
    assert rows and not failed, ([(r["t"], r["status"], r.get("body")) for r in failed[:5]],
                                 timeline)
    assert {"v1", "v2"} <= {r.get("version") for r in rows}
    assert {r.get("version") for r in rows[-40:]} == {"v2"}  # the primary now runs v2
    eventually(lambda: not m.pods("app=api"), 120, "the target scaled to zero again")

    # a canary answering 5% errors: request-success-rate 95 < 99 twice -> rolled back
    set_env(ctr, VERSION="v3", ERROR_RATE="0.05")
    m.apply([deployment])
    print("rollback:", canary_phase(m, "Failed", 400))
    st = status(m, "canary", "api")
    assert st["failedChecks"] >= 2 and st["canaryWeight"] == 0, st
    vs = json.loads(m.kubectl("get", "virtualservice", "api", "-n", ns, "-o", "json").stdout)
    assert {r["destination"]["host"]: r.get("weight", 0)
            for r in vs["spec"]["http"][-1]["route"]} == {"api-primary": 100, "api-canary": 0}
    only_answered_by(m, "v2")
    eventually(lambda: not m.pods("app=api"), 120, "the target scaled to zero after the rollback")
