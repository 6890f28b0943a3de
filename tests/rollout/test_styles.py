"""The per-kind decisions the controller used to make in its IO shell, as pure functions
of what it read (styles.py): readiness and the delayed scale-downs still due."""

from __future__ import annotations

from typing import Any

from tollway.config import load
from tollway.config.resource import Resource
from tollway.rollout import styles
from tollway.rollout.model import Phase, RolloutState

ROLLOUT = """
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "web:v1"}]}
  strategy: STRATEGY
"""


def _rollout(strategy: str) -> Resource:
    res = load.load_text(ROLLOUT.replace("STRATEGY", strategy))
    assert res.ok, res.findings
    (r,) = res.resources.of_kind("Rollout")
    return r


def _canary() -> Resource:
    res = load.load_text("""
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: api}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: api}
  service: {port: 8080}
  analysis: {interval: 10s, stepWeight: 50, canaryReadyThreshold: 50}
""")
    (r,) = res.resources.of_kind("Canary")
    return r


def test_each_kind_gets_its_style() -> None:
    assert styles.style_for(_rollout("{canary: {steps: [{setWeight: 50}]}}")).name == (
        "argo-canary")
    assert styles.style_for(_rollout("{blueGreen: {activeService: web}}")).name == (
        "argo-bluegreen")
    assert styles.style_for(_canary()).name == "flagger"


def _state(**kw: Any) -> RolloutState:
    return RolloutState(style="argo-canary", phase=Phase.PROGRESSING, **kw)


def test_delayed_scale_downs_expire_and_an_aborted_canary_is_kept_for_its_delay() -> None:
    res = _rollout("{canary: {steps: [{setWeight: 50}]}}")
    tmpl = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}
    templates = {"old": tmpl, "new": tmpl, "stable": tmpl}
    due = {"old": 100.0, "new": 100.0, "stable": 100.0, "gone": 100.0, "over": 10.0}
    st = _state(revision="new", stable_revision="stable")
    out, left = styles.delayed_scale_downs(res, st, templates, due, wall=50.0)
    assert left == {"old": 100.0, "new": 100.0}  # expired, the stable and unknown dropped
    assert [m["metadata"]["name"] for m in out] == ["web-old"]  # the canary runs anyway
    st.abort = True
    out, _ = styles.delayed_scale_downs(res, st, templates, due, wall=50.0)
    assert [m["metadata"]["name"] for m in out] == ["web-old", "web-new"]


def test_readiness_per_style() -> None:
    bg = _rollout("{blueGreen: {activeService: web, previewReplicaCount: 2}}")
    style = styles.style_for(bg)
    plan = style.plan(bg)
    st = _state(revision="new", stable_revision="old")
    sz = styles.Sizing()
    assert style.readiness(bg, plan, st, "new", {"web-new": 1}, sz) == (False, True)
    assert style.readiness(bg, plan, st, "new", {"web-new": 2}, sz) == (True, True)
    assert style.readiness(bg, plan, st, "new", None, sz) == (True, True)  # unobservable

    fl = _canary()
    style = styles.style_for(fl)
    plan = style.plan(fl)
    sz = styles.Sizing(target_replicas=4)
    # canaryReadyThreshold 50% of 4, primaryReadyThreshold 100%
    assert style.readiness(fl, plan, st, "x", {"api": 2, "api-primary": 3}, sz) == (True, False)
    assert style.readiness(fl, plan, st, "x", {"api": 1, "api-primary": 4}, sz) == (False, True)
