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


def test_the_sidecar_values_reach_the_injector_config(helm: Path) -> None:
    """The chart's `sidecar` values become the injector's config (the tollway-injector
    ConfigMap, mounted where the Deployment's --injection-config points), which the
    control plane reads into the injected containers' image, command and resources."""
    from tollway.kube import inject

    def settings(*extra: str) -> inject.Settings:
        docs = render(helm, *extra)
        [cm] = [d for d in docs if d["kind"] == "ConfigMap"
                and d["metadata"]["name"] == "tollway-injector"]
        deploy = next(d for d in docs if d["kind"] == "Deployment")
        pod = deploy["spec"]["template"]["spec"]
        [container] = pod["containers"]
        assert "--injection-config=/etc/tollway/injector/config.yaml" in container["args"]
        mount = next(m for m in container["volumeMounts"] if m["name"] == "injector")
        volume = next(v for v in pod["volumes"] if v["name"] == "injector")
        assert mount["mountPath"] == "/etc/tollway/injector"
        assert volume["configMap"]["name"] == "tollway-injector"
        data = YAML(typ="safe").load(cm["data"]["config.yaml"])
        return inject.from_config(data, "config.yaml", "tollway-system")

    default = settings()
    assert default.image == "tollway:0.1.0" and default.command == ("tollway",)
    assert default.proxy_resources == {"requests": {"cpu": "100m", "memory": "128Mi"},
                                       "limits": {"memory": "256Mi"}}
    assert default.rewrite_probes is True
    assert default.drain_seconds == 5
    custom = settings("--set", "image.repository=reg.example/tollway", "--set", "image.tag=2.0",
                      "--set", "sidecar.image.tag=2.0-proxy",
                      "--set", "sidecar.resources.limits.memory=1Gi",
                      "--set", "sidecar.rewriteAppHTTPProbers=false",
                      "--set", "sidecar.terminationDrainSeconds=8",
                      "--set-json", 'sidecar.command=["/opt/tollway/bin/tollway"]')
    assert custom.image == "reg.example/tollway:2.0-proxy"
    assert custom.proxy_resources["limits"] == {"memory": "1Gi"}
    assert custom.command == ("/opt/tollway/bin/tollway",)
    assert custom.rewrite_probes is False
    assert custom.drain_seconds == 8
