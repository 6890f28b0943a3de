"""What the rollout panel offers and how it names things, without sockets: which actions
each phase allows, workloads named by version instead of template hash (from the replica
sets the controller really generates), and an all-errors analysis never shown green."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tollway.config.load import load_paths, load_text
from tollway.config.resource import ResourceSet
from tollway.control.store import ConfigStore
from tollway.dashboard import mesh, rollouts
from tollway.rollout import plans, status, traffic
from tollway.rollout.analysis import runs
from tollway.rollout.model import Phase, RolloutState

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _enabled(phase: str, paused: bool = False, aborted: bool = False) -> set[str]:
    return {a["action"] for a in rollouts.actions(phase, paused, aborted) if a["enabled"]}


@pytest.mark.parametrize(("phase", "paused", "aborted", "want"), [
    ("Healthy", False, False, set()),
    ("Progressing", False, False, {"promote", "promote-full", "abort", "pause"}),
    ("Paused", True, False, {"promote", "promote-full", "abort", "resume"}),
    ("Degraded", False, True, {"retry", "promote-full"}),
    ("Degraded", True, True, {"retry", "promote-full"}),
    ("Pending", False, False, set()),
    ("Failed", False, False, {"retry", "promote-full"}),  # Flagger's rolled back canary
    ("Succeeded", False, False, set()),
    ("WaitingPromotion", True, False, {"promote", "promote-full", "abort", "resume"}),
])
def test_each_phase_enables_only_what_the_controller_acts_on(
        phase: str, paused: bool, aborted: bool, want: set[str]) -> None:
    assert _enabled(phase, paused, aborted) == want


def test_every_action_names_its_api_path_body_and_what_it_does() -> None:
    acts = {a["action"]: a for a in rollouts.actions("Paused", True, False)}
    assert list(acts) == ["promote", "promote-full", "abort", "retry", "pause", "resume"]
    assert acts["promote-full"]["path"] == "promote" and acts["promote-full"]["body"] == {
        "full": True}
    assert all(a["path"] == name for name, a in acts.items() if name != "promote-full")
    assert all(a["does"] and a["label"] for a in acts.values())


def _rollout_with_revisions(images: dict[str, str], labels: dict[str, str] | None = None
                            ) -> tuple[ResourceSet, Any]:
    loaded = load_paths([EXAMPLES / "rollout"])
    res = ResourceSet(loaded.resources).get("Rollout", "payments", "payment-service")
    assert res is not None
    generated = []
    for h, image in images.items():
        template: dict[str, Any] = {
            "metadata": {"labels": {"app": "payment-service", **(labels or {})}},
            "spec": {"containers": [{"name": "app", "image": image}]}}
        manifest = traffic.replica_set(res, template, h, 1)
        generated += list(load_text(json.dumps(manifest)).resources)
    return ResourceSet([*loaded.resources, *generated]), res


def test_replica_sets_are_named_by_image_tag_with_the_hash_kept() -> None:
    resources, res = _rollout_with_revisions({"aaaa111111": "registry:5000/pay:v2.1.0",
                                              "bbbb222222": "registry:5000/pay:v2.2.0"})
    st = {"currentPodHash": "bbbb222222", "stableRS": "aaaa111111"}
    names = rollouts.workload_names(resources, lambda k: st if k == res.key else {})
    stable = names[("payments", "payment-service-aaaa111111")]
    canary = names[("payments", "payment-service-bbbb222222")]
    assert stable["display"] == "payment-service v2.1.0" and stable["track"] == "stable"
    assert canary["display"] == "payment-service v2.2.0" and canary["track"] == "canary"
    assert canary["hash"] == "bbbb222222" and canary["image"] == "registry:5000/pay:v2.2.0"
    view = rollouts.rollout_view(res, st, resources, names)
    assert view["versions"]["stable"]["version"] == "v2.1.0"
    assert view["versions"]["canary"]["workload"] == "payment-service-bbbb222222"
    tracks = rollouts.workload_tracks(resources, lambda k: st if k == res.key else {})
    assert tracks[("payments", "payment-service-bbbb222222")]["display"] == (
        "payment-service v2.2.0")


def test_a_version_label_wins_and_equal_versions_are_told_apart_by_hash() -> None:
    resources, res = _rollout_with_revisions({"aaaa111111": "pay:latest",
                                              "bbbb222222": "pay:latest"},
                                             labels={"version": "v7"})
    names = rollouts.workload_names(resources, lambda _k: {})
    shown = sorted(n["display"] for k, n in names.items() if k[1].startswith(res.name))
    assert shown == ["payment-service v7 #aaaa1", "payment-service v7 #bbbb2"]


def test_plain_deployments_keep_their_names() -> None:
    resources = ResourceSet(load_paths([EXAMPLES / "canary"]).resources)
    names = rollouts.workload_names(resources, lambda _k: {})
    assert names and all(n["display"] == n["workload"] for n in names.values())


def test_an_analysis_whose_every_measurement_errored_is_shown_as_error() -> None:
    resources = ResourceSet(load_paths([EXAMPLES / "rollout"]).resources)
    res = resources.get("Rollout", "payments", "payment-service")
    assert res is not None
    specs = rollouts.metric_specs(res, resources)
    spec = runs.MetricSpec.from_argo(specs["success-rate"])
    run = runs.AnalysisRun("payment-service-abc123-2", (spec,), started_at=100.0)
    for t in (100.0, 160.0):
        runs.record(run, spec, runs.Measurement(runs.AnalysisPhase.ERROR, t, t, None,
                                                "prometheus unreachable"))
    run.terminated = True  # the step ended before its count: Argo's rules say Successful
    runs.assess(run)
    assert run.phase is runs.AnalysisPhase.SUCCESSFUL
    plan = plans.argo_plan(res.name, res.namespace, res.spec)
    state = RolloutState(style="argo-canary", phase=Phase.PROGRESSING, revision="abc123",
                         stable_revision="old999", step_index=2, weight=5)
    st = status.argo_status(state, plan, {run.name: runs.run_to_dict(run)}, at=200.0)
    [shown] = rollouts.rollout_view(res, st, resources)["analysis"]
    assert shown["phase"] == "Error" and shown["recordedPhase"] == "Successful"
    [metric] = shown["metrics"]
    assert metric["phase"] == "Error" and "every measurement was an error" in metric["message"]
    assert "prometheus unreachable" in metric["message"]


def test_one_good_measurement_keeps_the_recorded_phase() -> None:
    ok = [{"phase": "Error"}, {"phase": "Successful"}]
    assert rollouts.shown_phase("Successful", ok) == "Successful"
    assert rollouts.shown_phase("Running", [{"phase": "Error"}]) == "Running"
    assert rollouts.shown_phase("Successful", []) == "Successful"
    assert rollouts.shown_phase("Failed", [{"phase": "Error"}]) == "Failed"


def test_proxies_read_as_the_version_they_run() -> None:
    store = ConfigStore()
    rows = [{"name": "payment-service-bbbb222222-x-0.payments", "status": "SYNCED",
             "workload": "payment-service-bbbb222222", "namespace": "payments", "admin": ""},
            {"name": "tollway-client.default", "status": "SYNCED", "workload": "tollway-client",
             "namespace": "default", "admin": ""}]
    names = {("payments", "payment-service-bbbb222222"): {
        "display": "payment-service v2.2.0", "track": "canary"}}
    view = mesh.view(rows, {}, store.current(), store.revision, store.audit(), names)
    assert [p["display"] for p in view["proxies"]] == ["payment-service v2.2.0 · canary", ""]


@pytest.mark.parametrize(("strategy", "phase", "paused", "aborted", "offered", "want"), [
    ("blueGreen", "Paused", True, False, ["promote", "promote-full", "abort", "retry", "resume"],
     {"promote", "promote-full", "abort", "resume"}),
    ("blueGreen", "Degraded", False, True, ["promote", "promote-full", "abort", "retry", "resume"],
     {"retry"}),
    ("flagger", "Progressing", False, False, ["promote", "abort", "retry"], {"promote", "abort"}),
    ("flagger", "WaitingPromotion", False, False, ["promote", "abort", "retry"],
     {"promote", "abort"}),
    ("flagger", "Finalising", False, False, ["promote", "abort", "retry"], set()),
    ("flagger", "Failed", False, False, ["promote", "abort", "retry"], {"retry"}),
    ("flagger", "Succeeded", False, False, ["promote", "abort", "retry"], set()),
])
def test_each_controller_is_offered_only_what_it_acts_on(
        strategy: str, phase: str, paused: bool, aborted: bool, offered: list[str],
        want: set[str]) -> None:
    acts = rollouts.actions(phase, paused, aborted, strategy)
    assert [a["action"] for a in acts] == offered
    assert {a["action"] for a in acts if a["enabled"]} == want


def test_a_deployment_merely_named_like_a_replica_set_keeps_its_name() -> None:
    resources, _ = _rollout_with_revisions({"aaaa111111": "pay:v1"})
    loaded = load_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: payment-"
                       "service-canary, namespace: payments}\nspec:\n  selector: {matchLabels: "
                       "{app: x}}\n  template:\n    metadata: {labels: {app: x}}\n    spec:\n"
                       "      containers: [{name: a, image: 'other:v9'}]\n")
    assert loaded.ok, [f.render() for f in loaded.findings]
    impostor = loaded.resources
    names = rollouts.workload_names(ResourceSet([*resources, *impostor]), lambda _k: {})
    assert names[("payments", "payment-service-canary")]["display"] == "payment-service-canary"
    assert names[("payments", "payment-service-aaaa111111")]["display"] == "payment-service v1"


def test_flagger_primary_and_target_are_named_by_version() -> None:
    text = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: podinfo}
spec:
  selector: {matchLabels: {app: podinfo}}
  template:
    metadata: {labels: {app: podinfo}}
    spec: {containers: [{name: app, image: 'ghcr.io/stefanprodan/podinfo:6.0.1'}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: podinfo-primary}
spec:
  selector: {matchLabels: {app: podinfo-primary}}
  template:
    metadata: {labels: {app: podinfo-primary}}
    spec: {containers: [{name: app, image: 'ghcr.io/stefanprodan/podinfo:6.0.0'}]}
---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service: {port: 9898}
  analysis: {interval: 1m, stepWeight: 10}
"""
    loaded = load_text(text)
    assert loaded.ok, [f.render() for f in loaded.findings]
    names = rollouts.workload_names(ResourceSet(loaded.resources), lambda _k: {})
    assert names[("default", "podinfo-primary")]["display"] == "podinfo 6.0.0"
    assert names[("default", "podinfo-primary")]["track"] == "stable"
    assert names[("default", "podinfo")]["display"] == "podinfo 6.0.1"
