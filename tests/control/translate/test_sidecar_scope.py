"""Sidecar egress scoping: which services a workload's sidecar has routes for, and what
happens to the others (ALLOW_ANY passthrough, REGISTRY_ONLY 502), pure and live."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from translate_kit import fqdn, load, replica

from tests.security.live_mesh import http_request, running_app
from tollway.control import translate
from tollway.control.translate import sidecar
from tollway.control.world import World
from tollway.proxy.main import ProxyServer
from tollway.snapshot import types

SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec: {selector: {app: cart}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: pay, namespace: payments}
spec: {selector: {app: pay}, ports: [{port: 80}, {port: 9090}]}
---
apiVersion: v1
kind: Service
metadata: {name: audit, namespace: ops}
spec: {selector: {app: audit}, ports: [{port: 80}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: cart, namespace: shop}
spec:
  hosts: [cart]
  http:
  - route: [{destination: {host: cart}}]
    headers: {response: {set: {x-routed-by: cart-vs}}}
"""
NODE = types.Node(name="web-0.shop", workload="web", namespace="shop",
                  labels={"app": "web"})


def _sidecar(body: str, namespace: str = "shop", name: str = "default") -> str:
    return (f"apiVersion: networking.istio.io/v1\nkind: Sidecar\n"
            f"metadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{body}")


def _config(*docs: str, ports: dict[str, int] | None = None) -> types.ProxyConfig:
    reps = [replica(app, {"app": app}, namespace=ns, port=(ports or {}).get(app))
            for app, ns in (("cart", "shop"), ("pay", "payments"), ("audit", "ops"))]
    world = World.build(load(SERVICES, *docs), reps)
    return translate.build(world, NODE, translate.ProxyPorts(outbound=("127.0.0.1", 0)),
                           auto_mtls=False)


def _routes(config: types.ProxyConfig) -> dict[str, str]:
    """domain -> what the vhost does: 'routed', 'passthrough' or 'block'."""
    out = {}
    for t in config.route_tables:
        for v in t.virtual_hosts:
            kind = ("block" if v.name == sidecar.BLOCK_ALL else "passthrough"
                    if v.name.startswith(sidecar.PASSTHROUGH) else "routed")
            out.update(dict.fromkeys(v.domains, kind))
    return out


def test_without_a_sidecar_every_service_is_routed() -> None:
    routes = _routes(_config())
    assert {routes[fqdn(n, ns)] for n, ns in (("cart", "shop"), ("pay", "payments"),
                                               ("audit", "ops"))} == {"routed"}


def test_egress_hosts_scope_the_routes_and_allow_any_passes_the_rest_through() -> None:
    routes = _routes(_config(_sidecar("  egress:\n  - hosts: ['./*', 'payments/*']\n")))
    assert routes[fqdn("cart", "shop")] == "routed"
    assert routes[fqdn("pay", "payments")] == "routed"
    assert routes[fqdn("audit", "ops")] == "passthrough"
    assert "*" not in routes


def test_registry_only_blocks_everything_outside_the_scope() -> None:
    routes = _routes(_config(_sidecar(
        "  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n"
        "  egress:\n  - port: {number: 9090, protocol: HTTP, name: m}\n"
        "    hosts: ['payments/pay.payments.svc.cluster.local']\n  - hosts: ['./*']\n")))
    assert routes[fqdn("cart", "shop")] == "routed"
    assert routes[f"{fqdn('pay', 'payments')}:9090"] == "routed"
    assert fqdn("pay", "payments") not in routes  # port 80 is not in the 9090 listener
    assert fqdn("audit", "ops") not in routes and routes["*"] == "block"


def test_workload_selector_sidecar_wins_over_the_namespace_default() -> None:
    only_ops = _sidecar("  workloadSelector: {labels: {app: web}}\n"
                        "  egress:\n  - hosts: ['ops/*']\n", name="web")
    default = _sidecar("  egress:\n  - hosts: ['./*']\n")
    routes = _routes(_config(default, only_ops))
    assert routes[fqdn("audit", "ops")] == "routed"
    assert routes[fqdn("cart", "shop")] == "passthrough"


def test_root_namespace_sidecar_is_the_mesh_default_and_tilde_means_none() -> None:
    routes = _routes(_config(_sidecar("  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n"
                                      "  egress:\n  - hosts: ['~/*']\n",
                                      namespace="istio-system")))
    assert set(routes.values()) == {"block"}


@pytest.fixture(scope="module")
def app_port() -> Iterator[int]:
    with running_app() as port:
        yield port


@pytest.mark.parametrize("mode", ["ALLOW_ANY", "REGISTRY_ONLY"])
def test_live_outbound_through_a_scoped_sidecar(mode: str, app_port: int) -> None:
    config = _config(_sidecar(f"  outboundTrafficPolicy: {{mode: {mode}}}\n"
                              "  egress:\n  - hosts: ['./*']\n"),
                     ports={"cart": app_port, "audit": app_port})

    async def main() -> list[int | None]:
        server = ProxyServer(config, tls_state=None, serve_admin=False)
        await server.start()
        port = server.listener_address("outbound")[1]
        try:
            replies = await asyncio.gather(
                http_request(port, host=fqdn("cart", "shop")),
                http_request(port, host=fqdn("audit", "ops")),
                http_request(port, host="example.org"))
        finally:
            await server.close()
        assert replies[0] is not None and replies[0].headers.get("x-routed-by") == "cart-vs"
        if replies[1] is not None and replies[1].status == 200:
            assert "x-routed-by" not in replies[1].headers
        return [r.status if r else None for r in replies]

    statuses = asyncio.run(main())
    if mode == "ALLOW_ANY":
        assert statuses[:2] == [200, 200]  # audit passes through, untouched by routing rules
    else:
        assert statuses == [200, 502, 502]
