"""exportTo and Istio's DestinationRule namespace preference."""

from __future__ import annotations

from translate_kit import cluster, fqdn, load, replica, split, vhost

from tollway.control import translate
from tollway.control.world import World
from tollway.snapshot import types

SHOP = fqdn("cart", "shop")
VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: cart, namespace: shop}
spec:
  hosts: [cart]
  exportTo: ["."]
  http:
  - route:
    - destination: {host: cart, subset: v2}
"""


def _dr(ns: str, lb: str, export: str = "") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: cart-{ns}, namespace: {ns}}}
spec:
  host: cart.shop.svc.cluster.local
  {export}
  trafficPolicy: {{loadBalancer: {{simple: {lb}}}}}
  subsets:
  - name: v2
    labels: {{version: v2}}
"""


def _config(namespace: str, *docs: str) -> types.ProxyConfig:
    world = World.build(load(*docs), [replica("cart", {"app": "cart", "version": "v2"},
                                              namespace="shop")])
    node = types.Node(name="n", namespace=namespace)
    return translate.build(world, node, translate.ProxyPorts(outbound=("127.0.0.1", 1)),
                           auto_mtls=False)


def test_vs_exported_to_own_namespace_only() -> None:
    inside = _config("shop", VS, _dr("shop", "RANDOM"))
    assert split(vhost(inside, "cart:8080").routes[0]) == {f"outbound|8080|v2|{SHOP}": 100}
    outside = _config("default", VS, _dr("shop", "RANDOM"))
    assert split(vhost(outside, "cart.shop:8080").routes[0]) == {f"outbound|8080||{SHOP}": 100}


def test_destination_rule_in_client_namespace_wins() -> None:
    docs = (VS.replace('exportTo: ["."]', ""), _dr("shop", "RANDOM"), _dr("default", "ROUND_ROBIN"))
    name = f"outbound|8080|v2|{SHOP}"
    assert cluster(_config("default", *docs), name).load_balancer.simple == "ROUND_ROBIN"
    assert cluster(_config("other", *docs), name).load_balancer.simple == "RANDOM"


def test_destination_rule_not_exported_is_ignored() -> None:
    docs = (VS.replace('exportTo: ["."]', ""), _dr("shop", "RANDOM", 'exportTo: ["."]'))
    config = _config("default", *docs)
    assert config.clusters == ()  # its subset is unknown here: 503 NC, as in Istio
