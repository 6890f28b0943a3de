"""Rollout fidelity corners (issue 18), each through a real `tollway up`.

One mesh runs every Rollout and Canary below (one workload each, second-scale intervals),
and a small HTTP server on loopback plays the user's own endpoints: the `web` metric
provider's URLs and Flagger's `rollout` webhooks. It answers with fixed values and
records when and how it was called, which is what the corners are about: *when* Argo
measures again after an error, *what* args it sends, *how many* checks Flagger runs.

Each test names the upstream source whose behaviour it checks (argoproj/argo-rollouts,
fluxcd/flagger).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from tests.conftest import reap_members
from tests.e2e.e2e_mesh import Mesh

pytestmark = pytest.mark.slow
APP = json.dumps([sys.executable, "-m", "tollway.demo.app"])


class Endpoints:
    """The user's endpoints: `GET /value/NAME` answers {"value": V} (a metric), `POST
    /hook/NAME` answers 200 or 500 (a Flagger webhook); every call is recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str, dict[str, list[str]]]] = []
        self.values: dict[str, float] = {"ok": 1, "fail": 0, "maybe": 0.5}
        self.errors_first: dict[str, int] = {"flaky": 1}  # answer 500 this many times
        self.hooks_ok: dict[str, bool] = {"pass": True, "fail": False}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlparse(self.path)
                name = url.path.rsplit("/", 1)[-1]
                outer.calls.append((time.monotonic(), url.path, parse_qs(url.query)))
                left = outer.errors_first.get(name, 0)
                if left:
                    outer.errors_first[name] = left - 1
                    self._answer(500, {"error": "provider down"})
                    return
                self._answer(200, {"value": outer.values.get(name, 1)})

            def do_POST(self) -> None:
                size = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(size) or b"{}")
                outer.calls.append((time.monotonic(), self.path, {"name": [body.get("name")]}))
                ok = outer.hooks_ok.get(self.path.rsplit("/", 1)[-1], True)
                self._answer(200 if ok else 500, {})

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def times(self, path: str) -> list[float]:
        return [t for t, p, _ in self.calls if p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _template(name: str, metrics: list[dict[str, Any]], args: list[str] = ()) -> str:
    spec: dict[str, Any] = {"metrics": metrics}
    if args:
        spec["args"] = [{"name": a} for a in args]
    return json.dumps({"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
                       "metadata": {"name": name}, "spec": spec})


def _metric(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "successCondition": "result == 1", "failureCondition": "result == 0",
            "provider": {"web": {"url": url, "jsonPath": "{$.value}"}}, **extra}


def _rollout(name: str, steps: list[dict[str, Any]], strategy: str = "canary") -> str:
    labels = {"app": name}
    container = {"name": name, "image": f"{name}:v1", "command": json.loads(APP),
                 "env": [{"name": "VERSION", "value": "v1"}], "ports": [{"containerPort": 8080}]}
    strat: dict[str, Any] = {"canary": {"steps": steps}} if strategy == "canary" else {
        "blueGreen": {"activeService": name, "autoPromotionEnabled": False}}
    return json.dumps({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [container]}},
                 "strategy": strat}})


def _service(name: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                       "spec": {"selector": {"app": name},
                                "ports": [{"port": 8080, "name": "http"}]}})


def _canary(name: str, analysis: dict[str, Any]) -> str:
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [
                        {"name": name, "image": f"{name}:v1", "command": json.loads(APP),
                         "env": [{"name": "VERSION", "value": "v1"}],
                         "ports": [{"containerPort": 8080}]}]}}}}
    canary = {"apiVersion": "flagger.app/v1beta1", "kind": "Canary", "metadata": {"name": name},
              "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": name},
                       "service": {"port": 8080}, "analysis": analysis}}
    return json.dumps(dep) + "\n---\n" + json.dumps(canary)


def _manifests(base: str) -> str:
    docs = [
        # error retry + the pause step's reason
        _template("flaky", [_metric("flaky", f"{base}/value/flaky", interval="1s", count=2)]),
        _rollout("retry", [{"setWeight": 50}, {"pause": {}},
                           {"analysis": {"templates": [{"templateName": "flaky"}]}}]),
        # podTemplateHashValue args
        _template("hashes", [_metric("hashes", f"{base}/value/ok?latest={{{{args.latest}}}}"
                                                "&stable={{args.stable}}&fixed={{args.fixed}}")],
                  args=["latest", "stable", "fixed"]),
        _rollout("hashes", [{"setWeight": 50}, {"analysis": {
            "templates": [{"templateName": "hashes"}],
            "args": [{"name": "latest", "valueFrom": {"podTemplateHashValue": "Latest"}},
                     {"name": "stable", "valueFrom": {"podTemplateHashValue": "Stable"}},
                     {"name": "fixed", "value": "literal"}]}}]),
        # the Rollout's dryRun (regex metricName), and the same analysis without it
        _template("gate", [_metric("fail-latency", f"{base}/value/fail"),
                           _metric("failure-budget", f"{base}/value/fail"),
                           _metric("success", f"{base}/value/ok")]),
        _rollout("dryrun", [{"setWeight": 50}, {"analysis": {
            "templates": [{"templateName": "gate"}], "dryRun": [{"metricName": "^fail"}]}}]),
        _rollout("nodry", [{"setWeight": 50}, {"pause": {"duration": "1s"}},
                           {"analysis": {"templates": [{"templateName": "gate"}]}}]),
        # pause reasons: a pause step, an inconclusive run, a user's pause; blue-green's
        _template("maybe", [_metric("maybe", f"{base}/value/maybe")]),
        _template("forever", [_metric("forever", f"{base}/value/ok", interval="1s")]),
        _rollout("pauses", [{"setWeight": 50}, {"pause": {}},
                            {"analysis": {"templates": [{"templateName": "maybe"}]}},
                            {"analysis": {"templates": [{"templateName": "forever"}]}}]),
        _service("bluegreen"),
        _rollout("bluegreen", [], strategy="blueGreen"),
        # Flagger: blue/green iterations, and the threshold checked before the analysis
        _canary("fbg", {"interval": "1s", "iterations": 2, "threshold": 2, "webhooks": [
            {"name": "pass", "type": "rollout", "url": f"{base}/hook/pass"}]}),
        _canary("frb", {"interval": "1s", "stepWeight": 50, "maxWeight": 50, "threshold": 2,
                        "webhooks": [{"name": "fail", "type": "rollout",
                                      "url": f"{base}/hook/fail"}]}),
    ]
    return "\n---\n".join(docs) + "\n"


class Fixture:
    def __init__(self, mesh: Mesh, ends: Endpoints) -> None:
        self.mesh, self.ends = mesh, ends

    def status(self, name: str) -> dict[str, Any]:
        try:
            r = httpx.get(f"{self.mesh.url}/v1/rollouts/default/{name}", timeout=5)
        except httpx.HTTPError:
            return {}
        return dict(r.json().get("status") or {}) if r.status_code == 200 else {}

    def command(self, name: str, action: str, body: dict[str, Any] | None = None) -> None:
        r = httpx.post(f"{self.mesh.url}/v1/rollouts/default/{name}/{action}",
                       json={"actor": "test", **(body or {})}, timeout=10,
                       headers=self.mesh.admin_headers())
        assert r.status_code in (200, 202), r.text

    def new_image(self, name: str) -> None:
        self.command(name, "set-image", {"image": f"{name}:v2", "env": {"VERSION": "v2"}})

    def wait(self, name: str, cond: Callable[[dict[str, Any]], bool], what: str,
             timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        st: dict[str, Any] = {}
        while time.monotonic() < deadline:
            st = self.status(name)
            if st and cond(st):
                return st
            time.sleep(0.2)
        raise AssertionError(f"{name}: timed out waiting for {what}; status "
                             f"{json.dumps(st, indent=1)[-3000:]}")

    def settled(self, name: str, phase: str) -> dict[str, Any]:
        return self.wait(name, lambda s: s.get("phase") == phase, phase, timeout=90)


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fixture]:
    ends = Endpoints()
    root = tmp_path_factory.mktemp("fidelity")
    (root / "fidelity.yaml").write_text(_manifests(f"http://127.0.0.1:{ends.port}"))
    mesh = Mesh(root)
    try:
        mesh.start(timeout=180)
        yield Fixture(mesh, ends)
    finally:
        mesh.stop()
        reap_members(root / ".tollway" / "members.json")
        ends.close()
    assert "Traceback" not in "".join(mesh.lines), "".join(mesh.lines)[-3000:]


def _run(st: dict[str, Any], template_step: int) -> dict[str, Any]:
    """The analysis run a step started (names are NAME-REV-STEP-N)."""
    for run in st.get("analysisRuns") or []:
        if run["name"].rsplit("-", 2)[-2] == str(template_step):
            return dict(run)
    raise AssertionError(f"no run for step {template_step}: {st.get('analysisRuns')}")


def _results(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in run["metricResults"]}


def test_error_is_retried_after_argos_10s_not_the_metric_interval(up: Fixture) -> None:
    """argo-rollouts analysis/analysis.go: generateMetricTasks and
    calculateNextReconcileTime use DefaultErrorRetryInterval (10 s) after an Error
    measurement, whatever the metric's `interval`; the interval applies after any other
    result. Also the pause step's reason: `CanaryPauseStep`
    (pkg/apis/rollouts/v1alpha1/types.go PauseReasonCanaryPauseStep), in
    status.pauseConditions with controllerPause."""
    up.settled("retry", "Healthy")
    up.new_image("retry")
    st = up.wait("retry", lambda s: s.get("phase") == "Paused", "the pause step")
    assert [p["reason"] for p in st["pauseConditions"]] == ["CanaryPauseStep"]
    assert st["controllerPause"] is True and st["currentStepIndex"] == 1
    up.command("retry", "promote")
    st = up.settled("retry", "Healthy")
    calls = up.ends.times("/value/flaky")
    assert len(calls) == 3, calls  # the Error, then count: 2 Successful
    assert calls[1] - calls[0] >= 9.5, calls  # 10 s after the error (interval is 1s)
    assert calls[2] - calls[1] < 5, calls  # then every interval
    metric = _results(_run(st, 2))["flaky"]
    assert [m["phase"] for m in metric["measurements"]] == ["Error", "Successful", "Successful"]
    assert metric["phase"] == "Successful" and metric["error"] == 1 and metric["count"] == 2


def test_pod_template_hash_args_resolve_to_the_canary_and_stable_hashes(up: Fixture) -> None:
    """argo-rollouts utils/analysis/factory.go BuildArgumentsForRolloutAnalysisRun:
    `valueFrom.podTemplateHashValue: Latest` is the new ReplicaSet's
    rollouts-pod-template-hash label, `Stable` the stable ReplicaSet's; literal values
    pass as given. The provider's URL carries the resolved values."""
    before = up.settled("hashes", "Healthy")
    up.new_image("hashes")
    st = up.wait("hashes", lambda s: s.get("phase") == "Healthy"
                 and s.get("currentPodHash") != before["currentPodHash"], "the rollout")
    (query,) = [q for _, p, q in up.ends.calls if p == "/value/ok" and "latest" in q]
    new, old = st["currentPodHash"], before["stableRS"]
    assert query == {"latest": [new], "stable": [old], "fixed": ["literal"]}
    assert new != old and st["stableRS"] == new
    assert _run(st, 1)["args"] == {"latest": new, "stable": old, "fixed": "literal"}


def test_rollout_dry_run_by_metric_name_regex_is_honoured(up: Fixture) -> None:
    """argo-rollouts RolloutAnalysis.dryRun (pkg/apis/rollouts/v1alpha1/types.go),
    merged with the templates' in utils/analysis/helpers.go (mergeDryRunMetrics) and
    matched by GetDryRunMetrics with regexp.MatchString (unanchored): `^fail` selects
    `fail-latency` and `failure-budget`, not `success`. Dry-run metrics are measured and
    shown, their failures never fail the run (analysis.go assessRunStatus)."""
    up.settled("dryrun", "Healthy")
    up.new_image("dryrun")
    st = up.wait("dryrun", lambda s: s.get("phase") == "Healthy"
                 and s.get("stableRS") == s.get("currentPodHash")
                 and bool(s.get("analysisRuns")), "the rollout to complete")
    run = _run(st, 1)
    res = _results(run)
    assert res["fail-latency"]["phase"] == "Failed" and res["failure-budget"]["phase"] == "Failed"
    assert res["success"]["phase"] == "Successful" and run["phase"] == "Successful"
    assert st["abort"] is False
    # the run's summaries, as assessRunStatus writes them
    assert run["runSummary"] == {"count": 1, "successful": 1, "failed": 0, "inconclusive": 0,
                                 "error": 0}
    assert run["dryRunSummary"] == {"count": 2, "successful": 0, "failed": 2,
                                    "inconclusive": 0, "error": 0}


def test_abort_puts_current_step_index_back_to_zero(up: Fixture) -> None:
    """argo-rollouts rollout/canary.go syncRolloutStatusCanary: when aborted,
    currentStepIndex is 0 (the step count only when the stable is the current pod hash).
    The same analysis as the dry-run test without `dryRun`: its failures abort."""
    up.settled("nodry", "Healthy")
    up.new_image("nodry")
    st = up.wait("nodry", lambda s: s.get("phase") == "Degraded", "the abort")
    assert st["abort"] is True and st["currentStepIndex"] == 0
    assert st["canary"]["weights"]["canary"]["weight"] == 0
    assert _run(st, 2)["phase"] == "Failed"


def test_pause_reasons_use_argos_constants(up: Fixture) -> None:
    """argo-rollouts pkg/apis/rollouts/v1alpha1/types.go PauseReason constants
    (CanaryPauseStep, InconclusiveAnalysisRun, BlueGreenPause) in status.pauseConditions;
    a user's pause is spec.paused in Argo (utils/rollout/rolloututil.go
    CalculateRolloutPhase: Paused, "manually paused") with no pause condition."""
    up.settled("pauses", "Healthy")
    up.new_image("pauses")

    def reasons(s: dict[str, Any]) -> list[str]:
        return [p["reason"] for p in s.get("pauseConditions") or []]

    up.wait("pauses", lambda s: reasons(s) == ["CanaryPauseStep"], "the pause step")
    up.command("pauses", "promote")
    st = up.wait("pauses", lambda s: reasons(s) == ["InconclusiveAnalysisRun"],
                 "the inconclusive run")
    assert st["phase"] == "Paused" and st["controllerPause"] is True
    up.command("pauses", "promote")
    up.wait("pauses", lambda s: s.get("currentStepIndex") == 3 and s["phase"] == "Progressing",
            "the never-ending analysis step")
    up.command("pauses", "pause")
    st = up.wait("pauses", lambda s: s.get("phase") == "Paused", "the user's pause")
    assert st["pauseConditions"] == [] and st["controllerPause"] is False
    up.command("pauses", "resume")
    up.wait("pauses", lambda s: s.get("phase") == "Progressing", "resumed")
    up.command("pauses", "promote")
    up.wait("pauses", lambda s: s.get("phase") == "Healthy"
            and s.get("stableRS") == s.get("currentPodHash"), "the rollout to complete")

    up.settled("bluegreen", "Healthy")
    up.new_image("bluegreen")
    st = up.wait("bluegreen", lambda s: reasons(s) == ["BlueGreenPause"], "blue-green's pause")
    up.command("bluegreen", "promote")
    up.wait("bluegreen", lambda s: s.get("phase") == "Healthy"
            and s.get("stableRS") == s.get("currentPodHash"), "the switch")


def test_flagger_bluegreen_analyses_one_more_tick_with_all_traffic(up: Fixture) -> None:
    """flagger pkg/controller/scheduler.go runBlueGreen: iterations 1..N are counted
    with the canary tested without user traffic; when Iterations == Status.Iterations all
    traffic goes to the canary and Status.Iterations becomes N+1, and that tick's analysis
    (advanceCanary's runAnalysis, weight 100) runs before the promotion: N+1 checks."""
    up.settled("fbg", "Initialized")
    up.new_image("fbg")
    st = up.settled("fbg", "Succeeded")
    assert len(up.ends.times("/hook/pass")) == 3  # iterations: 2, plus the all-traffic tick
    checks = st["checks"]
    assert [c["ok"] for c in checks] == [True] * 3
    assert [c["weight"] for c in checks] == [0, 0, 100]
    assert st["iterations"] == 3 and st["failedChecks"] == 0


def test_flagger_rolls_back_before_querying_on_the_threshold_tick(up: Fixture) -> None:
    """flagger pkg/controller/scheduler.go advanceCanary: `FailedChecks >=
    GetAnalysisThreshold()` rolls back before runAnalysis, so the tick that rolls back
    calls no rollout webhook and queries no metric: threshold 2 → exactly 2 calls."""
    up.settled("frb", "Initialized")
    up.new_image("frb")
    st = up.settled("frb", "Failed")
    assert st["failedChecks"] == 2 and st["canaryWeight"] == 0
    time.sleep(2.5)  # more intervals: nothing more is called after the rollback
    assert len(up.ends.times("/hook/fail")) == 2
