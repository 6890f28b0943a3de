"""A captured inbound listener's plans (proxy/chain/build.py `_capture_plan`): a chain per
declared port, a passthrough to 127.0.0.1:PORT made once for any other port, and never one
to the proxy's own ports (a client dialling podIP:15001 would reach the outbound listener
and call the mesh as this pod)."""

from __future__ import annotations

import asyncio

import pytest

from tollway.config.resource import ResourceSet
from tollway.control import translate
from tollway.control.world import World
from tollway.proxy.chain.build import RESERVED_PORTS, compile_snapshot
from tollway.proxy.chain.mirror import Mirrorer
from tollway.proxy.chain.telemetry import Metrics
from tollway.proxy.http1.parse import Limits
from tollway.snapshot import types


def _config() -> types.ProxyConfig:
    node = types.Node(name="web-1.shop", workload="web", namespace="shop")
    ports = translate.ProxyPorts(outbound=("127.0.0.1", 15001),
                                 capture=("0.0.0.0", 15006, (8080, 9000)))
    return translate.build(World.build(ResourceSet()), node, ports, auto_mtls=False)


def _endpoint(plan: object) -> tuple[str, int] | None:
    cluster = getattr(plan, "default_cluster", None)
    if cluster is not None:
        ep = cluster.spec.endpoints[0]
        return ep.address, ep.port
    matcher = getattr(plan, "matcher", None)
    if matcher is None:
        return None
    name = matcher.table.virtual_hosts[0].routes[0].clusters[0].cluster
    ep = plan.clusters[name].spec.endpoints[0]  # type: ignore[attr-defined]
    return ep.address, ep.port


@pytest.mark.parametrize("port", sorted({*RESERVED_PORTS, 15001, 15006}))
def test_the_proxys_own_ports_are_never_passed_through(port: int) -> None:
    async def run() -> None:
        snap = compile_snapshot(_config(), loop=asyncio.get_running_loop(), metrics=Metrics(),
                                mirrorer=Mirrorer(), limits=Limits())
        plan = snap.plans["virtualInbound"]
        assert plan.for_port(port) is plan and _endpoint(plan) is None  # answered 404

    asyncio.run(run())


def test_chains_and_passthrough_reach_the_app_at_the_dialled_port() -> None:
    async def run() -> None:
        snap = compile_snapshot(_config(), loop=asyncio.get_running_loop(), metrics=Metrics(),
                                mirrorer=Mirrorer(), limits=Limits())
        plan = snap.plans["virtualInbound"]
        assert plan.by_port is not None and set(plan.by_port) == {8080, 9000}
        assert _endpoint(plan.for_port(8080)) == ("127.0.0.1", 8080)
        assert _endpoint(plan.for_port(9000)) == ("127.0.0.1", 9000)
        other = plan.for_port(7070)
        assert _endpoint(other) == ("127.0.0.1", 7070)
        assert plan.for_port(7070) is other  # made once per snapshot
        assert plan.for_port(0) is plan  # not redirected: nothing to reach
        assert snap.plans["outbound"].by_port is None

    asyncio.run(run())
