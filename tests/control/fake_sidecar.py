"""A stand-in sidecar for supervisor tests: follows the control plane, opens its listeners.

Run as `python fake_sidecar.py CONTROL_URL NODE_NAME`.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # for tests.creds

from tests import creds
from tollway.proxy import subscriber
from tollway.snapshot import codec, types


class ListenOnly:
    def __init__(self) -> None:
        self.version: str | None = None
        self.servers: dict[int, asyncio.Server] = {}

    async def apply(self, config: types.ProxyConfig) -> None:
        for listener in config.listeners:
            if listener.port not in self.servers:
                try:
                    self.servers[listener.port] = await asyncio.start_server(
                        _close, "127.0.0.1", listener.port)
                except OSError as exc:  # as ProxyServer does: a refusal, the reason as NACK
                    raise codec.SnapshotError(
                        f"cannot listen on 127.0.0.1:{listener.port}: {exc}") from exc
        self.version = config.version


async def _close(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.close()


async def main(url: str, name: str) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    node = types.Node(name=name)
    task = asyncio.create_task(subscriber.follow(
        ListenOnly(), url, node, admin="", inbound=None, token=creds.for_node(node)))
    await stop.wait()
    task.cancel()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
