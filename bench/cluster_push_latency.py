"""Push latency on the cluster: `kubectl apply` of a weight change -> the last sidecar enforcing it.

The mesh as users run it on `tollway dev cluster`: `helm install tollway charts/tollway`, a
namespace labelled `istio-injection=enabled`, seed 01's two Deployments scaled to N pods in
all (each gets an injected tollway-proxy; the app container only sleeps, since only the
sidecars matter here), a Service and seed 02's VirtualService and DestinationRule. Each
change is a `kubectl apply` of the VirtualService with new weights; the clock starts just
before kubectl runs and stops at the last of the N sidecars' ACK of the snapshot that
carries it (a sidecar ACKs only once the new snapshot is live: ProxyServer.apply). The ACK
times come from the control plane's /debug/syncz (`acks`, on CLOCK_MONOTONIC, which this
process shares with the control plane's pod: the dev node runs pods as host processes).

    python bench/cluster_push_latency.py                 # N = 10 and 50, 10 changes each
    python bench/cluster_push_latency.py --pods 10 --changes 5 --kubeconfig K

The chart is installed with `--set sidecar.resources.requests.cpu=10m` (--sidecar-cpu): at
its default 100m the scheduler fits only ~18 injected pods on the 2-CPU dev node.
Without --kubeconfig it takes the host's dev-cluster lock (as the tests' `dev_cluster`
fixture does), runs `tollway dev cluster up` in a temporary state dir and `down` at the end.
Prints p50 / p90 / max per N and the kubectl call alone (API round trip + client start).
Compare with `python bench/push_latency.py --n 10` / `--n 50` (`tollway up`'s path).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "tollway"
SEED = ROOT / "tests" / "data" / "seed"
SYSTEM = "tollway-system"
LOCK = Path("/run/tollway/test-dev-cluster.lock")


class Cluster:
    def __init__(self, kubeconfig: Path, bin_dir: Path, home: Path) -> None:
        self.bin_dir = bin_dir
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig),
                    "HELM_CACHE_HOME": str(home / "cache"),
                    "HELM_CONFIG_HOME": str(home / "config"),
                    "HELM_DATA_HOME": str(home / "data")}

    def run(self, tool: str, *args: str, stdin: str | None = None, check: bool = True,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(self.bin_dir / tool), *args], input=stdin, text=True,
                              capture_output=True, env=self.env, timeout=timeout)
        if check and proc.returncode != 0:
            raise SystemExit(f"{tool} {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def kubectl(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run("kubectl", *args, **kw)

    def apply(self, docs: list[dict[str, Any]]) -> None:
        self.kubectl("apply", "-f", "-", stdin="\n---\n".join(json.dumps(d) for d in docs))


def seed_docs(name: str, ns: str) -> list[dict[str, Any]]:
    from ruamel.yaml import YAML

    docs = [d for d in YAML(typ="safe").load_all((SEED / name).read_text()) if d]
    for d in docs:
        d["metadata"]["namespace"] = ns
    return docs


def workloads(ns: str, n: int) -> list[dict[str, Any]]:
    """Seed 01's Deployments, N pods in all, the app only sleeping (no probe: Ready is the
    sidecar's readiness, i.e. it has its first snapshot)."""
    docs = seed_docs("01-canary-deployments.yaml", ns)
    for d, replicas in zip(docs, (n - n // 2, n // 2), strict=True):
        d["spec"]["replicas"] = replicas
        ctr = d["spec"]["template"]["spec"]["containers"][0]
        ctr["command"] = ["sleep", "infinity"]
        d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 2
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "myapp", "namespace": ns},
           "spec": {"selector": {"app": "myapp"},
                    "ports": [{"name": "http", "port": 8080, "targetPort": 8080}]}}
    return [*docs, svc]


def wait_ready(c: Cluster, ns: str, n: int, timeout: float = 1800) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        items = json.loads(c.kubectl("get", "pods", "-n", ns, "-l", "app=myapp", "-o",
                                     "json").stdout)["items"]
        live = [p for p in items if not p["metadata"].get("deletionTimestamp")]
        ready = [p for p in live if len(p["spec"]["containers"]) == 2
                 and all(s.get("ready") for s in p["status"].get("containerStatuses") or [])
                 and len(p["status"].get("containerStatuses") or []) == 2]
        if len(ready) == n and len(live) == n:
            return time.monotonic() - start
        time.sleep(3)
    raise SystemExit(f"{n} pods not 2/2 Ready in {ns} after {timeout:.0f}s")


def control_plane_url(c: Cluster) -> str:
    items = json.loads(c.kubectl("get", "pods", "-n", SYSTEM, "-l",
                                 "app.kubernetes.io/name=tollway", "-o", "json").stdout)["items"]
    ips = [p["status"]["podIP"] for p in items if p["status"].get("podIP")]
    if not ips:
        raise SystemExit("the control plane pod has no IP")
    return f"http://{ips[0]}:15010"


def acks(url: str, ns: str) -> dict[str, dict[str, Any]]:
    data = httpx.get(f"{url}/debug/syncz", timeout=10).json()
    desired = {p["name"]: p["version"] for p in data["proxies"]}
    out = {}
    for name, a in data["acks"].items():
        if name.endswith(f".{ns}"):
            out[name] = {**a, "desired": desired.get(name, "")}
    return out


def wait_synced(url: str, ns: str, n: int, timeout: float = 600) -> dict[str, dict[str, Any]]:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        now = acks(url, ns)
        if len(now) >= n and all(a["acked"] and a["acked"] == a["desired"]
                                 for a in now.values()):
            return now
        time.sleep(0.5)
    raise SystemExit(f"{n} sidecars in {ns} not in sync after {timeout:.0f}s")


def one_change(c: Cluster, url: str, ns: str, n: int, vs: dict[str, Any], w1: int
               ) -> tuple[float, float, float]:
    """(to the last sidecar, to the first, kubectl alone) in seconds."""
    before = wait_synced(url, ns, n)
    routes = vs["spec"]["http"][0]["route"]
    routes[0]["weight"], routes[1]["weight"] = w1, 100 - w1
    text = json.dumps(vs)
    t0 = time.monotonic()
    c.kubectl("apply", "-f", "-", stdin=text)
    kubectl_done = time.monotonic() - t0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        now = acks(url, ns)
        moved = [a for name, a in now.items()
                 if a["acked"] != before.get(name, {}).get("acked") and a["acked"]
                 and a["acked"] == a["desired"]]
        if len(moved) >= n:
            times = [a["acked_at"] - t0 for a in moved]
            return max(times), min(times), kubectl_done
        time.sleep(0.05)
    raise SystemExit(f"the weight change did not reach all {n} sidecars in 120 s")


def measure(c: Cluster, ns: str, n: int, changes: int) -> dict[str, float]:
    c.apply(workloads(ns, n))
    took = wait_ready(c, ns, n)
    url = control_plane_url(c)
    vs = next(d for d in seed_docs("02-canary-split-90-10.yaml", ns)
              if d["kind"] == "VirtualService")
    wait_synced(url, ns, n)
    last, first, kube = [], [], []
    for i in range(changes):
        w1 = 90 - 10 * ((i % 4) + 1)  # 80, 70, 60, 50, 80, ...: always a new snapshot
        a, b, k = one_change(c, url, ns, n, vs, w1)
        last.append(a)
        first.append(b)
        kube.append(k)
        time.sleep(0.5)
    after = sorted((a - k) * 1000 for a, k in zip(last, kube, strict=True))
    each = [round(a * 1000) for a in last]
    kube_each = [round(k * 1000) for k in kube]
    last.sort()
    return {"n": n, "ready_s": took, "p50_ms": statistics.median(last) * 1000,
            "each_ms": each, "kubectl_each_ms": kube_each,
            "after_kubectl_p50_ms": statistics.median(after),
            "p90_ms": last[int(0.9 * (len(last) - 1))] * 1000, "max_ms": last[-1] * 1000,
            "first_p50_ms": statistics.median(first) * 1000,
            "kubectl_p50_ms": statistics.median(kube) * 1000}


@contextlib.contextmanager
def cluster(kubeconfig: Path | None) -> Iterator[tuple[Path, Path]]:
    from tollway.devcluster.build import bin_dir

    if kubeconfig is not None:
        yield kubeconfig, bin_dir()
        return
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "a") as lk, tempfile.TemporaryDirectory(prefix="tw-bench-") as tmp:
        print("waiting for the host's dev-cluster lock ...", file=sys.stderr, flush=True)
        fcntl.flock(lk, fcntl.LOCK_EX)
        state = Path(tmp) / "state"
        cli = [sys.executable, "-m", "tollway", "dev", "cluster"]
        up = subprocess.run([*cli, "up", "--state-dir", str(state)], capture_output=True,
                            text=True, cwd=ROOT, timeout=1200)
        try:
            if up.returncode != 0:
                raise SystemExit(f"tollway dev cluster up failed: {up.stdout}{up.stderr}")
            yield state / "kubeconfig", bin_dir()
        finally:
            subprocess.run([*cli, "down", "--state-dir", str(state)], capture_output=True,
                           cwd=ROOT, timeout=600)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pods", type=int, nargs="+", default=[10, 50])
    ap.add_argument("--changes", type=int, default=10)
    ap.add_argument("--kubeconfig", type=Path)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--sidecar-cpu", default="10m",
                    help="the chart's sidecar.resources.requests.cpu (its default, 100m, lets "
                         "a 2-CPU dev node schedule only ~18 injected pods)")
    args = ap.parse_args()
    rows = []
    with cluster(args.kubeconfig) as (kubeconfig, bins), \
            tempfile.TemporaryDirectory(prefix="tw-helm-") as home:
        c = Cluster(kubeconfig, bins, Path(home))
        ns = f"bench-{uuid.uuid4().hex[:6]}"
        c.run("helm", "install", "tollway", str(CHART), "-n", SYSTEM, "--create-namespace",
              "--set", f"sidecar.resources.requests.cpu={args.sidecar_cpu}",
              "--wait", "--timeout", "5m")
        try:
            c.kubectl("create", "namespace", ns)
            c.kubectl("label", "namespace", ns, "istio-injection=enabled")
            c.apply(seed_docs("02-canary-split-90-10.yaml", ns))
            for n in args.pods:
                row = measure(c, ns, n, args.changes)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
        finally:
            c.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=300s", check=False,
                      timeout=400)
            c.run("helm", "uninstall", "tollway", "-n", SYSTEM, "--wait", check=False)
            c.kubectl("delete", "namespace", SYSTEM, "--ignore-not-found", check=False)
    if args.json:
        print(json.dumps(rows))
        return
    print(f"{'pods':>5} {'p50 ms':>8} {'p90 ms':>8} {'max ms':>8} {'first p50':>10} "
          f"{'kubectl p50':>12} {'after kubectl p50':>18} {'2/2 Ready in':>13}")
    for r in rows:
        print(f"{r['n']:>5} {r['p50_ms']:>8.0f} {r['p90_ms']:>8.0f} {r['max_ms']:>8.0f} "
              f"{r['first_p50_ms']:>10.0f} {r['kubectl_p50_ms']:>12.0f} "
              f"{r['after_kubectl_p50_ms']:>18.0f} {r['ready_s']:>12.0f}s")


if __name__ == "__main__":
    main()
