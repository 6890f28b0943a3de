"""The rollout decisions as Kubernetes writes (rollout/onkube.py), without a cluster.

The same manifests `tollway up` applies become: ReplicaSets (applied, owned by the
Rollout), merge patches of the user's DestinationRule / VirtualService carrying only the
fields that differ and the resourceVersion read, and deletions of replica sets no longer
wanted. Planning against what the writes produced yields nothing more to do (checked over
random states with hypothesis), so the reconciler settles instead of writing every sync.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tollway.config import load
from tollway.config.resource import ResourceSet
from tollway.rollout import onkube, plans, styles, traffic
from tollway.rollout.model import Phase, RolloutState

DOCS = """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {selector: {app: web}, ports: [{name: http, port: 8080}]}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: web, namespace: shop}
spec:
  host: web
  subsets:
  - {name: stable, labels: {app: web}}
  - {name: canary, labels: {app: web}}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: web, namespace: shop}
spec:
  hosts: [web]
  http:
  - name: primary
    route:
    - {destination: {host: web, subset: stable}, weight: 100}
    - {destination: {host: web, subset: canary}, weight: 0}
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: web, namespace: shop}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "web:v1", command: [sleep, "60"]}]}
  strategy:
    canary:
      trafficRouting:
        istio:
          virtualService: {name: web, routes: [primary]}
          destinationRule: {name: web, canarySubsetName: canary, stableSubsetName: stable}
      steps: [{setWeight: 20}, {pause: {}}, {setWeight: 60}]
"""
OWNER = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
         "metadata": {"name": "web", "namespace": "shop", "uid": "u-1"}}


def _current() -> ResourceSet:
    loaded = load.load_text(DOCS)
    assert loaded.ok, loaded.findings
    return loaded.resources


class FakeCluster:
    """What the API server holds, as the writes leave it (apply merges what we own,
    a merge patch replaces the fields given, delete removes)."""

    def __init__(self, current: ResourceSet) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        for r in current:
            obj = copy.deepcopy(dict(r.raw))
            obj["metadata"] = {**obj["metadata"], "namespace": r.namespace,
                               "resourceVersion": "1"}
            self.objects[r.key] = obj

    def live(self, kind: str, ns: str, name: str) -> Mapping[str, Any] | None:
        return self.objects.get((kind, ns, name))

    def replica_sets(self) -> list[dict[str, Any]]:
        return [o for (k, _, _), o in self.objects.items() if k == "ReplicaSet"]

    def write(self, w: onkube.Write) -> None:
        key = (w.kind, w.namespace, w.name)
        if w.method == "delete":
            del self.objects[key]
            return
        body = json.loads(json.dumps(w.body))
        obj = self.objects.setdefault(key, {"apiVersion": w.api_version, "kind": w.kind,
                                            "metadata": {"resourceVersion": "0"}, "spec": {}})
        if w.method == "patch":
            assert body["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]
        obj["spec"].update(body["spec"])
        meta = {k: v for k, v in body["metadata"].items() if k != "resourceVersion"}
        obj["metadata"].update(meta)
        obj["metadata"]["resourceVersion"] = str(int(obj["metadata"]["resourceVersion"]) + 1)


def _plan(cluster: FakeCluster, state: RolloutState,
          templates: Mapping[str, Mapping[str, Any]]) -> list[onkube.Write]:
    current = _current()
    (rollout,) = current.of_kind("Rollout")
    plan = plans.argo_plan(rollout.name, rollout.namespace, rollout.spec)
    want = styles.ARGO_CANARY.desired(rollout, plan, state, templates, current,
                                      styles.Sizing(), 0.0)
    return onkube.plan_writes(OWNER, want.manifests, cluster.live, cluster.replica_sets())


def _templates() -> dict[str, dict[str, Any]]:
    (rollout,) = _current().of_kind("Rollout")
    v1 = dict(rollout.spec["template"])
    v2 = copy.deepcopy(v1)
    v2["spec"]["containers"][0]["image"] = "web:v2"
    return {traffic.template_hash(v1): v1, traffic.template_hash(v2): v2}


def test_a_canary_step_is_replica_sets_and_patches_of_the_users_routing() -> None:
    templates = _templates()
    h1, h2 = list(templates)
    cluster = FakeCluster(_current())
    state = RolloutState(style="argo-canary", phase=Phase.PROGRESSING, revision=h2,
                         stable_revision=h1, weight=20)
    writes = _plan(cluster, state, templates)
    by = {(w.kind, w.name): w for w in writes}
    stable = by[("ReplicaSet", f"web-{h1}")]
    canary = by[("ReplicaSet", f"web-{h2}")]
    assert stable.method == canary.method == "apply"
    assert canary.body is not None
    assert canary.body["metadata"]["ownerReferences"][0] == {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "web", "uid": "u-1",
        "controller": True, "blockOwnerDeletion": True}
    assert canary.body["spec"]["selector"]["matchLabels"] == {
        "app": "web", "rollouts-pod-template-hash": h2}
    assert canary.body["spec"]["template"]["metadata"]["labels"][traffic.HASH_LABEL] == h2
    assert canary.body["spec"]["replicas"] == 1  # 20% of 4, rounded up
    vs = by[("VirtualService", "web")]
    assert vs.method == "patch" and vs.body is not None
    assert set(vs.body["spec"]) == {"http"}  # only what changed
    assert vs.body["metadata"] == {"resourceVersion": "1"}
    route = vs.body["spec"]["http"][0]["route"]
    assert [r["weight"] for r in route] == [80, 20]
    dr = by[("DestinationRule", "web")]
    assert dr.body is not None
    assert [s["labels"][traffic.HASH_LABEL] for s in dr.body["spec"]["subsets"]] == [h1, h2]
    assert ("Service", "web") not in by  # subset-level routing leaves the Service alone


def test_once_applied_nothing_is_left_to_write_and_an_unwanted_replica_set_goes() -> None:
    templates = _templates()
    h1, h2 = list(templates)
    cluster = FakeCluster(_current())
    rolling = RolloutState(style="argo-canary", phase=Phase.PROGRESSING, revision=h2,
                           stable_revision=h1, weight=20)
    for w in _plan(cluster, rolling, templates):
        cluster.write(w)
    assert _plan(cluster, rolling, templates) == []
    done = RolloutState(style="argo-canary", phase=Phase.HEALTHY, revision=h2,
                        stable_revision=h2)
    writes = _plan(cluster, done, templates)
    assert onkube.Write("delete", "apps/v1", "ReplicaSet", "shop", f"web-{h1}") in writes
    for w in writes:
        cluster.write(w)
    assert _plan(cluster, done, templates) == []
    assert [r["metadata"]["name"] for r in cluster.replica_sets()] == [f"web-{h2}"]


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.tuples(st.integers(0, 100), st.booleans(), st.booleans()),
                      min_size=1, max_size=6))
def test_the_writes_settle_whatever_the_sequence_of_states(
    steps: list[tuple[int, bool, bool]],
) -> None:
    """Any sequence of states: after each one's writes, planning again writes nothing,
    and the cluster's weights and replica sets are what that state says."""
    templates = _templates()
    h1, h2 = list(templates)
    cluster = FakeCluster(_current())
    for weight, abort, promoted in steps:
        stable = h2 if promoted else h1
        state = RolloutState(style="argo-canary",
                             phase=Phase.DEGRADED if abort else Phase.PROGRESSING,
                             revision=h2, stable_revision=stable,
                             weight=0 if abort else weight, abort=abort)
        for w in _plan(cluster, state, templates):
            cluster.write(w)
        assert _plan(cluster, state, templates) == []
        route = cluster.objects[("VirtualService", "shop", "web")]["spec"]["http"][0]["route"]
        assert [r["weight"] for r in route] == [100 - state.weight, state.weight]
        running = {r["metadata"]["name"] for r in cluster.replica_sets()}
        assert f"web-{stable}" in running
        assert (f"web-{h2}" in running) == (stable == h2 or not abort)


def test_flagger_generated_objects_are_owned_only_when_we_create_them() -> None:
    canary_owner = {"apiVersion": "flagger.app/v1beta1", "kind": "Canary",
                    "metadata": {"name": "api", "namespace": "shop", "uid": "c-1"}}
    svc = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "api", "namespace": "shop",
                        "annotations": {traffic.OWNER: "Canary/shop/api"}},
           "spec": {"selector": {"app": "api-primary"}, "ports": [{"port": 80}]}}
    canary_svc = copy.deepcopy(svc)
    canary_svc["metadata"]["name"] = "api-canary"
    users = {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "api", "namespace": "shop", "resourceVersion": "7"},
             "spec": {"selector": {"app": "api"}, "ports": [{"port": 80}]}}

    def live(kind: str, ns: str, name: str) -> Mapping[str, Any] | None:
        return users if (kind, name) == ("Service", "api") else None

    writes = {w.name: w for w in onkube.plan_writes(canary_owner, [svc, canary_svc], live, [])}
    assert writes["api-canary"].method == "apply"
    body = writes["api-canary"].body
    assert body is not None and body["metadata"]["ownerReferences"][0]["uid"] == "c-1"
    # the user's own apex Service: patched to select the primary, never owned by the Canary
    assert writes["api"].method == "patch"
    assert writes["api"].body == {"metadata": {"resourceVersion": "7"},
                                  "spec": {"selector": {"app": "api-primary"}}}


def test_argo_status_has_argos_fields_and_keeps_the_control_planes_condition() -> None:
    local = {"phase": "Paused", "message": "step 1: paused until promoted", "abort": False,
             "paused": True, "controllerPause": True, "currentStepIndex": 1,
             "currentPodHash": "h2", "stableRS": "h1",
             "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": 1_700_000_000.0}],
             "canary": {"weights": {"canary": {"weight": 20, "podTemplateHash": "h2"},
                                    "stable": {"weight": 80, "podTemplateHash": "h1"}}},
             "analysisRuns": [{"name": "web-h2-0-1", "phase": "Successful", "message": ""}]}
    live = {"conditions": [{"type": "Reconciled", "status": "True", "reason": "Accepted"}]}
    st = onkube.argo_status(local, live, 3, onkube.Replicas(5, 1, 5, 5), "app=web",
                            lambda t: t, 1_700_000_010.0, 4, ("web-h2-0-1", ""))
    assert st["pauseConditions"] == [{"reason": "CanaryPauseStep",
                                      "startTime": "2023-11-14T22:13:20Z"}]
    assert st["observedGeneration"] == "3"
    assert st["canary"]["currentStepAnalysisRunStatus"] == {
        "name": "web-h2-0-1", "status": "Successful", "message": ""}
    assert "currentBackgroundAnalysisRunStatus" not in st["canary"]
    assert (st["replicas"], st["updatedReplicas"], st["availableReplicas"]) == (5, 1, 5)
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Reconciled"]["reason"] == "Accepted"
    assert conds["Paused"]["status"] == "True" and conds["Healthy"]["status"] == "False"
    assert conds["Progressing"]["reason"] == "RolloutPaused"
    assert st["abortedAt"] is None  # a merge patch with null clears it
    again = onkube.argo_status(local, st, 3, onkube.Replicas(5, 1, 5, 5), "app=web",
                               lambda t: t, 1_700_000_020.0, 4, ("web-h2-0-1", ""))
    assert onkube.same_status(again, st)  # only the clock moved: no write
    assert {c["type"]: c.get("lastTransitionTime") for c in again["conditions"]} == {
        c["type"]: c.get("lastTransitionTime") for c in st["conditions"]}


def test_commands_arrive_as_an_annotation_and_bad_ones_are_said() -> None:
    cmd = onkube.Command("abc", "promote", "ana", "looks good", full=True)
    obj = {"metadata": {"annotations": {
        onkube.COMMAND_ANNOTATION: onkube.command_annotation(cmd)}}}
    assert onkube.read_command(obj) == cmd
    assert cmd.machine_command == "promote-full"
    assert onkube.read_command({"metadata": {}}) is None
    bad = {"metadata": {"annotations": {onkube.COMMAND_ANNOTATION: "{not json"}}}
    assert "not a JSON command" in str(onkube.read_command(bad))
    weightless = {"metadata": {"annotations": {onkube.COMMAND_ANNOTATION: json.dumps(
        {"id": "1", "action": "set-weight"})}}}
    assert "weight from 0 to 100" in str(onkube.read_command(weightless))
    unknown = {"metadata": {"annotations": {onkube.COMMAND_ANNOTATION: json.dumps(
        {"id": "1", "action": "explode"})}}}
    assert "unknown action 'explode'" in str(onkube.read_command(unknown))


def test_analysis_run_status_reads_like_argos() -> None:
    run = {"name": "r", "phase": "Failed", "message": "metric failed", "startedAt": 0.0,
           "runSummary": {"count": 1, "failed": 1},
           "metricResults": [{"name": "success-rate", "phase": "Failed", "count": 4,
                              "failed": 4, "measurements": [
                                  {"phase": "Failed", "startedAt": 60.0, "finishedAt": 61.0,
                                   "value": [0.95], "message": "failed"}]}]}
    st = onkube.analysis_run_status(run, lambda t: t)
    m = st["metricResults"][0]["measurements"][0]
    assert m == {"phase": "Failed", "startedAt": "1970-01-01T00:01:00Z",
                 "finishedAt": "1970-01-01T00:01:01Z", "value": "[0.95]", "message": "failed"}
    assert st["phase"] == "Failed" and st["runSummary"]["failed"] == 1
    body = onkube.analysis_run("r", OWNER, "h2", [{"name": "success-rate"}], {"a": "1"},
                               ["success-rate"])
    assert body["metadata"]["labels"][traffic.HASH_LABEL] == "h2"
    assert body["spec"]["args"] == [{"name": "a", "value": "1"}]


def test_argos_step_index_counts_the_specs_steps_not_the_manual_gate() -> None:
    kinds = ["setWeight", "pause", "gate", "setWeight"]  # autoPromotionEnabled: false
    assert [onkube.spec_step_index(kinds, i) for i in range(5)] == [0, 1, 2, 2, 3]
    assert [onkube.plan_step_index(kinds, j) for j in range(4)] == [0, 1, 2, 4]


def test_a_deployment_mid_rollout_counts_only_its_current_templates_ready_pods() -> None:
    """Flagger waits for the primary's rollout before routing everything to it, with
    `kubectl rollout status`'s checks: the old template's ready pods never make it ready."""
    def dep(gen: int, observed: int, replicas: int, updated: int, ready: int,
            spec: int | None = 2) -> dict[str, Any]:
        return {"metadata": {"generation": gen},
                "spec": {} if spec is None else {"replicas": spec},
                "status": {"observedGeneration": observed, "replicas": replicas,
                           "updatedReplicas": updated, "readyReplicas": ready}}

    assert onkube.deployment_ready(dep(3, 3, 2, 2, 2)) == 2  # settled
    assert onkube.deployment_ready(dep(4, 3, 2, 2, 2)) == 0  # new spec not seen yet
    assert onkube.deployment_ready(dep(4, 4, 3, 1, 3)) == 0  # 1 out of 2 new replicas
    # both new pods created, one ready, the last old one still up and ready: 2 ready
    # pods, 2 updated, but not rolled out (the seed-08 run that routed all traffic to
    # the primary while its last old pod was about to be replaced)
    assert onkube.deployment_ready(dep(4, 4, 3, 2, 2)) == 0
    assert onkube.deployment_ready(dep(4, 4, 2, 2, 1)) == 1  # new pods not all ready
    assert onkube.deployment_ready(dep(4, 4, 2, 2, 2, spec=None)) == 2
    assert onkube.deployment_ready(dep(5, 5, 0, 0, 0, spec=0)) == 0  # scaled to zero
    assert onkube.deployment_ready({}) == 0
