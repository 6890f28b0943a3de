"""Gateway servers: MUTUAL credentials, httpsRedirect, host binding and wildcards."""

from __future__ import annotations

import base64

from translate_kit import fqdn, load, replica, split, vhost

from tollway.control import translate
from tollway.control.world import World
from tollway.snapshot import types


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


GATEWAY = f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: edge, namespace: edge}}
spec:
  selector: {{istio: ingress}}
  servers:
  - port: {{number: 443, name: https, protocol: HTTPS}}
    hosts: ["*.example.com"]
    tls: {{mode: MUTUAL, credentialName: certs}}
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ["*.example.com"]
    tls: {{httpsRedirect: true}}
---
apiVersion: v1
kind: Secret
metadata: {{name: certs, namespace: edge}}
type: kubernetes.io/tls
data: {{tls.crt: {_b64("C")}, tls.key: {_b64("K")}, ca.crt: {_b64("CA")}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: shop}}
spec:
  hosts: ["shop.example.com", "example.com"]
  gateways: [edge/edge]
  http:
  - route:
    - destination: {{host: shop}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: wild, namespace: edge}}
spec:
  hosts: ["*.api.example.com"]
  gateways: [edge]
  http:
  - route:
    - destination: {{host: shop.default.svc.cluster.local}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: elsewhere}}
spec:
  hosts: ["other.example.com"]
  gateways: [edge]
  http:
  - route:
    - destination: {{host: shop}}
"""
NODE = types.Node(name="gw", kind="gateway")


def _config() -> types.ProxyConfig:
    world = World.build(load(GATEWAY), [replica("shop", {"app": "shop"})])
    return translate.build(world, NODE, translate.ProxyPorts(gateway_offset=8000))


def test_mutual_tls_takes_ca_from_secret() -> None:
    https = next(li for li in _config().listeners if li.port == 8443)
    assert https.tls == types.DownstreamTls(
        mode="MUTUAL", credential=types.TlsCredential(cert_chain="C", private_key="K",
                                                      ca_certificates="CA"),
        sni_hosts=("*.example.com",))


def test_https_redirect_answers_every_request() -> None:
    config = _config()
    http = next(li for li in config.listeners if li.port == 8080)
    table = next(t for t in config.route_tables if t.name == http.route_table)
    assert len(table.virtual_hosts) == 2
    for v in table.virtual_hosts:
        (route,) = v.routes
        assert route.redirect == types.Redirect(scheme="https")


def test_binding_by_host_and_gateway_reference() -> None:
    config = _config()
    shop = vhost(config, "shop.example.com:8443")
    assert split(shop.routes[0]) == {f"outbound|8080||{fqdn('shop')}": 100}
    wild = vhost(config, "*.api.example.com:8443")
    assert wild.routes[0].virtual_service == "edge/wild"
    domains = {d for t in config.route_tables for v in t.virtual_hosts for d in v.domains}
    assert "example.com" not in domains  # not covered by *.example.com
    assert "other.example.com" not in domains  # `edge` means default/edge for this VS


def test_gateway_with_labels_serves_only_matching_gateways() -> None:
    world = World.build(load(GATEWAY))
    other = types.Node(name="gw", kind="gateway", labels={"istio": "egress"})
    assert translate.build(world, other, translate.ProxyPorts()).listeners == ()
    match = types.Node(name="gw", kind="gateway", labels={"istio": "ingress"})
    assert len(translate.build(world, match, translate.ProxyPorts()).listeners) == 2
