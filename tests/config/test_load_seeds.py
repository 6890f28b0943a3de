"""The 16 seed manifests load exactly as users paste them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tollway.config.findings import Severity
from tollway.config.load import load_paths

SEEDS = Path(__file__).resolve().parents[1] / "data" / "seed"
SEED_FILES = sorted(SEEDS.glob("*.yaml"))


def test_seeds_are_all_present() -> None:
    assert len(SEED_FILES) == 16


@pytest.mark.parametrize("path", SEED_FILES, ids=lambda p: p.name[:2])
def test_seed_validates_with_expected_findings(path: Path) -> None:
    result = load_paths([path])
    assert result.ok
    if path.name.startswith("14-"):
        assert len(result.findings) == 1
        (f,) = result.findings
        assert f.severity is Severity.WARNING
        assert f.path == "spec.strategy.canary.autoPromotionEnabled"
        assert f.line == 45
        assert "blueGreen" in f.message and "manual gate" in f.message
    else:
        assert result.findings == ()
    assert len(result.resources) >= 1


def test_seed_resources_keep_spec_as_plain_data() -> None:
    result = load_paths([SEEDS / "16-ingress-gateway.yaml"])
    gw = result.resources.get("Gateway", "istio-ingress", "main-gateway")
    assert gw is not None
    assert type(gw.spec) is dict
    assert gw.spec["servers"][0]["tls"]["credentialName"] == "wildcard-tls"
    vs = result.resources.get("VirtualService", "default", "api-gateway")
    assert vs is not None and vs.namespace == "default"
    assert vs.spec["http"][0]["route"][0]["destination"]["port"] == {"number": 8080}


def test_seed_folder_loads_every_file_in_order() -> None:
    result = load_paths([SEEDS])
    assert [Path(f).name for f in result.files] == [p.name for p in SEED_FILES]
    assert result.ok
    assert len(result.findings) == 1
