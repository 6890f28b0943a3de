"""Gateway servers: MUTUAL credentials, httpsRedirect, host binding and wildcards."""

from __future__ import annotations

import asyncio
import base64

import msgspec
from translate_kit import fqdn, load, replica, split, vhost

from tests.security.live_mesh import http_request, running_app
from tollway.control import translate
from tollway.control.world import World
from tollway.proxy.main import ProxyServer
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


def _catch_all(app_port: int | None = None) -> types.ProxyConfig:
    world = World.build(load(CATCH_ALL), [replica("shop", {"app": "shop"}, port=app_port)])
    return translate.build(world, NODE, translate.ProxyPorts(gateway_offset=8000),
                           auto_mtls=False)


CATCH_ALL = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: edge}
spec:
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*.example.com", "*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: all, namespace: edge}
spec:
  hosts: ["*", "shop.example.com"]
  gateways: [edge]
  http:
  - route:
    - destination: {host: shop.default.svc.cluster.local}
"""


def test_every_overlapping_server_host_gets_a_virtual_host() -> None:
    """Istio keeps the narrower host of every overlapping (server, VS) pair, not the first:
    VS `*` on server hosts `*.example.com` and `*` serves `127.0.0.1:PORT` too."""
    (table,) = _catch_all().route_tables
    assert [v.domains for v in table.virtual_hosts] == [
        ("*.example.com", "*.example.com:80", "*.example.com:8080"),
        ("*", "*:80", "*:8080"),
        ("shop.example.com", "shop.example.com:80", "shop.example.com:8080"),
    ]
    assert {v.routes[0].virtual_service for v in table.virtual_hosts} == {"edge/all"}


def test_a_request_by_ip_authority_reaches_the_catch_all_virtual_service() -> None:
    """Live: the gateway (on an ephemeral port) answers `Host: 127.0.0.1:PORT`, which only
    the `*` virtual host covers, from the VS instead of a 404."""
    with running_app() as app_port:
        config = _catch_all(app_port)
        config = msgspec.structs.replace(
            config, listeners=tuple(msgspec.structs.replace(li, port=0)
                                    for li in config.listeners))

        async def main() -> list[int | None]:
            server = ProxyServer(config, tls_state=None, serve_admin=False)
            await server.start()
            port = server.listener_address("gateway|80")[1]
            try:
                replies = await asyncio.gather(
                    http_request(port, host=f"127.0.0.1:{port}"),
                    http_request(port, host="shop.example.com"))
            finally:
                await server.close()
            return [r.status if r else None for r in replies]

        assert asyncio.run(main()) == [200, 200]
