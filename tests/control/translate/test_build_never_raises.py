"""Config generation never raises, whatever the snapshot holds (issue 12's corner: a
PeerAuthentication with `portLevelMtls` made every workload it selects get no config,
because a dict with int keys could not be content-hashed).

Two levels: any snapshot value (hypothesis over the snapshot types) can be versioned and
round-tripped; any mix of security manifests with the routing ones of
test_build_properties builds for every proxy, and a workload's bad input never stops
another workload's config.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.control.translate.test_build_properties import NODES, PORTS, REPLICAS, manifests
from tollway.config.load import load_text
from tollway.control import translate
from tollway.control.world import World
from tollway.kit.hashing import content_hash as kit_hash
from tollway.snapshot import codec, types

MODES = ["STRICT", "PERMISSIVE", "DISABLE", "UNSET"]
SELECTORS = [{}, {"app": "a"}, {"app": "myapp"}, {"istio": "ingress"}, {"version": "v1"}]

PORTLEVEL_PA = """apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: ports, namespace: default}
spec:
  selector: {matchLabels: {app: a}}
  mtls: {mode: STRICT}
  portLevelMtls:
    8080: {mode: DISABLE}
    9090: {mode: PERMISSIVE}
"""


def test_port_level_mtls_builds_and_reaches_the_snapshot() -> None:
    world = World.build(load_text(PORTLEVEL_PA, "pa.yaml").resources, REPLICAS)
    node = NODES[0]  # app: a
    config = translate.build(world, node, PORTS)
    assert config.peer_authn.mode == "STRICT"
    assert config.peer_authn.port_modes == {8080: "DISABLE", 9090: "PERMISSIVE"}
    assert codec.decode(codec.encode(config)) == config
    # the version moves with the port-level settings (they are part of the content)
    other = PORTLEVEL_PA.replace("8080: {mode: DISABLE}", "8080: {mode: STRICT}")
    changed = translate.build(World.build(load_text(other, "pa.yaml").resources, REPLICAS),
                              node, PORTS)
    assert changed.version != config.version


# ------------------------------------------------------------------ any snapshot value

port_modes = st.dictionaries(st.integers(1, 65535), st.sampled_from(MODES[:3]), max_size=4)
peer_authn = st.builds(types.PeerAuthn, mode=st.sampled_from(MODES[:3]), port_modes=port_modes)
snapshots = st.builds(
    types.ProxyConfig,
    version=st.just(""),
    node=st.from_type(types.Node),
    listeners=st.lists(st.from_type(types.Listener), max_size=2).map(tuple),
    clusters=st.lists(st.from_type(types.Cluster), max_size=2).map(tuple),
    peer_authn=peer_authn,
    authz=st.from_type(types.Authz),
    mesh=st.from_type(types.Mesh),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots)
def test_any_snapshot_can_be_versioned(config: types.ProxyConfig) -> None:
    stamped = translate.with_version(config)
    assert len(stamped.version) == 12
    assert translate.with_version(stamped).version == stamped.version


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.one_of(st.integers(), st.text(max_size=4)),
                       st.one_of(st.integers(), st.text(max_size=4)), max_size=6))
def test_hashes_take_any_keys_and_ignore_insertion_order(value: dict[Any, Any]) -> None:
    backwards = dict(reversed(list(value.items())))
    assert kit_hash(value) == kit_hash(backwards)
    assert translate.content_hash([value]) == translate.content_hash([backwards])


# ------------------------------------------------------------------ any security manifests

def _doc(kind: str, name: str, ns: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "security.istio.io/v1", "kind": kind,
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


@st.composite
def security_docs(draw: st.DrawFn) -> list[dict[str, Any]]:
    docs = []
    for i in range(draw(st.integers(0, 3))):
        spec: dict[str, Any] = {}
        selector = draw(st.sampled_from(SELECTORS))
        if selector:
            spec["selector"] = {"matchLabels": selector}
        if draw(st.booleans()):
            spec["mtls"] = {"mode": draw(st.sampled_from(MODES))}
        if selector and draw(st.booleans()):
            spec["portLevelMtls"] = {
                p: {"mode": draw(st.sampled_from(MODES))}
                for p in draw(st.lists(st.sampled_from([80, 8080, 9090]), min_size=1,
                                       max_size=3, unique=True))}
        ns = draw(st.sampled_from(["default", "other", "istio-system"]))
        docs.append(_doc("PeerAuthentication", f"pa{i}", ns, spec))
    for i in range(draw(st.integers(0, 2))):
        rule: dict[str, Any] = {}
        if draw(st.booleans()):
            rule["to"] = [{"operation": {"paths": draw(st.lists(
                st.sampled_from(["/admin*", "*/x", "/a"]), min_size=1, max_size=2)),
                "ports": ["8080"]}}]
        if draw(st.booleans()):
            rule["from"] = [{"source": {"namespaces": ["default"]}}]
        spec = {"action": draw(st.sampled_from(["ALLOW", "DENY", "AUDIT"])),
                "rules": [rule]}
        selector = draw(st.sampled_from(SELECTORS))
        if selector:
            spec["selector"] = {"matchLabels": selector}
        docs.append(_doc("AuthorizationPolicy", f"ap{i}", "default", spec))
    return docs


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(manifests(), security_docs())
def test_every_proxy_gets_config_whatever_the_policies(
    routing: str, security: list[dict[str, Any]]
) -> None:
    text = "\n---\n".join([routing, *(json.dumps(d) for d in security)]).strip("-\n")
    loaded = load_text(text, "gen.yaml")
    world = World.build(loaded.resources, REPLICAS)
    for node in NODES:
        config = translate.build(world, node, PORTS)
        assert codec.decode(codec.encode(config)) == config
