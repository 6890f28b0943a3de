"""Cross-resource checks (`tollway analyze`): what they find, and what they leave alone."""

from __future__ import annotations

from pathlib import Path

from tollway.config.analyze import analyze
from tollway.config.findings import Finding, Severity
from tollway.config.hosts import fqdn, host_matches
from tollway.config.load import load_paths, load_text

SEEDS = Path(__file__).resolve().parents[1] / "data" / "seed"


def _analyze(text: str) -> list[Finding]:
    result = load_text(text, "t.yaml")
    assert result.ok, [f.render() for f in result.findings]
    return analyze(result.resources)


def _vs(host: str, ns: str = "default", extra: str = "") -> str:
    return (f"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n"
            f"  name: vs-{host.split('.')[0]}\n  namespace: {ns}\nspec:\n  hosts: [{host}]\n"
            f"{extra}  http:\n  - route:\n    - destination: {{host: {host}}}\n")


def _deploy(app: str, ns: str = "default") -> str:
    return (f"apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {app}, namespace: {ns}}}\n"
            f"spec:\n  selector: {{matchLabels: {{app: {app}}}}}\n  template:\n"
            f"    metadata: {{labels: {{app: {app}}}}}\n"
            f"    spec: {{containers: [{{name: c, command: [x]}}]}}\n")


def test_fqdn_completes_kubernetes_names_only() -> None:
    assert fqdn("reviews", "foo") == "reviews.foo.svc.cluster.local"
    assert fqdn("reviews.bar", "foo") == "reviews.bar.svc.cluster.local"
    assert fqdn("reviews.bar.svc", "foo") == "reviews.bar.svc.cluster.local"
    assert fqdn("api.example.com", "foo") == "api.example.com"
    assert host_matches("*.example.com", "api.example.com")
    assert not host_matches("*.example.com", "example.com")


def test_analyze_host_provided_by_deployment_in_any_spelling() -> None:
    for vs in (_vs("pay.payments.svc.cluster.local"), _vs("pay.payments"),
               _vs("pay", "payments")):
        assert _analyze("---\n".join([_deploy("pay", "payments"), vs])) == []


def test_analyze_host_in_other_namespace_is_not_found_by_short_name() -> None:
    (f,) = _analyze("---\n".join([_deploy("pay", "payments"), _vs("pay")]))
    assert f.path == "spec.http[0].route[0].destination.host" and f.line == 19
    assert "provided by no Service" in f.message


def test_analyze_service_entry_wildcard_provides_external_hosts() -> None:
    se = ("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ext}\n"
          "spec:\n  hosts: ['*.example.com']\n  resolution: NONE\n")
    assert _analyze("---\n".join([se, _vs("api.example.com")])) == []


def test_analyze_vs_bound_gateway_is_fine_and_unbound_gateway_warns() -> None:
    gw = ("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: {n}}}\n"
          "spec:\n  servers:\n  - port: {{number: 80, name: http, protocol: HTTP}}\n"
          "    hosts: ['*']\n")
    docs = [gw.format(n="used"), gw.format(n="idle"), _deploy("a"),
            _vs("a", extra="  gateways: [used]\n")]
    (f,) = _analyze("---\n".join(docs))
    assert (f.kind, f.name, f.severity) == ("Gateway", "idle", Severity.WARNING)


def test_analyze_root_namespace_policy_selects_workloads_everywhere() -> None:
    pa = ("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
          "metadata: {{name: p, namespace: {ns}}}\nspec:\n  selector: {{matchLabels: {{app: a}}}}\n"
          "  mtls: {{mode: STRICT}}\n")
    assert _analyze("---\n".join([_deploy("a", "x"), pa.format(ns="istio-system")])) == []
    (f,) = _analyze("---\n".join([_deploy("a", "x"), pa.format(ns="y")]))
    assert "matches no workload in namespace y" in f.message


def test_analyze_same_host_on_different_gateways_is_not_a_conflict() -> None:
    gw = ("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\n"
          "spec:\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n"
          "    hosts: ['*']\n")
    docs = [gw, _deploy("a"), _vs("a"), _vs("a", extra="  gateways: [g]\n").replace(
        "name: vs-a", "name: vs-a-edge")]
    assert _analyze("---\n".join(docs)) == []


def test_analyze_seeds_together_reports_what_is_really_missing() -> None:
    result = load_paths([SEEDS])
    found = {(Path(f.file).name[:2], f.severity.value, f.path) for f in analyze(result.resources)}
    assert ("15", "info", "spec.metrics[0].failureLimit") in found
    assert ("14", "error", "spec.strategy.canary.trafficRouting.istio.virtualService.routes[0]"
            ) in found
    assert ("13", "error", "spec.http[0].route[0].destination.subset") in found
    assert ("08", "error", "spec.targetRef.name") in found
    # 01 provides myapp (Deployments with app: myapp), so 02's routes resolve
    assert not any(f[0] == "02" for f in found)


def test_analyze_failure_limit_note_names_the_fourth_measurement() -> None:
    result = load_paths([SEEDS / "15-analysis-template.yaml"])
    (f,) = analyze(result.resources)
    assert f.severity is Severity.INFO and f.line == 11
    assert "aborts on the 4th failed measurement, not the 3rd" in f.message


def test_analyze_flagger_canary_provides_its_generated_services() -> None:
    canary = ("apiVersion: flagger.app/v1beta1\nkind: Canary\nmetadata: {name: api}\nspec:\n"
              "  targetRef: {apiVersion: apps/v1, kind: Deployment, name: api}\n"
              "  service: {port: 8080}\n  analysis: {interval: 1m}\n")
    docs = [_deploy("api"), canary, _vs("api-primary"), _vs("api-canary")]
    assert _analyze("---\n".join(docs)) == []


def _telemetry(name: str, ns: str, spec: str, stamp: str = "") -> str:
    created = f", creationTimestamp: '{stamp}'" if stamp else ""
    return (f"apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {{name: {name}, "
            f"namespace: {ns}{created}}}\nspec: {spec}\n")


def test_telemetry_second_namespace_wide_and_root_selector_are_warned() -> None:
    found = _analyze("---\n".join([
        _telemetry("root-sel", "istio-system", "{selector: {matchLabels: {app: web}}}"),
        _telemetry("newer", "shop", "{tracing: [{randomSamplingPercentage: 7}]}",
                   "2026-02-01T00:00:00Z"),
        _telemetry("older", "shop", "{tracing: [{randomSamplingPercentage: 5}]}",
                   "2026-01-01T00:00:00Z"),
        _telemetry("wl", "shop", "{selector: {matchLabels: {app: web}}}"),
        _telemetry("mesh", "istio-system", "{}"),
    ]))
    rendered = sorted(f.render() for f in found)
    assert len(rendered) == 2, rendered
    assert "Telemetry/newer" in rendered[0] or "Telemetry/newer" in rendered[1]
    assert any("(older); only the oldest applies" in r for r in rendered)
    assert any("Telemetry/root-sel" in r and "is not mesh-wide" in r for r in rendered)


def _svc(name: str, selector: str) -> str:
    return (f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\n"
            f"spec:\n  selector: {selector}\n  ports: [{{port: 80}}]\n")


def test_rollout_services_must_select_its_pod_labels_except_the_hash() -> None:
    # Argo's ValidateService; `rollouts-pod-template-hash` is Argo's to add, so exempt.
    deploy = _deploy("web")
    ref = ("apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {name: ro}\nspec:\n"
           "  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n"
           "  selector: {matchLabels: {app: web}}\n  strategy:\n    blueGreen:\n"
           "      activeService: active\n      previewService: preview\n")
    docs = [deploy, ref, _svc("active", "{app: web, rollouts-pod-template-hash: x}"),
            _svc("preview", "{app: other}")]
    found = [f for f in _analyze("---\n".join(docs)) if "pods do not carry" in f.message]
    assert [(f.path, f.severity) for f in found] == [
        ("spec.strategy.blueGreen.previewService", Severity.ERROR)]
    assert "app=other" in found[0].message and "app=web" in found[0].message
