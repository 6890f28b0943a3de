"""`ControlPlane.wait_current` over the real wire: it must return as soon as every proxy
is current for the inputs, also when a change leaves a proxy's snapshot as it was.

Such a change sends nothing (the proxy has that version), so no ACK comes; the waiter
must be woken by the rebuild itself. `tollway up` waits this way before its ready line
and before stopping a retired replica; missing the wake-up made both wait their whole
timeout (the ready line never came within a test's budget).
"""

from __future__ import annotations

import asyncio
from typing import Any

from test_serve_stream import _run, _until, running_plane

from tests import creds
from tollway.control.proxies import ProxyEntry
from tollway.proxy import subscriber
from tollway.snapshot import types


def test_wait_current_returns_when_a_change_leaves_the_snapshot_alone(
    fake_compiler: Any, fake_server_cls: Any
) -> None:
    async def main() -> None:
        async with running_plane(fake_compiler) as (plane, url):
            node = types.Node(name="a-0.default", workload="a")
            plane.register(ProxyEntry(node, admin="127.0.0.1:1"))
            server = fake_server_cls()
            follow = asyncio.create_task(
                subscriber.follow(server, url, node, admin="127.0.0.1:1", inbound=None,
                                  token=creds.for_node(node)))
            try:
                await _until(lambda: plane.ledger.row(node.name).current)
                version = server.version
                plane.touch()  # new inputs that translate to the same snapshot
                assert await plane.wait_current([node.name], 5.0)
                assert server.version == version and len(server.applied) == 1
            finally:
                follow.cancel()

    _run(main())
