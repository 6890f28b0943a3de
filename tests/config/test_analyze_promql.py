"""`tollway analyze`: a Rollout whose Prometheus analysis is service-wide is told at which
canary weight the check can notice the canary at all (tollway.config.analyze_promql)."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from tollway.config.analyze import analyze
from tollway.config.analyze_promql import (
    blind_spot,
    grpc_blind_findings,
    service_wide,
    service_wide_findings,
)
from tollway.config.findings import Severity
from tollway.config.load import load_paths, load_text

SEEDS = Path(__file__).resolve().parents[1] / "data" / "seed"
SEED15_QUERY = (SEEDS / "15-analysis-template.yaml").read_text()

ROLLOUT = """\
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: api}
spec:
  replicas: 2
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers: [{name: api, image: api:1}]
  strategy:
    canary:
STRATEGY
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: rate}
spec:
  metrics:
  - name: rate
    successCondition: CONDITION
    provider:
      prometheus:
        query: 'QUERY'
"""
WIDE = ('sum(rate(istio_requests_total{destination_service="api.default.svc.cluster.local",'
        'response_code!~"5.*"}[5m])) / sum(rate(istio_requests_total{'
        'destination_service="api.default.svc.cluster.local"}[5m]))')
STEPS = ("      steps:\n      - setWeight: 10\n      - analysis: {templates: "
         "[{templateName: rate}]}\n")


def _findings(strategy: str = STEPS, condition: str = "result[0] >= 0.99",
              query: str = WIDE) -> list[str]:
    text = (ROLLOUT.replace("STRATEGY", strategy).replace("CONDITION", condition)
            .replace("QUERY", query))
    result = load_text(text)
    assert result.ok, [f.render() for f in result.findings]
    return [f.message for f in service_wide_findings(result.resources)]


def test_seeds_14_and_15_get_one_info_per_service_wide_metric() -> None:
    result = load_paths([SEEDS / "14-argo-rollout.yaml", SEEDS / "15-analysis-template.yaml"])
    found = [f for f in analyze(result.resources) if "destination_service" in f.message]
    assert [(f.severity, f.kind, f.line, f.path) for f in found] == [
        (Severity.INFO, "Rollout", 36,
         "spec.strategy.canary.steps[2].analysis.templates[0].templateName")] * 2
    rate, p99 = (f.message for f in found)
    assert rate.startswith("metric 'success-rate' of template success-rate")
    assert ("at setWeight 5 the service-wide success rate stays >= 0.99 unless the canary "
            "fails more than 20% of its requests (5% at setWeight 20)") in rate
    assert ("at setWeight 5 the service-wide p99 stays <= 200 unless more than 20% of the "
            "canary's requests take longer than 200 (5% at setWeight 20)") in p99
    for msg in (rate, p99):
        assert "the `tollway` provider" in msg
        assert 'destination_workload="payment-service-<pod-template-hash>"' in msg


def test_template_alone_or_canary_aware_query_gets_nothing() -> None:
    result = load_paths([SEEDS / "15-analysis-template.yaml"])
    assert list(service_wide_findings(result.resources)) == []  # no Rollout runs it
    aware = WIDE.replace('response_code!~"5.*"', 'response_code!~"5.*",'
                         'destination_workload=~"api-{{args.hash}}"')
    assert _findings(query=aware) == []
    assert _findings(query='sum(rate(istio_requests_total{destination_version="v2"}[1m]))') == []
    assert _findings(query="vector(1)") == []  # does not select by destination_service


def test_every_request_failing_cannot_move_it_at_a_tiny_weight() -> None:
    (msg,) = _findings(strategy=STEPS.replace("setWeight: 10", "setWeight: 1"))
    assert "at setWeight 1 the service-wide success rate stays >= 0.99 even if the canary " \
           "fails every request" in msg


def test_background_analysis_reports_the_first_weight_it_runs_under() -> None:
    strategy = ("      analysis: {templates: [{templateName: rate}], startingStep: 2}\n"
                "      steps:\n      - setWeight: 5\n      - pause: {duration: 1m}\n"
                "      - setWeight: 25\n      - pause: {duration: 1m}\n")
    (msg,) = _findings(strategy=strategy)
    assert "at setWeight 25 the service-wide success rate stays >= 0.99 unless the canary " \
           "fails more than 4% of its requests" in msg


def test_other_conditions_get_the_generic_sentence() -> None:
    (msg,) = _findings(condition="result[0] > 0 && result[0] < 5")
    assert "at setWeight 10 the canary is only 10% of the requests it measures" in msg


def test_service_wide_reads_selectors_not_words() -> None:
    assert service_wide(SEED15_QUERY)
    assert service_wide('x{destination_service_name=~"api"}')
    assert not service_wide('x{destination_service="a", destination_canonical_revision="v2"}')
    assert not service_wide('x{destination_service="a", rollouts_pod_template_hash="abc"}')


@given(floor=st.integers(1, 999), weight=st.integers(1, 100))
def test_reported_failure_share_is_where_the_service_wide_rate_crosses(floor: int,
                                                                      weight: int) -> None:
    """With a flawless stable the service-wide rate is 1 - w*f: it equals the threshold
    exactly at the share the finding names, and no share can reach it when w <= 1 - X."""
    x = floor / 1000
    text = blind_spot(WIDE, f"result[0] >= {x}", [weight])
    m = re.search(r"fails more than ([0-9.e+]+)% of its requests", text)
    if m is None:
        assert "even if the canary fails every request" in text
        assert 1 - weight / 100 * 1.0 >= x - 1e-9
    else:
        share = float(m.group(1)) / 100
        assert 0 < share < 1
        # three significant digits: the share is exact to 0.5% of itself
        assert abs((1 - weight / 100 * share) - x) <= weight / 100 * share * 5e-3 + 1e-12


GRPC_SERVICE = """
---
apiVersion: v1
kind: Service
metadata: {name: api}
spec:
  selector: {app: api}
  ports: [PORT]
"""
CANARY_RATE = ('sum(rate(istio_requests_total{destination_workload=~"api-.*",'
               'response_code!~"5.*"}[1m])) / sum(rate(istio_requests_total{'
               'destination_workload=~"api-.*"}[1m]))')


def _grpc_findings(port: str, query: str = CANARY_RATE) -> list[str]:
    text = (ROLLOUT.replace("STRATEGY", STEPS).replace("CONDITION", "result[0] >= 0.99")
            .replace("QUERY", query)) + GRPC_SERVICE.replace("PORT", port)
    result = load_text(text)
    assert result.ok, [f.render() for f in result.findings]
    return [f.message for f in analyze(result.resources)
            if "grpc" in f.message and f.severity is Severity.INFO]


def test_a_grpc_service_judged_by_response_code_alone_is_told_so() -> None:
    for port in ("{name: grpc, port: 50051}", "{name: grpc-api, port: 50051}",
                 "{name: web, port: 50051, appProtocol: grpc}"):
        [message] = _grpc_findings(port)
        assert message.startswith("metric 'rate' of template rate tells failures by "
                                  "response_code, but api serves gRPC (api:50051)"), message
        assert 'grpc_response_status=~"|0"' in message


def test_a_query_reading_grpc_status_or_a_non_grpc_port_gets_nothing() -> None:
    aware = CANARY_RATE.replace('response_code!~"5.*"',
                                'response_code!~"5.*",grpc_response_status=~"|0"')
    assert _grpc_findings("{name: grpc, port: 50051}", aware) == []
    assert _grpc_findings("{name: http, port: 8080}") == []
    assert _grpc_findings("{name: grpc-web, port: 8080}") == []  # GRPC-Web: not this rule
    assert _grpc_findings("{name: grpc, port: 8080, appProtocol: http}") == []  # it wins


FLAGGER_GRPC = """\
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: api}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: api}
  service: {port: 9898, SERVICE}
  analysis:
    interval: 1m
    threshold: 5
    maxWeight: 50
    stepWeight: 10
    metrics:
    - name: request-success-rate
      thresholdRange: {min: 99}
      interval: 1m
"""


def test_flagger_builtin_success_rate_on_grpc_is_told_so() -> None:
    def infos(service: str) -> list[str]:
        result = load_text(FLAGGER_GRPC.replace("SERVICE", service))
        assert result.ok, [f.render() for f in result.findings]
        return [f.message for f in grpc_blind_findings(result.resources)]

    [message] = infos("portName: grpc")
    assert message.startswith("Flagger's built-in request-success-rate counts non-5xx "
                              "answers, but api serves gRPC (service port 9898)"), message
    assert len(infos("appProtocol: grpc")) == 1
    assert infos("portName: http") == [] and infos("portName: grpc, appProtocol: http") == []
