"""Traffic through injected sidecars on the real dev cluster, the way users run the mesh.

`helm install tollway charts/tollway -n tollway-system --create-namespace`, `kubectl label
namespace NS istio-injection=enabled`, `kubectl apply` of the seeds (examples/' copies, which
only add a `command` and env for the dev node) and a meshed client pod whose app calls
`http://myapp.NS:8080/` with plain urllib, no proxy settings: the capture rules take the
call to the client's sidecar, which routes it by the VirtualService; the server pod's rules
take it to its sidecar's 0.0.0.0:15006, which serves it by its original port (8080).

- seeds 01+02: every pod 2/2 Ready (the app's httpGet readiness probe rewritten to the
  sidecar's status port; a pod annotated `rewriteAppHTTPProbers: "false"` Ready through
  its captured probe), the split ~90/10, then 100/0 after a `kubectl apply` of the
  weight change; sidecar to sidecar is mTLS (the app is told the client's SPIFFE ID); a pod
  without a sidecar is reached by the meshed client (plaintext endpoint);
- seeds 03/04: the blue-green switch under continuous load fails no request.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import EXAMPLES_DIR, SEED_DIR, DevCluster, eventually
from tests.kube.meshcluster import (
    Mesh,
    client,
    installed_mesh,
    load_docs,
    seed_with_commands,
    service,
    versions,
)

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster"), pytest.mark.timeout(1500)]


@pytest.fixture(scope="module")
def mesh(dev_cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with installed_mesh(dev_cluster, tmp_path_factory.mktemp("helm"), "kmesh") as m:
        yield m


def plain_app(namespace: str) -> dict[str, Any]:
    """A Deployment opted out of injection (sidecar.istio.io/inject=false)."""
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "plain", "namespace": namespace},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "plain"}},
                 "template": {
                     "metadata": {"labels": {"app": "plain",
                                             "sidecar.istio.io/inject": "false"}},
                     "spec": {"containers": [{
                         "name": "plain", "image": "plain:1",
                         "command": ["tollway", "demo-app"],
                         "env": [{"name": "VERSION", "value": "plain"}],
                         "ports": [{"containerPort": 8080}],
                         "readinessProbe": {"httpGet": {"port": 8080, "path": "/"},
                                            "periodSeconds": 2}}]}}}}


def kept_probes(namespace: str) -> dict[str, Any]:
    """An injected pod that opts out of probe rewriting: the kubelet's probe of 8080 is
    captured like any inbound connection and served by the sidecar's 15006 (PERMISSIVE)."""
    doc = plain_app(namespace)
    doc["metadata"]["name"] = "kept"
    template = doc["spec"]["template"]
    doc["spec"]["selector"]["matchLabels"] = {"app": "kept"}
    template["metadata"] = {"labels": {"app": "kept"}, "annotations": {
        "sidecar.istio.io/rewriteAppHTTPProbers": "false"}}
    template["spec"]["containers"][0]["name"] = "kept"
    return doc


def test_seeds_01_02_split_90_10_then_100_0_through_injected_sidecars(mesh: Mesh) -> None:
    ns = mesh.ns
    url = f"http://myapp.{ns}:8080/"
    plain_url = f"http://plain.{ns}:8080/"
    mesh.apply([*seed_with_commands("canary", "01-canary-deployments.yaml", ns),
                service("myapp", ns), plain_app(ns), service("plain", ns), kept_probes(ns)])
    mesh.apply([{**d, "metadata": {**d["metadata"], "namespace": ns}}
                for d in load_docs(SEED_DIR / "02-canary-split-90-10.yaml")])
    pods = mesh.wait_ready("app=myapp", 4)
    for pod in pods:  # injected, with the app's probe on the sidecar's status port
        spec = pod["spec"]
        names = [c["name"] for c in spec["containers"]]
        assert names == ["myapp", "tollway-proxy"], names
        assert [c["name"] for c in spec["initContainers"]] == ["tollway-init"]
        probe = spec["containers"][0]["readinessProbe"]["httpGet"]
        assert probe == {"path": "/app-health/myapp/readyz", "port": 15020,
                         "scheme": "HTTP"}, probe
    mesh.wait_ready("app=plain", 1, sidecar=False)
    [kept] = mesh.wait_ready("app=kept", 1)  # Ready through the captured probe
    assert kept["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] == 8080
    mesh.apply([client(ns, [url, plain_url])])
    [cpod] = mesh.wait_ready("app=client", 1)
    assert not [e for c in cpod["spec"]["containers"] for e in c.get("env") or []
                if "proxy" in e["name"].lower()]

    start = time.time()

    def split() -> Any:
        rows = [r for r in mesh.since(start, url) if r.get("ok")]
        return versions(rows) if len(rows) >= 400 else None

    seen = eventually(split, 400, "400 answered requests to myapp")
    total = sum(seen.values())
    assert set(seen) <= {"v1", "v2"}, seen
    assert 0.80 <= seen["v1"] / total <= 0.97, seen  # ~90/10 (binomial, n >= 400)
    plain_rows = mesh.since(start, plain_url)[-20:]
    plain = versions(plain_rows)
    assert plain == {"plain": sum(plain.values())} and plain, plain
    # sidecar to sidecar is mTLS: the server's sidecar names the client's identity to the
    # app; to the pod without a sidecar it is plaintext (nobody adds the header)
    client_id = f"URI=spiffe://cluster.local/ns/{ns}/sa/default"
    meshed = [r for r in mesh.since(start, url) if r.get("ok")][-50:]
    assert meshed and all(client_id in r["xfcc"] for r in meshed), meshed[-1]
    assert all(r["xfcc"] == "" for r in plain_rows), plain_rows[-1]

    weights = copy.deepcopy(load_docs(SEED_DIR / "02-canary-split-90-10.yaml")[0])
    weights["metadata"]["namespace"] = ns
    weights["spec"]["http"][0]["route"][0]["weight"] = 100
    weights["spec"]["http"][0]["route"][1]["weight"] = 0
    mesh.apply([weights])
    changed = time.time()

    def all_v1() -> Any:
        rows = mesh.since(changed, url)
        last = rows[-200:]
        return last if len(last) == 200 and versions(last) == {"v1": 200} else None

    eventually(all_v1, 300, "200 requests in a row answered by v1 after the weight change")


def test_seeds_03_04_blue_green_switch_under_load_fails_no_request(mesh: Mesh) -> None:
    ns = mesh.new_namespace("kmesh-bg")
    url = f"http://myapp.{ns}:8080/"
    blue_green = seed_with_commands("blue-green", "03-blue-green.yaml", ns)
    mesh.apply([*blue_green, service("myapp", ns)])
    mesh.wait_ready("app=myapp", 6)
    mesh.apply([client(ns, [url], threads=2, pause=0.02)])
    mesh.wait_ready("app=client", 1)
    start = time.time()

    def all_blue() -> Any:
        last = mesh.since(start, url)[-100:]
        return last if len(last) == 100 and versions(last) == {"blue": 100} else None

    # the window starts at the first of 100 blue answers in a row: the client's requests
    # before its own sidecar was ready (connection refused) are not the switch's doing
    window = eventually(all_blue, 300, "100 requests in a row answered by blue")[0]["t"]
    before = time.time()
    switch = load_docs(EXAMPLES_DIR / "blue-green" / "switch" / "04-switch-to-green.yaml")
    assert [(d["kind"], d["metadata"]["name"]) for d in switch] == \
        [(d["kind"], d["metadata"]["name"]) for d in load_docs(SEED_DIR /
                                                                "04-switch-to-green.yaml")]
    for d in switch:
        d["metadata"]["namespace"] = ns
    mesh.apply(switch)

    def all_green() -> Any:
        last = mesh.since(before, url)[-100:]
        return len(last) == 100 and versions(last) == {"green": 100}

    eventually(all_green, 300, "100 requests in a row answered by green")
    time.sleep(2)
    during = mesh.since(window, url)
    counts = versions(during)
    failed = [r for r in during if not r.get("ok")]
    assert set(counts) == {"blue", "green"}, (  # every request answered, 2xx
        counts, f"switch applied at {before:.3f}", failed[:5])
    assert counts["blue"] > 0 and counts["green"] >= 100, counts
