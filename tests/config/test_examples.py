"""examples/: every scenario folder validates and analyzes clean, and runs locally."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography import x509

from tollway.config.analyze import analyze
from tollway.config.findings import Severity
from tollway.config.load import load_paths

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FOLDERS = sorted(p for p in EXAMPLES.iterdir() if p.is_dir())


def test_examples_cover_every_scenario() -> None:
    names = {p.name for p in FOLDERS}
    assert {"canary", "blue-green", "mirror", "ab-header", "outlier", "flagger", "mtls",
            "authz", "payment", "retries", "header-canary", "rollout", "gateway"} <= names


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_example_validates_and_analyzes_without_errors(folder: Path) -> None:
    result = load_paths([folder])
    assert result.ok, [f.render() for f in result.findings]
    findings = analyze(result.resources)
    assert not [f for f in findings if f.severity is Severity.ERROR], [
        f.render() for f in findings
    ]
    if folder.name != "rollout":
        assert result.findings == () and findings == []


OWN_APPS = {"grpc-canary": ["python", "greeter.py"]}  # a gRPC app: the demo app is HTTP


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_example_containers_all_run_the_demo_app(folder: Path) -> None:
    result = load_paths([folder])
    for kind in ("Deployment", "Rollout"):
        for r in result.resources.of_kind(kind):
            for c in r.spec["template"]["spec"]["containers"]:
                env = {e["name"]: e["value"] for e in c["env"]}
                if folder.name in OWN_APPS:  # the app's file is in the folder (the cwd)
                    assert c["command"] == OWN_APPS[folder.name], r.ref
                    assert (folder / c["command"][-1]).is_file() and env["VERSION"], r.ref
                    continue
                assert c["command"] == ["tollway", "demo-app"], r.ref
                assert env["VERSION"] and env["SERVICE"], r.ref


def test_example_blue_green_switch_applies_over_the_folder() -> None:
    result = load_paths([EXAMPLES / "blue-green", EXAMPLES / "blue-green" / "switch"])
    vs = result.resources.get("VirtualService", "default", "myapp")
    assert vs is not None
    assert vs.spec["http"][0]["route"][0]["destination"]["subset"] == "green"
    assert analyze(result.resources) == []


def test_example_rollout_findings_are_the_documented_ones() -> None:
    result = load_paths([EXAMPLES / "rollout"])
    notes = list(result.findings) + analyze(result.resources)
    step = "spec.strategy.canary.steps[2].analysis.templates[0].templateName"
    assert sorted((f.severity, f.path) for f in notes) == [
        (Severity.INFO, "spec.metrics[0].failureLimit"),
        # seed 15's two queries are service-wide (tollway.config.analyze_promql)
        (Severity.INFO, step), (Severity.INFO, step),
        (Severity.WARNING, "spec.strategy.canary.autoPromotionEnabled"),
    ]


def test_example_gateway_secret_holds_the_committed_wildcard_cert() -> None:
    result = load_paths([EXAMPLES / "gateway"])
    secret = result.resources.get("Secret", "istio-ingress", "wildcard-tls")
    assert secret is not None and secret.spec["type"] == "kubernetes.io/tls"
    pem = base64.b64decode(secret.spec["data"]["tls.crt"])
    assert pem == (EXAMPLES / "gateway" / "wildcard-tls.crt").read_bytes()
    cert = x509.load_pem_x509_certificate(pem)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "*.example.com" in sans.get_values_for_type(x509.DNSName)
    assert b"PRIVATE KEY" in base64.b64decode(secret.spec["data"]["tls.key"])


def test_examples_readme_names_every_folder() -> None:
    readme = (EXAMPLES / "README.md").read_text()
    for folder in FOLDERS:
        assert f"`{folder.name}/`" in readme


def _greeter_module():  # type: ignore[no-untyped-def]
    import importlib.util

    spec = importlib.util.spec_from_file_location("grpc_canary_greeter",
                                                  EXAMPLES / "grpc-canary" / "greeter.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Aborted(Exception):
    pass


class _Context:
    """What the greeter uses of grpc.ServicerContext: trailing metadata and abort."""

    def __init__(self) -> None:
        self.trailers: tuple[tuple[str, str], ...] = ()

    def set_trailing_metadata(self, md: tuple[tuple[str, str], ...]) -> None:
        self.trailers = md

    def abort(self, code: object, details: str) -> None:
        raise _Aborted(f"{code} {details}")


@pytest.mark.parametrize(("rate", "pattern"), [
    (0.0, "....."), (0.2, "....F....F"), (0.5, ".F.F.F"), (1.0, "FFF")])
def test_grpc_canary_greeter_fails_its_share_evenly(rate: float, pattern: str) -> None:
    greeter = _greeter_module().Greeter("v9", rate, 0.0)
    seen = ""
    for _ in pattern:
        ctx = _Context()
        try:
            greeter._admit(ctx)
            seen += "."
        except _Aborted as exc:
            assert "UNAVAILABLE" in str(exc) and "greeter v9 is overloaded" in str(exc)
            seen += "F"
        assert ctx.trailers == (("x-version", "v9"),)  # on failures too
    assert seen == pattern and greeter.failed == pattern.count("F")


def test_grpc_canary_v3_is_the_bad_version_unless_env_says_otherwise() -> None:
    from_env = _greeter_module().from_env
    v3 = from_env({"VERSION": "v3"})
    assert (v3.fail_rate, v3.delay) == (0.2, 0.15)
    assert (from_env({"VERSION": "v3", "FAIL_RATE": "0", "DELAY_MS": "0"}).fail_rate,
            from_env({"VERSION": "v2"}).delay) == (0.0, 0.0)
