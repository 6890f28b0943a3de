"""A finished exchange for tests that feed the proxy's Metrics directly.

The per-request classes are compiled by mypyc (tollway/native.py): a compiled
`Metrics.record` takes a real `Exchange`, and a compiled `ListenerPlan` can only be made by
its constructor. So the plan is a real one, compiled from a real (minimal) proxy config,
one per label index: `Exchange` reads the plan's kind, port and default label set.
"""

from __future__ import annotations

import asyncio
import functools

from tollway.config.resource import ResourceSet
from tollway.control import translate
from tollway.control.world import World
from tollway.proxy.chain.build import ListenerPlan, compile_snapshot
from tollway.proxy.chain.mirror import Mirrorer
from tollway.proxy.chain.stream import Exchange
from tollway.proxy.chain.telemetry import Metrics
from tollway.proxy.http1.parse import Limits
from tollway.snapshot import types


@functools.cache
def _plan(label_index: int) -> ListenerPlan:
    node = types.Node(name="client-1.default", workload="client", namespace="default")
    cfg = translate.build(World.build(ResourceSet()), node,
                          translate.ProxyPorts(outbound=("127.0.0.1", 15001)), auto_mtls=False)
    snap = compile_snapshot(cfg, loop=asyncio.new_event_loop(), metrics=Metrics(),
                            mirrorer=Mirrorer(), limits=Limits())
    [plan] = [p for p in snap.plans.values() if p.kind == "outbound"]
    plan.default_label = label_index
    return plan


def finished(label_index: int, status: int, start: float, *, flags: str = "-",
             bytes_in: int = 0, bytes_out: int = 0) -> Exchange:
    """An exchange answered with `status` that began at `start`, as the listener records it."""
    ex = Exchange(_plan(label_index), "GET", "/", "/", "", {}, [], start, bytes_in=bytes_in)
    ex.status = status
    ex.flags = flags
    ex.bytes_out = bytes_out
    return ex
