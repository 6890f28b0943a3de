"""The admin port: /ready, /stats/prometheus, /config_dump, /clusters (Envoy's names).

Low volume, so it is a plain asyncio stream server; nothing here is on the data path. The
metrics are rendered at scrape time from the hot path's plain counters by
telemetry.IstioCollector in a registry private to this proxy.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from typing import Any

from tollway.proxy.chain.telemetry import IstioCollector

Handler = Callable[[], tuple[int, str, bytes]]


class Admin:
    """Serves the admin endpoints for one ProxyServer."""

    def __init__(self, proxy: Any) -> None:
        self.proxy = proxy
        self.registry: Any = None
        self.server: asyncio.base_events.Server | None = None
        self.routes: dict[str, Handler] = {
            "/ready": self._ready,
            "/healthz/ready": self._ready,
            "/stats/prometheus": self.prometheus,
            "/metrics": self.prometheus,
            "/config_dump": self._config_dump,
            "/clusters": self._clusters,
            "/listeners": self._listeners,
        }

    async def start(self, host: str, port: int, reuse_port: bool = False) -> tuple[str, int]:
        sock = _bind_literal(host, port, reuse_port)
        if sock is not None:
            self.server = await asyncio.start_server(self._client, sock=sock)
        else:  # a host name: the loop resolves it (and may bind several addresses)
            self.server = await asyncio.start_server(
                self._client, host, port, reuse_address=True, reuse_port=reuse_port or None
            )
        addr = self.server.sockets[0].getsockname()
        return str(addr[0]), int(addr[1])

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                line = head.split(b"\r\n", 1)[0].decode("latin-1").split()
                if len(line) < 2:
                    break
                path = line[1].split("?", 1)[0]
                handler = self.routes.get(path)
                if handler is None:
                    status, ctype, body = 404, "text/plain", b"not found\n"
                else:
                    try:
                        status, ctype, body = handler()
                    except Exception as exc:  # a view bug must not kill the admin port
                        status, ctype, body = 500, "text/plain", f"{exc!r}\n".encode()
                close = b"connection: close" in head.lower()
                writer.write(
                    b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n%s\r\n"
                    % (
                        status,
                        b"OK" if status == 200 else b"Error",
                        ctype.encode(),
                        len(body),
                        b"connection: close\r\n" if close else b"",
                    )
                    + (body if line[0] != "HEAD" else b"")
                )
                await writer.drain()
                if close:
                    break
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError):
            pass
        finally:
            writer.close()

    # ------------------------------------------------------------ handlers
    def _ready(self) -> tuple[int, str, bytes]:
        if self.proxy.ready:
            return 200, "text/plain", b"LIVE\n"
        return 503, "text/plain", b"NOT READY\n"

    def prometheus(self) -> tuple[int, str, bytes]:
        """Istio's metrics (also served on a pod's status port, where Prometheus scrapes)."""
        from prometheus_client import CollectorRegistry, generate_latest

        if self.registry is None:
            self.registry = CollectorRegistry(auto_describe=False)
            self.registry.register(IstioCollector(self.proxy.metrics, self._extra))
        return 200, "text/plain; version=0.0.4; charset=utf-8", generate_latest(self.registry)

    def _config_dump(self) -> tuple[int, str, bytes]:
        return 200, "application/json", _json(self.proxy.config_dump())

    def _clusters(self) -> tuple[int, str, bytes]:
        return 200, "application/json", _json(self.proxy.clusters_view())

    def _listeners(self) -> tuple[int, str, bytes]:
        return 200, "application/json", _json(self.proxy.listeners_view())

    def _extra(self) -> Any:
        """Proxy-level counters beside Istio's (mirror queue, overflows, ejections, spans,
        access-log lines)."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        m = self.proxy.mirrorer.statistics()
        g = CounterMetricFamily("tollway_mirror_requests", "Mirrored copies by outcome.",
                                labels=["outcome"])
        for key in ("sent", "completed", "failed", "dropped"):
            g.add_metric([key], m[key])
        yield g
        ej = GaugeMetricFamily("tollway_upstream_hosts_ejected", "Ejected hosts per cluster.",
                               labels=["cluster"])
        ov = CounterMetricFamily("tollway_upstream_overflow", "503 UO per cluster.",
                                 labels=["cluster"])
        now = self.proxy.loop_time()
        for view in self.proxy.clusters_view(now)["clusters"]:
            ej.add_metric([view["name"]], sum(1 for h in view["hosts"] if h.get("ejected")))
            ov.add_metric([view["name"]], view["overflows"])
        yield ej
        yield ov
        spans = self.proxy.spans.statistics()
        exported = CounterMetricFamily("tollway_tracing_spans_exported",
                                       "Spans the collector accepted.")
        exported.add_metric([], spans["exported"])
        yield exported
        dropped = CounterMetricFamily(
            "tollway_tracing_spans_dropped",
            "Spans not reported: queue_full (the exporter is behind), export_failed "
            "(the collector is dead, slow or refused the batch).", labels=["reason"])
        for reason, n in spans["dropped"].items():
            dropped.add_metric([reason], n)
        yield dropped
        logs = self.proxy.metrics.logs.statistics()
        lines = CounterMetricFamily(
            "tollway_access_log_dropped",
            "Access-log lines never written: queue_full (the sink is behind) or shutdown "
            "(offered after shutdown began, or the sink was still blocked when shutdown "
            "stopped waiting).", labels=["reason"])
        for reason in ("queue_full", "shutdown"):
            lines.add_metric([reason], logs[reason])
        yield lines
        failed = CounterMetricFamily(
            "tollway_access_log_failed",
            "Access-log lines that could not be rendered or whose write failed.")
        failed.add_metric([], logs["failed"])
        yield failed


def _json(value: Any) -> bytes:
    return json.dumps(value, indent=1, sort_keys=False, default=str).encode() + b"\n"


def _bind_literal(host: str, port: int, reuse_port: bool) -> socket.socket | None:
    """A listening socket for an IP literal, bound here; None for a host name.

    What the loop's getaddrinfo would do for a literal, without it: uvloop encodes the
    host with the idna codec, whose import (unicodedata, stringprep) costs ~0.35 MB of
    RSS in every sidecar."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except (OSError, ValueError):
            continue
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((host, port))
            sock.listen(100)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock
    return None
