"""Kinds keyed by group and kind; accepted kinds load with exactly one warning each."""

from __future__ import annotations

from pathlib import Path

import pytest

from tollway.config.kinds import ALL_KINDS, KindSpec, lookup
from tollway.config.load import load_paths, load_text

ACCEPTED = Path(__file__).resolve().parent / "accepted"
IGNORED = [s for s in ALL_KINDS if s.ignored is not None]


def _docs_by_kind() -> dict[tuple[str, str], list[str]]:
    result = load_paths([ACCEPTED])
    out: dict[tuple[str, str], list[str]] = {}
    for f in result.findings:
        out.setdefault((f.kind, f.name), []).append(f.render())
    return out


def test_accepted_corpus_has_only_warnings() -> None:
    result = load_paths([ACCEPTED])
    assert result.ok, [f.render() for f in result.errors]
    assert len(result.resources) == 0  # accepted kinds never enter the resource set
    for renders in _docs_by_kind().values():
        assert len(renders) == 1, renders
        assert ": warning: accepted; " in renders[0] and "(ignored here" in renders[0]


@pytest.mark.parametrize("spec", IGNORED, ids=lambda s: f"{s.group or 'core'}.{s.kind}")
def test_every_accepted_kind_has_a_valid_example(spec: KindSpec) -> None:
    kinds = {kind for kind, _ in _docs_by_kind()}
    assert spec.kind in kinds


def test_gateway_api_gateway_is_not_an_istio_gateway_with_a_wrong_version() -> None:
    text = ("apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g}\n"
            "spec:\n  gatewayClassName: istio\n  listeners: [{name: h, port: 80, "
            "protocol: HTTP}]\n")
    result = load_text(text)
    assert result.ok
    (only,) = result.findings
    assert "Gateway API" in only.message and "served as" not in only.message
    istio = lookup("networking.istio.io/v1", "Gateway")
    k8s = lookup("gateway.networking.k8s.io/v1", "Gateway")
    assert istio is not None and k8s is not None and istio is not k8s


def test_wrong_version_names_the_versions_of_that_group() -> None:
    text = "apiVersion: networking.istio.io/v2\nkind: Gateway\nmetadata: {name: g}\nspec: {}\n"
    (only,) = load_text(text).findings
    assert only.path == "apiVersion" and "networking.istio.io/v1" in only.message


def test_sidecar_is_never_taken_for_a_secret() -> None:
    text = ("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default}\n"
            "spec:\n  egress:\n  - hosts: ['./*']\n")
    result = load_text(text)
    assert result.findings == () and result.resources.get("Sidecar", "default", "default")


def test_an_invalid_accepted_kind_is_still_refused_at_its_line() -> None:
    text = ("apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: w}\n"
            "spec:\n  scaleTargetRef: {kind: Deployment, name: w}\n  maxReplicas: ten\n")
    result = load_text(text)
    (only,) = result.findings
    assert only.is_error and only.line == 6 and only.path == "spec.maxReplicas"


def test_generate_name_without_name_gets_a_stable_name() -> None:
    text = ("apiVersion: v1\nkind: Service\nmetadata: {generateName: api-}\n"
            "spec: {ports: [{port: 80}]}\n")
    first, again = load_text(text), load_text(text)
    assert first.ok and len(first.resources) == 1
    (svc,) = first.resources
    assert svc.name.startswith("api-") and len(svc.name) == 9
    assert [r.name for r in again.resources] == [svc.name]  # same document, same name
    (info,) = first.findings
    assert info.severity.value == "info" and info.path == "metadata.generateName"
