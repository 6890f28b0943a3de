"""PeerAuthentication precedence (control/translate/security.py), as Istio resolves it."""

from __future__ import annotations

import pytest

from tests.security.sec_resources import FakeWorld, pa
from tollway.control.translate import security
from tollway.snapshot import types

NODE = types.Node(name="p-0", workload="payment-service", namespace="payments",
                  service_account="payment-service", labels={"app": "payment-service"})
SEL = {"selector": {"matchLabels": {"app": "payment-service"}}}


def mtls(mode: str, **extra: object) -> dict[str, object]:
    return {"mtls": {"mode": mode}, **extra}


def mode_for(*resources: object, node: types.Node = NODE) -> types.PeerAuthn:
    return security.peer_authn_for(FakeWorld(*resources), node)  # type: ignore[arg-type]


def test_peer_authn_defaults_to_permissive() -> None:
    assert mode_for() == types.PeerAuthn(mode="PERMISSIVE")


def test_peer_authn_seed_09_mesh_wide_strict_applies_everywhere() -> None:
    mesh = pa("default", mtls("STRICT"), namespace="istio-system")
    assert mode_for(mesh).mode == "STRICT"
    other = types.Node(name="x", namespace="elsewhere")
    assert mode_for(mesh, node=other).mode == "STRICT"


def test_peer_authn_namespace_overrides_mesh() -> None:
    mesh = pa("default", mtls("STRICT"), namespace="istio-system")
    ns = pa("ns", mtls("PERMISSIVE"))
    assert mode_for(mesh, ns).mode == "PERMISSIVE"


def test_peer_authn_workload_overrides_namespace() -> None:
    ns = pa("ns", mtls("PERMISSIVE"))
    wl = pa("wl", {**SEL, **mtls("DISABLE")})
    assert mode_for(ns, wl).mode == "DISABLE"


def test_peer_authn_unset_inherits_from_wider_scope() -> None:
    mesh = pa("default", mtls("STRICT"), namespace="istio-system")
    ns = pa("ns", mtls("UNSET"))
    wl = pa("wl", {**SEL})
    assert mode_for(mesh, ns, wl).mode == "STRICT"


def test_peer_authn_root_namespace_selector_is_ignored() -> None:
    rooted = pa("odd", {**SEL, **mtls("STRICT")}, namespace="istio-system")
    assert mode_for(rooted).mode == "PERMISSIVE"


def test_peer_authn_workload_selector_must_match_labels() -> None:
    wl = pa("wl", {"selector": {"matchLabels": {"app": "ledger"}}, **mtls("STRICT")})
    assert mode_for(wl).mode == "PERMISSIVE"


def test_peer_authn_other_namespace_does_not_apply() -> None:
    assert mode_for(pa("ns", mtls("STRICT"), namespace="web")).mode == "PERMISSIVE"


@pytest.mark.parametrize(("first", "second", "expected"), [
    ("2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z", "STRICT"),
    ("2026-01-01T00:00:00Z", "2025-01-01T00:00:00Z", "DISABLE"),
])
def test_peer_authn_oldest_wins_within_a_scope(first: str, second: str, expected: str) -> None:
    a = pa("a", mtls("STRICT"), created=first)
    b = pa("b", mtls("DISABLE"), created=second)
    assert mode_for(a, b).mode == expected


def test_peer_authn_port_level_overrides_and_unset_inherits() -> None:
    wl = pa("wl", {**SEL, **mtls("STRICT"),
                   "portLevelMtls": {8080: {"mode": "DISABLE"}, "9090": {"mode": "UNSET"}}})
    result = mode_for(pa("ns", mtls("PERMISSIVE")), wl)
    assert result.mode == "STRICT"
    assert result.port_modes == {8080: "DISABLE", 9090: "STRICT"}


SCOPE_MODES = [None, "UNSET", "STRICT", "PERMISSIVE", "DISABLE"]


@pytest.mark.parametrize("mesh", SCOPE_MODES)
@pytest.mark.parametrize("ns", SCOPE_MODES)
@pytest.mark.parametrize("wl", SCOPE_MODES)
def test_peer_authn_precedence_every_combination(mesh: str | None, ns: str | None,
                                                 wl: str | None) -> None:
    """Narrowest set mode wins; UNSET and absent inherit; nothing set means PERMISSIVE."""
    resources = []
    if mesh is not None:
        resources.append(pa("default", mtls(mesh), namespace="istio-system"))
    if ns is not None:
        resources.append(pa("ns", mtls(ns)))
    if wl is not None:
        resources.append(pa("wl", {**SEL, **mtls(wl)}))
    set_modes = [m for m in (mesh, ns, wl) if m not in (None, "UNSET")]
    expected = set_modes[-1] if set_modes else "PERMISSIVE"
    assert mode_for(*resources).mode == expected
