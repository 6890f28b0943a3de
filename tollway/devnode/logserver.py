"""The kubelet's `/containerLogs/<ns>/<pod>/<container>` over HTTPS, so `kubectl logs` works.

kube-apiserver proxies `kubectl logs` here (node InternalIP : daemonEndpoints port) presenting
its `--kubelet-client-certificate`; we require a client certificate signed by the cluster CA
(fail closed: without TLS files the endpoint is not served at all). Files are the ones the
runtime writes: `<state-dir>/pods/<ns>_<pod>_<uid>/<container>/<restartCount>.log`.
Supported query parameters: previous, tailLines, limitBytes, follow. Exec/attach/port-forward
answer 501.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

PodDirLookup = Callable[[str, str], Path | None]


def log_files(container_dir: Path) -> list[Path]:
    files = [p for p in container_dir.glob("*.log") if p.stem.isdigit()]
    return sorted(files, key=lambda p: int(p.stem))


def tail(data: bytes, lines: int) -> bytes:
    if lines < 0:
        return data
    if lines == 0:
        return b""
    parts = data.splitlines(keepends=True)
    return b"".join(parts[-lines:])


def make_app(lookup: PodDirLookup) -> web.Application:
    async def container_logs(request: web.Request) -> web.StreamResponse:
        ns, pod, ctr = (request.match_info[k] for k in ("ns", "pod", "container"))
        pod_dir = lookup(ns, pod)
        if pod_dir is None:
            raise web.HTTPNotFound(text=f"pod {ns}/{pod} is not on this node\n")
        files = log_files(pod_dir / ctr)
        previous = request.query.get("previous", "false") == "true"
        want = (
            files[-2]
            if previous and len(files) > 1
            else (files[-1] if files and not previous else None)
        )
        if want is None:
            what = "previous terminated" if previous else "a"
            raise web.HTTPBadRequest(text=f"container {ctr!r} in pod {pod} has no {what} log\n")
        data = want.read_bytes()
        data = tail(data, int(request.query.get("tailLines", "-1")))
        limit = int(request.query.get("limitBytes", "0") or 0)
        if limit > 0:
            data = data[:limit]
        follow = request.query.get("follow", "false") == "true" and not previous
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        await resp.write(data)
        if follow:
            await _follow(request, resp, want, want.stat().st_size, pod_dir / ctr)
        await resp.write_eof()
        return resp

    async def unsupported(request: web.Request) -> web.Response:
        return web.Response(status=501, text="devnode serves containerLogs only\n")

    app = web.Application()
    app.router.add_get("/containerLogs/{ns}/{pod}/{container}", container_logs)
    app.router.add_get("/healthz", lambda r: _ok())
    for prefix in ("exec", "attach", "portForward", "run"):
        app.router.add_route("*", f"/{prefix}/{{tail:.*}}", unsupported)
    return app


async def _ok() -> web.Response:
    return web.Response(text="ok")


async def _follow(
    request: web.Request, resp: web.StreamResponse, path: Path, offset: int, container_dir: Path
) -> None:
    """Stream appended bytes until a newer run's log appears (the container restarted) or the
    client goes away (checked each poll, so a dropped `kubectl logs -f` never pins a handler)."""
    while request.transport is not None and not request.transport.is_closing():
        size = path.stat().st_size if path.exists() else offset
        if size > offset:
            with open(path, "rb") as f:
                f.seek(offset)
                chunk = f.read(size - offset)
            offset = size
            await resp.write(chunk)
            continue
        newest = log_files(container_dir)
        if newest and newest[-1] != path:
            return
        await asyncio.sleep(0.3)


def server_ssl(cert: Path, key: Path, client_ca: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(client_ca))
    ctx.load_cert_chain(str(cert), str(key))
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


async def serve(
    lookup: PodDirLookup, host: str, port: int, ctx: ssl.SSLContext
) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(make_app(lookup), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ctx)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    real = sockets[0].getsockname()[1] if sockets else port
    return runner, int(real)
