"""World: host resolution relative to the naming resource, and the indexes."""

from __future__ import annotations

from tollway.config.load import load_text
from tollway.config.resource import ResourceSet
from tollway.control.world import World, host_matches, resolve_host

KNOWN = {"reviews.foo.svc.cluster.local": 1}


def _load(text: str) -> ResourceSet:
    result = load_text(text, "test.yaml")
    assert result.ok, [f.render() for f in result.findings]
    return result.resources


def test_resolve_short_name_in_the_naming_namespace() -> None:
    assert resolve_host("reviews", "foo", {}) == "reviews.foo.svc.cluster.local"
    assert resolve_host("reviews.foo", "bar", KNOWN) == "reviews.foo.svc.cluster.local"
    assert resolve_host("reviews.foo.svc", "bar", {}) == "reviews.foo.svc.cluster.local"
    assert resolve_host("api.example.com", "foo", {}) == "api.example.com"
    assert resolve_host("*.example.com", "foo", {}) == "*.example.com"


def test_host_matches_wildcards_like_istio() -> None:
    assert host_matches("*.example.com", "api.example.com")
    assert not host_matches("*.example.com", "example.com")
    assert host_matches("*", "anything")
    assert host_matches("*.example.com", "*.a.example.com")


VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {ns}}}
spec:
  hosts: [myapp]
  {gateways}
  http:
  - route:
    - destination: {{host: myapp}}
"""


def test_mesh_vs_index_by_fqdn_oldest_first_and_gateway_only_excluded() -> None:
    text = "---\n".join([
        VS.format(name="a", ns="default", gateways=""),
        VS.format(name="b", ns="default", gateways=""),
        VS.format(name="c", ns="other", gateways=""),
        VS.format(name="d", ns="default", gateways="gateways: [gw]"),
    ])
    world = World.build(_load(text))
    assert [v.name for v in world.mesh_virtual_services["myapp.default.svc.cluster.local"]] \
        == ["a", "b"]
    assert [v.name for v in world.mesh_virtual_services["myapp.other.svc.cluster.local"]] \
        == ["c"]
    assert len(world.virtual_services) == 4


DR = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}}}
spec:
  host: "{host}"
  trafficPolicy: {{loadBalancer: {{simple: RANDOM}}}}
"""


def test_destination_rules_exact_host_beats_wildcard() -> None:
    text = "---\n".join([DR.format(name="w", host="*.svc.cluster.local"),
                         DR.format(name="e", host="myapp")])
    world = World.build(_load(text))
    assert [d.name for d in world.destination_rules_for("myapp.default.svc.cluster.local")] \
        == ["e"]
    assert [d.name for d in world.destination_rules_for("x.y.svc.cluster.local")] == ["w"]
    assert world.destination_rules_for("api.example.com") == ()


def test_resolve_name_dot_namespace_for_known_namespace() -> None:
    assert resolve_host("pay.payments", "default", {}, namespaces={"payments"}) == \
        "pay.payments.svc.cluster.local"
    assert resolve_host("example.com", "default", {}, namespaces={"payments"}) == "example.com"
