"""The sidecar's status port (15020): its own readiness and the app's rewritten probes.

In a pod, the capture rules would send the kubelet's probes of the app through the
sidecar's inbound listener (and under STRICT mTLS refuse them: the kubelet has no mesh
certificate). So, as Istio's injector does, probes are rewritten to this port, path
`/app-health/<container>/livez|readyz|startupz`, and the original probes are handed to
the sidecar in the environment variable ISTIO_KUBE_APP_PROBERS (JSON, Istio's shape:
path -> {"httpGet": {"path", "port", "scheme", "httpHeaders"}, "timeoutSeconds"}).
The sidecar answers each by probing the app on the pod's loopback (its own traffic is
exempt from capture) and passing the verdict on: the app's 2xx/3xx as 200, anything else
as that status, no answer as 503. The status port is excluded from capture.

`parse_probers` is pure; `StatusServer` is a small asyncio server (nothing here is on
the data path).
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

ENV = "ISTIO_KUBE_APP_PROBERS"
PREFIX = "/app-health/"
READY_PATH = "/healthz/ready"
METRICS_PATH = "/stats/prometheus"
Rendered = tuple[int, str, bytes]  # status, content type, body


class ProberError(ValueError):
    """ISTIO_KUBE_APP_PROBERS cannot be read; the message says which entry."""


@dataclass(frozen=True)
class Prober:
    """One original httpGet probe of the app."""

    port: int
    path: str = "/"
    scheme: str = "HTTP"
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float = 1.0


def parse_probers(text: str | None) -> dict[str, Prober]:
    """The env var's JSON -> probers by status-port path (empty or unset: none)."""
    if not text or not text.strip():
        return {}
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ProberError(f"{ENV} is not JSON: {exc}") from None
    if not isinstance(raw, Mapping):
        raise ProberError(f"{ENV} must be an object of path: probe")
    out: dict[str, Prober] = {}
    for path, spec in raw.items():
        if not str(path).startswith(PREFIX):
            raise ProberError(f"{ENV}: {path!r} does not start with {PREFIX}")
        get = spec.get("httpGet") if isinstance(spec, Mapping) else None
        if not isinstance(get, Mapping):
            raise ProberError(f"{ENV}: {path}: only httpGet probes are rewritten")
        port = get.get("port")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ProberError(f"{ENV}: {path}: httpGet.port must be a port number, got {port!r}")
        scheme = str(get.get("scheme") or "HTTP").upper()
        if scheme not in ("HTTP", "HTTPS"):
            raise ProberError(f"{ENV}: {path}: httpGet.scheme must be HTTP or HTTPS")
        headers = tuple((str(h.get("name")), str(h.get("value", "")))
                        for h in get.get("httpHeaders") or [] if isinstance(h, Mapping)
                        and h.get("name"))
        timeout = spec.get("timeoutSeconds") or 1
        out[str(path)] = Prober(port=port, path=str(get.get("path") or "/"), scheme=scheme,
                                headers=headers, timeout=float(timeout))
    return out


def verdict(status: int | None) -> int:
    """The status-port answer for the app's answer (None: it did not answer)."""
    if status is None:
        return 503
    return 200 if 200 <= status < 400 else status


def request_bytes(prober: Prober) -> bytes:
    names = {k.lower() for k, _ in prober.headers}
    lines = [f"GET {prober.path if prober.path.startswith('/') else '/' + prober.path} HTTP/1.1"]
    if "host" not in names:
        lines.append(f"Host: 127.0.0.1:{prober.port}")
    lines += [f"{k}: {v}" for k, v in prober.headers]
    if "user-agent" not in names:
        lines.append("User-Agent: kube-probe/tollway")
    lines += ["Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")


async def probe(prober: Prober, host: str = "127.0.0.1") -> int | None:
    """The app's status code for this probe, or None (refused, timed out, not HTTP)."""
    ctx = None
    if prober.scheme == "HTTPS":  # as the kubelet: the app's certificate is not checked
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    try:
        async with asyncio.timeout(prober.timeout):
            reader, writer = await asyncio.open_connection(host, prober.port, ssl=ctx)
            try:
                writer.write(request_bytes(prober))
                await writer.drain()
                line = await reader.readline()
            finally:
                writer.close()
    except (OSError, TimeoutError, ssl.SSLError, asyncio.IncompleteReadError):
        return None
    parts = line.split()
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return None
    return int(parts[1])


class StatusServer:
    """Serves /healthz/ready (the sidecar has a snapshot), /app-health/... probes and, as
    Istio's 15020 does, /stats/prometheus (the sidecar's metrics, which the pod's
    `prometheus.io/*` annotations point Prometheus at; the admin port stays on loopback)."""

    def __init__(self, ready: Callable[[], bool], probers: Mapping[str, Prober],
                 app_host: str = "127.0.0.1",
                 metrics: Callable[[], Rendered] | None = None) -> None:
        self.ready = ready
        self.probers = dict(probers)
        self.app_host = app_host
        self.metrics = metrics
        self.server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                             socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(64)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.server = await asyncio.start_server(self._client, sock=sock)
        addr = sock.getsockname()
        return str(addr[0]), int(addr[1])

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    async def answer(self, path: str) -> int:
        if path == READY_PATH:
            return 200 if self.ready() else 503
        prober = self.probers.get(path)
        if prober is None:
            return 404
        return verdict(await probe(prober, self.app_host))

    async def render(self, path: str) -> Rendered:
        if path == METRICS_PATH and self.metrics is not None:
            return self.metrics()
        status = await self.answer(path)
        return status, "text/plain", b"ok\n" if status == 200 else b"not ok\n"

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            words = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            path = words[1].split("?", 1)[0] if len(words) >= 2 else ""
            status, ctype, body = await self.render(path)
            writer.write(b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n"
                         b"connection: close\r\n\r\n%s"
                         % (status, b"OK" if status == 200 else b"Error", ctype.encode(),
                            len(body), body))
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError):
            pass
        finally:
            writer.close()


def probers_from_env(env: Mapping[str, Any]) -> dict[str, Prober]:
    return parse_probers(env.get(ENV))
