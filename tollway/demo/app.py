"""The demo app every example runs: answers JSON naming its version.

Listens on $PORT (host $HOST, default 127.0.0.1, or 0.0.0.0 inside a Kubernetes pod).
Behaviour from env vars, so a manifest can make one version faulty:
  VERSION        reported version (default "v1")
  SERVICE        reported service name (default: $HOSTNAME-like "demo")
  ERROR_RATE     fraction of requests answered with ERROR_STATUS (default 0)
  ERROR_STATUS   status for injected errors (default 500)
  DELAY_MS       added latency per request (default 0)
  DELAY_JITTER_MS  uniform extra latency 0..N ms (default 0)
Per request, the path can ask for a behaviour too (for tests):
  /status/NNN    answer with status NNN
  /delay/MS      sleep MS milliseconds first
  /__demo/stats  counts of requests seen, by Host header
Every answer echoes method, path, host and request headers, so tests see what the mesh sent.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections import Counter

from aiohttp import web


def build_app(
    version: str,
    service: str,
    error_rate: float,
    error_status: int,
    delay_ms: float,
    jitter_ms: float,
    rng: random.Random | None = None,
) -> web.Application:
    rng = rng or random.Random()
    seen: Counter[str] = Counter()
    total = {"n": 0}

    async def handle(request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == "/__demo/stats":
            return web.json_response({"total": total["n"], "by_host": dict(seen)})
        total["n"] += 1
        seen[request.headers.get("Host", "")] += 1
        body = await request.read()
        status = 200
        parts = path.strip("/").split("/")
        if len(parts) >= 2 and parts[0] == "delay" and parts[1].isdigit():
            await asyncio.sleep(int(parts[1]) / 1000)
        if len(parts) >= 2 and parts[0] == "status" and parts[1].isdigit():
            status = int(parts[1])
        delay = delay_ms + (rng.random() * jitter_ms if jitter_ms else 0.0)
        if delay:
            await asyncio.sleep(delay / 1000)
        if status == 200 and error_rate and rng.random() < error_rate:
            status = error_status
        payload = {
            "service": service,
            "version": version,
            "method": request.method,
            "path": request.path_qs,
            "host": request.headers.get("Host", ""),
            "headers": dict(request.headers),
            "body_bytes": len(body),
            "pid": os.getpid(),
            "port": request.transport.get_extra_info("sockname")[1] if request.transport else 0,
        }
        return web.Response(
            status=status,
            text=json.dumps(payload),
            content_type="application/json",
            headers={"x-demo-version": version},
        )

    app = web.Application(client_max_size=1 << 30)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def run() -> None:
    """Run from the environment (what `tollway up` starts for each replica)."""
    port = int(os.environ.get("PORT", "8080"))
    # In a Kubernetes pod (the dev cluster's node agent) the pod IP is the only way in; locally
    # the sidecar dials loopback, and nothing else should reach a demo app.
    in_pod = "KUBERNETES_SERVICE_HOST" in os.environ
    host = os.environ.get("HOST") or ("0.0.0.0" if in_pod else "127.0.0.1")
    app = build_app(
        version=os.environ.get("VERSION", "v1"),
        service=os.environ.get("SERVICE", "demo"),
        error_rate=float(os.environ.get("ERROR_RATE", "0") or 0),
        error_status=int(os.environ.get("ERROR_STATUS", "500") or 500),
        delay_ms=float(os.environ.get("DELAY_MS", "0") or 0),
        jitter_ms=float(os.environ.get("DELAY_JITTER_MS", "0") or 0),
    )
    web.run_app(app, host=host, port=port, print=None, access_log=None, handle_signals=True)


if __name__ == "__main__":
    run()
