"""Rich, real-world manifests for every kind are accepted with no finding at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from tollway.config.kinds import KIND_VERSIONS
from tollway.config.load import load_paths, load_text

VALID = Path(__file__).resolve().parent / "valid"


@pytest.mark.parametrize("path", sorted(VALID.glob("*.yaml")), ids=lambda p: p.stem)
def test_valid_manifests_have_no_findings(path: Path) -> None:
    result = load_paths([path])
    assert result.findings == (), [f.render() for f in result.findings]
    assert all(r.model is not None for r in result.resources)


def test_valid_manifests_cover_every_kind() -> None:
    result = load_paths([VALID])
    assert {r.kind for r in result.resources} == set(KIND_VERSIONS)


@pytest.mark.parametrize("api", KIND_VERSIONS["VirtualService"])
def test_every_istio_networking_version_reads_the_same_schema(api: str) -> None:
    text = (f"apiVersion: {api}\nkind: VirtualService\nmetadata: {{name: a}}\n"
            "spec:\n  hosts: [a]\n  http:\n  - route:\n    - destination: {host: a}\n")
    assert load_text(text).findings == ()


def test_model_offers_typed_access_with_upstream_names() -> None:
    result = load_paths([VALID / "istio.yaml"])
    dr = result.resources.get("DestinationRule", "shop", "reviews")
    assert dr is not None
    od = dr.model.traffic_policy.outlier_detection
    assert od.consecutive_5xx_errors == 7 and od.base_ejection_time == "15m"
    assert dr.spec["trafficPolicy"]["outlierDetection"]["consecutive5xxErrors"] == 7


def test_autopromotion_under_bluegreen_is_not_warned() -> None:
    result = load_paths([VALID / "delivery.yaml"])
    assert result.findings == ()
