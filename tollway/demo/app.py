"""The demo app every example runs: answers JSON naming its version.

Listens on $PORT (host $HOST, default 127.0.0.1, or 0.0.0.0 inside a Kubernetes pod).
Behaviour from env vars, so a manifest can make one version faulty:
  VERSION        reported version (default "v1")
  SERVICE        reported service name (default: $HOSTNAME-like "demo")
  ERROR_RATE     fraction of requests answered with ERROR_STATUS (default 0)
  ERROR_STATUS   status for injected errors (default 500)
  DELAY_MS       added latency per request (default 0)
  DELAY_JITTER_MS  uniform extra latency 0..N ms (default 0)
  UPSTREAM_URL   call this service first for every request (UPSTREAM_URL + the request's
                 path, through $HTTP_PROXY: the sidecar), forwarding the trace headers as an
                 app in an Istio mesh must, and answer with its status: a two-tier app whose
                 requests make one trace (gateway -> frontend -> backend)
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
from typing import Any

import aiohttp
from aiohttp import web

# What Istio asks apps to forward so a request's spans join one trace.
TRACE_HEADERS = ("x-request-id", "traceparent", "tracestate", "x-b3-traceid", "x-b3-spanid",
                 "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags", "b3")


def build_app(
    version: str,
    service: str,
    error_rate: float,
    error_status: int,
    delay_ms: float,
    jitter_ms: float,
    rng: random.Random | None = None,
    upstream_url: str = "",
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
        called: dict[str, Any] | None = None
        if upstream_url:
            called = await _call(request, upstream_url.rstrip("/") + request.path_qs)
            status = int(called["status"])
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
        if called is not None:
            payload["upstream"] = called
        return web.Response(
            status=status,
            text=json.dumps(payload),
            content_type="application/json",
            headers={"x-demo-version": version},
        )

    app = web.Application(client_max_size=1 << 30)
    app.router.add_route("*", "/{tail:.*}", handle)
    if upstream_url:
        async def session(app: web.Application) -> Any:
            app["client"] = aiohttp.ClientSession(trust_env=True)  # $HTTP_PROXY: the sidecar
            yield
            await app["client"].close()

        app.cleanup_ctx.append(session)
    return app


async def _call(request: web.Request, url: str) -> dict[str, Any]:
    """GET `url` with the request's trace headers; its status and JSON (or error)."""
    headers = {h: v for h in TRACE_HEADERS if (v := request.headers.get(h)) is not None}
    client: aiohttp.ClientSession = request.app["client"]
    try:
        async with client.get(url, headers=headers,
                              timeout=aiohttp.ClientTimeout(total=30)) as resp:
            text = await resp.text()
            try:
                body: Any = json.loads(text)
            except ValueError:
                body = text[:200]
            return {"url": url, "status": resp.status, "body": body}
    except (aiohttp.ClientError, TimeoutError) as exc:
        return {"url": url, "status": 502, "error": str(exc) or type(exc).__name__}


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
        upstream_url=os.environ.get("UPSTREAM_URL", ""),
    )
    web.run_app(app, host=host, port=port, print=None, access_log=None, handle_signals=True)


if __name__ == "__main__":
    run()
