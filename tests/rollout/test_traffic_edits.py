"""State → resources: Argo replica sets, VS weights, DR hash subsets; Flagger primary + VS."""

from __future__ import annotations

import json
from typing import Any

from tests.rollout.conftest import SEED
from tollway.config import load
from tollway.config.resource import ResourceSet
from tollway.rollout import plans, traffic
from tollway.rollout.model import Phase, RolloutState

MESH = """
apiVersion: v1
kind: Service
metadata: {name: payment-service, namespace: payments}
spec:
  selector: {app: payment-service}
  ports: [{name: http, port: 8080}]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: payment-service, namespace: payments}
spec:
  hosts: [payment-service]
  http:
  - name: primary
    route:
    - destination: {host: payment-service, subset: stable}
      weight: 100
    - destination: {host: payment-service, subset: canary}
      weight: 0
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: payment-service, namespace: payments}
spec:
  host: payment-service
  subsets:
  - name: stable
    labels: {app: payment-service}
  - name: canary
    labels: {app: payment-service}
"""


def _world() -> ResourceSet:
    text = (SEED / "14-argo-rollout.yaml").read_text() + "\n---\n" + MESH
    res = load.load_text(text)
    assert res.ok, res.findings
    return res.resources


def _by_kind(manifests: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] == kind]


def test_traffic_argo_subset_level_weights_and_hashes() -> None:
    world = _world()
    rollout = world.of_kind("Rollout")[0]
    plan = plans.argo_plan(rollout.name, rollout.namespace, rollout.spec)
    tmpl = dict(rollout.spec["template"])
    v2 = json.loads(json.dumps(tmpl))
    v2["spec"]["containers"][0]["image"] = "payment-service:v2.2.0"
    h1, h2 = traffic.template_hash(tmpl), traffic.template_hash(v2)
    state = RolloutState("argo-canary", Phase.PROGRESSING, revision=h2, stable_revision=h1,
                         weight=20, header_routes={"beta": [{"headerName": "x-beta",
                                                             "headerValue": {"exact": "y"}}]})
    out = traffic.argo_resources(rollout, plan, state, {h1: tmpl, h2: v2}, world)
    deps = _by_kind(out, "Deployment")
    assert {d["metadata"]["name"] for d in deps} == {f"payment-service-{h1}",
                                                     f"payment-service-{h2}"}
    canary = next(d for d in deps if d["metadata"]["name"].endswith(h2))
    assert canary["spec"]["replicas"] == 2  # 20% of 10
    assert canary["spec"]["template"]["metadata"]["labels"][traffic.HASH_LABEL] == h2
    assert canary["metadata"]["annotations"][traffic.OWNER] == "Rollout/payments/payment-service"
    (dr,) = _by_kind(out, "DestinationRule")
    labels = {s["name"]: s["labels"][traffic.HASH_LABEL] for s in dr["spec"]["subsets"]}
    assert labels == {"stable": h1, "canary": h2}
    (vs,) = _by_kind(out, "VirtualService")
    http = vs["spec"]["http"]
    assert http[0]["name"] == "tollway-managed-beta"
    assert http[0]["match"] == [{"headers": {"x-beta": {"exact": "y"}}}]
    weights = {d["destination"]["subset"]: d["weight"] for d in http[1]["route"]}
    assert weights == {"stable": 80, "canary": 20}
    loaded = load.load_text(json.dumps(out[0]) + "\n---\n" + "\n---\n".join(
        json.dumps(m) for m in out[1:]))
    assert loaded.ok, loaded.findings


def test_traffic_argo_abort_routes_all_to_stable_and_drops_canary() -> None:
    world = _world()
    rollout = world.of_kind("Rollout")[0]
    plan = plans.argo_plan(rollout.name, rollout.namespace, rollout.spec)
    tmpl = dict(rollout.spec["template"])
    h1 = traffic.template_hash(tmpl)
    state = RolloutState("argo-canary", Phase.DEGRADED, revision="other", stable_revision=h1,
                         weight=0, abort=True)
    out = traffic.argo_resources(rollout, plan, state, {h1: tmpl, "other": tmpl}, world)
    assert len(_by_kind(out, "Deployment")) == 1
    (vs,) = _by_kind(out, "VirtualService")
    assert [d["weight"] for d in vs["spec"]["http"][0]["route"]] == [100, 0]
    (dr,) = _by_kind(out, "DestinationRule")
    assert {s["labels"][traffic.HASH_LABEL] for s in dr["spec"]["subsets"]} == {h1}


def test_traffic_flagger_primary_services_and_split() -> None:
    text = (SEED / "08-flagger-canary.yaml").read_text() + """
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  replicas: 2
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers: [{name: api, image: api, command: [tollway, demo-app]}]
"""
    world = load.load_text(text).resources
    canary = world.of_kind("Canary")[0]
    plan = plans.flagger_plan(canary.name, canary.namespace, canary.spec)
    tmpl = dict(world.of_kind("Deployment")[0].spec["template"])
    state = RolloutState("flagger", Phase.PROGRESSING, revision="b", stable_revision="a",
                         weight=30)
    out = traffic.flagger_resources(canary, plan, state, {"a": tmpl}, world)
    (dep,) = _by_kind(out, "Deployment")
    assert dep["metadata"]["name"] == "api-primary" and dep["spec"]["replicas"] == 2
    assert dep["spec"]["template"]["metadata"]["labels"]["app"] == "api-primary"
    services = {s["metadata"]["name"]: s["spec"]["selector"] for s in _by_kind(out, "Service")}
    assert services == {"api": {"app": "api-primary"}, "api-primary": {"app": "api-primary"},
                        "api-canary": {"app": "api"}}
    (vs,) = _by_kind(out, "VirtualService")
    route = vs["spec"]["http"][-1]["route"]
    assert [(r["destination"]["host"], r["weight"]) for r in route] == [
        ("api-primary", 70), ("api-canary", 30)]
    loaded = load.load_text("\n---\n".join(json.dumps(m) for m in out))
    assert loaded.ok, loaded.findings
