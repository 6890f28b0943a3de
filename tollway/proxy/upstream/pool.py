"""Per-endpoint keep-alive pool: idle connections reused LIFO, new ones opened on demand.

The cluster's PoolLimits (core.limits) decides whether a new connection may be opened or
a request may wait; this module only keeps the connections and hands them out. A waiter
is any object with `on_connected(conn)` and `on_connect_failed(reason)`.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING, Any

from mypy_extensions import mypyc_attr

from tollway.proxy.upstream import connect
from tollway.proxy.upstream.connection import UpstreamConnection

if TYPE_CHECKING:
    from tollway.proxy.upstream.cluster import LiveCluster
    from tollway.proxy.upstream.pipeline import PipelinedConnection


# HTTP/2 pools (proxy/h2/client.py, pure Python) subclass it: mypyc must allow that
@mypyc_attr(allow_interpreted_subclasses=True)
class EndpointPool:
    """Connections to one endpoint (address:port) of one cluster."""

    __slots__ = (
        "address",
        "cluster",
        "connect_timeout",
        "connecting",
        "created",
        "idle",
        "index",
        "loop",
        "max_idle",
        "max_requests",
        "open",
        "pipe",
        "port",
        "server_hostname",
        "ssl_context",
    )

    def __init__(
        self,
        cluster: LiveCluster,
        index: int,
        address: str,
        port: int,
        *,
        loop: asyncio.AbstractEventLoop,
        ssl_context: ssl.SSLContext | None,
        server_hostname: str | None,
        connect_timeout: float,
        max_requests: int,
        max_idle: int = 256,
    ) -> None:
        self.cluster = cluster
        self.index = index
        self.address = address
        self.port = port
        self.loop = loop
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname
        self.connect_timeout = connect_timeout
        self.max_requests = max_requests
        self.max_idle = max_idle
        # a list of idle connections; HTTP/2's pool puts a duck-typed stream picker here
        # (h2/client.py _Streams: truthy while a stream is free, pop() opens one)
        self.idle: Any = []
        # every open connection, the mirror's pipelined one included (counted and closed alike)
        self.open: set[UpstreamConnection | PipelinedConnection] = set()
        self.connecting = 0
        self.created = 0
        self.pipe: Any = None  # the pipelined connection for mirrored copies (pipeline.py)

    def take_idle(self) -> Any:
        """An idle UpstreamConnection, or None; on an HTTP/2 pool a stream channel (`Any`:
        the compiled build checks declared types at run time, so the type must not lie)."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            if conn.alive and conn.transport is not None:
                conn.reused = True
                return conn
        return None

    def connect(self, waiter: Any) -> None:
        """Open a new connection for `waiter` (the caller already holds a limits slot)."""
        self.connecting += 1
        self.loop.create_task(self._connect(waiter))

    async def _connect(self, waiter: Any) -> None:
        try:
            _, conn = await connect.open_connection(
                self.loop,
                lambda: UpstreamConnection(self),
                self.address,
                self.port,
                ssl_context=self.ssl_context,
                server_hostname=self.server_hostname,
                timeout=self.connect_timeout,
            )
        except (TimeoutError, OSError, ssl.SSLError) as exc:
            self.connecting -= 1
            self.cluster.connection_closed()
            waiter.on_connect_failed(connect.describe(exc))
            return
        self.connecting -= 1
        self.created += 1
        self.open.add(conn)
        if not waiter.on_connected(conn):
            self.release(conn)

    def release(self, conn: UpstreamConnection) -> None:
        """A response ended: keep the connection for reuse, or close it."""
        if (
            not conn.alive
            or conn.transport is None
            or (self.max_requests and conn.requests >= self.max_requests)
        ):
            conn.close()
            return
        # a cluster that left the config still serves the requests queued on it (else they
        # would wait for their timeout, or for ever without one), then closes what it has
        if self.cluster.waiters and self.cluster.hand_to_waiter(conn):
            return
        if self.cluster.closed:
            conn.close()
            return
        if len(self.idle) < self.max_idle:
            self.idle.append(conn)
        else:
            conn.close()

    def lost(self, conn: UpstreamConnection | PipelinedConnection) -> None:
        """The connection closed (either side): free its limits slot."""
        if conn in self.open:
            self.open.discard(conn)
            if isinstance(conn, UpstreamConnection):  # a pipelined one is never idle here
                try:
                    self.idle.remove(conn)
                except ValueError:
                    pass
            self.cluster.connection_closed()

    def retire(self) -> None:
        """The cluster left the config: close the idle connections now; busy ones close
        when their request ends (`release` sees `cluster.closed`), unless a request queued
        on this cluster takes them first."""
        for conn in self.idle:
            conn.close()
        self.idle.clear()
        if self.pipe is not None:
            self.pipe.retire()

    def close_all(self) -> None:
        for conn in list(self.open):
            conn.close()
        self.idle.clear()

    def statistics(self) -> dict[str, int]:
        return {
            "cx_active": len(self.open),
            "cx_idle": len(self.idle),
            "cx_connecting": self.connecting,
            "cx_total": self.created,
        }
