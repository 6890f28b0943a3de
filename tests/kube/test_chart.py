"""The Helm chart: `helm lint` clean, and `helm template` output kept by a real API server.

Helm is built from its Go module by tollway/devcluster/build.sh, like the cluster binaries.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "tollway"


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tollway.devcluster.build import ensure

    bin_dir = ensure(tmp_path_factory.mktemp("build") / "build.log", lambda _line: None)
    return bin_dir / "helm"


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300)


def render(helm: Path, *extra: str) -> list[dict[str, Any]]:
    proc = run(helm, "template", "tollway", CHART, "-n", "tollway-system", *extra)
    assert proc.returncode == 0, proc.stderr
    return [d for d in YAML(typ="safe").load_all(proc.stdout) if d]


def test_helm_lint_is_clean(helm: Path) -> None:
    proc = run(helm, "lint", "--strict", CHART)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


def test_one_certificate_per_render_and_istio_switches(helm: Path) -> None:
    docs = render(helm)
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("Deployment", "tollway-control-plane") in kinds
    secret = next(d for d in docs if d["kind"] == "Secret")
    hooks = [d for d in docs if d["kind"].endswith("WebhookConfiguration")]
    assert len(hooks) == 2
    bundles = {w["clientConfig"]["caBundle"] for h in hooks for w in h["webhooks"]}
    assert bundles == {secret["data"]["ca.crt"]}  # the API server trusts what is served
    inject = next(h for h in hooks if h["kind"] == "MutatingWebhookConfiguration")
    by_name = {w["name"]: w for w in inject["webhooks"]}
    ns = by_name["namespace.sidecar-injector.tollway.dev"]
    assert {"key": "istio-injection", "operator": "In", "values": ["enabled"]} in \
        ns["namespaceSelector"]["matchExpressions"]
    assert {"key": "sidecar.istio.io/inject", "operator": "NotIn", "values": ["false"]} in \
        ns["objectSelector"]["matchExpressions"]
    obj = by_name["object.sidecar-injector.tollway.dev"]
    assert {"key": "sidecar.istio.io/inject", "operator": "In", "values": ["true"]} in \
        obj["objectSelector"]["matchExpressions"]
    # Turned off, each webhook is gone from the output.
    off = render(helm, "--set", "webhooks.injection.enabled=false",
                 "--set", "webhooks.validation.enabled=false")
    assert not [d for d in off if d["kind"].endswith("WebhookConfiguration")]


@pytest.mark.cluster
@pytest.mark.xdist_group("cluster")
@pytest.mark.timeout(1200)
def test_the_api_server_accepts_the_rendered_chart(helm: Path, dev_cluster: Any,
                                                   tmp_path: Path) -> None:
    """`helm template` output passes the cluster's own schema validation (server dry-run,
    strict field validation), CRDs included."""
    kubectl = dev_cluster.kubectl
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    if kubectl("get", "namespace", "tollway-system", check=False).returncode != 0:
        kubectl("create", "namespace", "tollway-system")
    out = tmp_path / "rendered.yaml"
    proc = run(helm, "template", "tollway", CHART, "-n", "tollway-system",
               "--kubeconfig", dev_cluster.kubeconfig)
    assert proc.returncode == 0, proc.stderr
    out.write_text(proc.stdout)
    applied = kubectl("apply", "--dry-run=server", "--validate=strict", "-f", str(out),
                      check=False)
    assert applied.returncode == 0, applied.stderr
    assert "Warning" not in applied.stderr, applied.stderr
    assert "deployment.apps/tollway-control-plane created (server dry run)" in applied.stdout


def test_the_deployment_runs_flags_the_control_plane_has(helm: Path) -> None:
    """The chart and `tollway control-plane` must not drift apart: every flag the Deployment
    passes is one the command declares."""
    import sys

    deploy = next(d for d in render(helm) if d["kind"] == "Deployment")
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["tollway"]
    args = container["args"]
    assert args[0] == "control-plane"
    proc = subprocess.run([sys.executable, "-m", "tollway", "control-plane", "--help"],
                          capture_output=True, text=True,
                          env={"COLUMNS": "200", "PATH": "/usr/bin"})
    assert proc.returncode == 0, proc.stderr
    flags = {a.split("=", 1)[0] for a in args[1:] if a.startswith("--")}
    missing = sorted(f for f in flags if f not in proc.stdout)
    assert not missing, f"the chart passes flags `tollway control-plane` lacks: {missing}"
