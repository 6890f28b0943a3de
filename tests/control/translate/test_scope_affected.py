"""scope.affected: which proxies a change can touch."""

from __future__ import annotations

from translate_kit import load, replica

from tollway.control import scope, translate
from tollway.control.world import World
from tollway.snapshot import types

A = types.Node(name="a", namespace="default", labels={"app": "a"})
B = types.Node(name="b", namespace="shop", labels={"app": "b"})
NODES = (A, B)

POLICY = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny, namespace: NS}
spec:
  action: DENY
  rules:
  - to: [{operation: {methods: [DELETE]}}]
"""
TEMPLATE = """
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: t}
spec:
  metrics:
  - name: m
    provider: {web: {url: "http://x/"}}
"""


def test_first_world_affects_everyone() -> None:
    assert scope.affected(None, World.build(load("02")), NODES) == NODES


def test_unchanged_world_affects_no_one() -> None:
    assert scope.affected(World.build(load("02")), World.build(load("02")), NODES) == ()


def test_route_change_affects_everyone() -> None:
    assert scope.affected(World.build(load("03")), World.build(load("03", "04")), NODES) \
        == NODES


def test_endpoint_change_affects_everyone() -> None:
    old = World.build(load("02"), [replica("myapp", {"app": "myapp"}, port=1)])
    new = World.build(load("02"), [replica("myapp", {"app": "myapp"}, port=2)])
    assert scope.affected(old, new, NODES) == NODES


def test_authorization_policy_affects_its_namespace_only() -> None:
    old = World.build(load("02"))
    assert scope.affected(old, World.build(load("02", POLICY.replace("NS", "shop"))),
                          NODES) == (B,)
    assert scope.affected(old, World.build(load("02", POLICY.replace("NS", "istio-system"))),
                          NODES) == NODES


def test_inert_kinds_affect_no_one() -> None:
    assert scope.affected(World.build(load("02")), World.build(load("02", TEMPLATE)),
                          NODES) == ()


def test_unaffected_nodes_really_keep_their_version() -> None:
    """The promise behind `affected`: a proxy it leaves out builds to the same version."""
    ports = translate.ProxyPorts(outbound=("127.0.0.1", 1))
    old = World.build(load("02"))
    new = World.build(load("02", POLICY.replace("NS", "shop"), TEMPLATE))
    (changed,) = scope.affected(old, new, NODES)
    assert translate.build(old, A, ports).version == translate.build(new, A, ports).version
    assert translate.build(old, B, ports).version != translate.build(new, B, ports).version
    assert changed == B
