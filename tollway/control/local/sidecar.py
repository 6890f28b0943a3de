"""Run one or more sidecars that follow the control plane, in one process.

`python -m tollway.control.local.sidecar --control-plane URL NODE_JSON [NODE_JSON ...]`
where each NODE_JSON is `{"node": Node, "admin_port": N}`. Used by `tollway up` (one
node per process) and by bench/push_latency.py (many nodes per process, which keeps a
100-proxy benchmark within the memory of a small machine).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
from typing import Any

import msgspec

from tollway.proxy import main as proxy_main
from tollway.proxy import subscriber
from tollway.snapshot import types


async def run(url: str, specs: list[dict[str, Any]]) -> None:
    servers = []
    tasks = []
    for spec in specs:
        node = msgspec.convert(spec["node"], types.Node)
        server = proxy_main.ProxyServer(None, admin_port=int(spec.get("admin_port", 0)),
                                        serve_admin=bool(spec.get("admin_port", 0)))
        await server.start()
        servers.append(server)
        admin = f"127.0.0.1:{server.admin_address[1]}" if server.admin_address[1] else ""
        tasks.append(asyncio.create_task(
            subscriber.follow(server, url, node, admin=admin, inbound=None)))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for task in tasks:
        task.cancel()
    for server in servers:
        with contextlib.suppress(Exception):
            await server.drain()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--control-plane", required=True)
    parser.add_argument("nodes", nargs="+")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    specs = [json.loads(n) for n in args.nodes]
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(run(args.control_plane, specs))


if __name__ == "__main__":
    main()
