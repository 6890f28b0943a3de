"""Run one or more sidecars that follow the control plane, in one process.

`python -m tollway.control.local.sidecar --control-plane URL NODE_JSON [NODE_JSON ...]`
where each NODE_JSON is `{"node": Node, "admin_port": N, "token_file": PATH}` (and
`"admin_host"` when not 127.0.0.1: a replica's netns under `--intercept`); the token
file (0600, written by `tollway up`) holds the node's workload credential. Used by `tollway up` (one
node per process) and by bench/push_latency.py (many nodes per process, which keeps a
100-proxy benchmark within the memory of a small machine).

Each sidecar first gets its workload certificate from the control plane's CA
(`tls.obtain`: key here, CSR there, renewed at half the lifetime), as Istio's agent does
before Envoy serves; a control plane without a CA (404) leaves it without mTLS.
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

from tollway.proxy import credential, subscriber, tls
from tollway.proxy import main as proxy_main
from tollway.snapshot import types


async def start_one(url: str, spec: dict[str, Any]
                    ) -> tuple[proxy_main.ProxyServer, list[asyncio.Task[Any]]]:
    """One sidecar: its workload certificate first, then the proxy, then the subscription.

    The certificate comes before the first snapshot, so the proxy never serves (or calls
    out) in plaintext where its config says ISTIO_MUTUAL; the rotator renews it at half
    its lifetime into the same TLS contexts.
    """
    node = msgspec.convert(spec["node"], types.Node)
    token = credential.from_file(spec["token_file"]) if spec.get("token_file") else None
    got = await tls.obtain(url, node, token=token)
    state, rotator = got if got is not None else (None, None)
    admin_host = str(spec.get("admin_host") or "127.0.0.1")
    server = proxy_main.ProxyServer(None, admin_host=admin_host,
                                    admin_port=int(spec.get("admin_port", 0)),
                                    serve_admin=bool(spec.get("admin_port", 0)),
                                    tls_state=state)
    await server.start()
    admin = f"{admin_host}:{server.admin_address[1]}" if server.admin_address[1] else ""
    tasks = [asyncio.create_task(subscriber.follow(server, url, node, admin=admin,
                                                   inbound=None, token=token))]
    if rotator is not None:
        tasks.append(asyncio.create_task(rotator.run()))
    return server, tasks


async def run(url: str, specs: list[dict[str, Any]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    starting = asyncio.ensure_future(asyncio.gather(*(start_one(url, s) for s in specs)))
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait([starting, stopping], return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():  # stopped while still waiting for certificates
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        return
    started = starting.result()
    await stopping
    for _server, tasks in started:
        for task in tasks:
            task.cancel()
    for server, _tasks in started:
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
