"""Upstream HTTP/2: per endpoint a few connections, many streams each (Envoy's h2 pool).

A cluster whose `protocol` is "http2" (control/protocol.py: HTTP2/GRPC ports,
`h2UpgradePolicy: UPGRADE`) gets an `H2EndpointPool` per endpoint instead of the HTTP/1.1
pool. The lease accounting is unchanged (upstream/lease.py): what a lease carries its
request on (`Channel`) is an `H2Channel`, one stream on a shared `H2Upstream`
connection, with the same `send / write / set_reading / detach` calls and the same sink
events (`on_response_head / body / end`, `on_upstream_lost`), plus the response trailers.

The pool's `idle` is a view that is true while some connection has a free stream and
pops a new channel on it, so `LiveCluster.acquire` hands out streams exactly as it hands
out idle connections. A connection's free streams are the server's
SETTINGS_MAX_CONCURRENT_STREAMS capped by the DestinationRule's `maxConcurrentStreams`,
and none once it carried `maxRequestsPerConnection` streams (it then drains and closes).
`http2MaxRequests` is the cluster's request limit, checked by `acquire` as for HTTP/1.1.
A connection slot (`tcp.maxConnections`) is taken per connection, not per stream.

Flow control: request bytes wait for the server's window in the channel (above 64 KiB the
client stops being read); response DATA is acknowledged only while the downstream takes
it (`set_reading(False)` holds the window shut).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING, Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from tollway.proxy.h2 import framing
from tollway.proxy.h2.hpack_fast import CachingDecoder, StaticEncoder
from tollway.proxy.upstream import connect
from tollway.proxy.upstream.pool import EndpointPool

if TYPE_CHECKING:
    from tollway.proxy.upstream.cluster import LiveCluster

log = logging.getLogger("tollway.proxy.h2")

_CONFIG = h2.config.H2Configuration(
    client_side=True, header_encoding=None, validate_inbound_headers=True,
    normalize_inbound_headers=True, validate_outbound_headers=False,
    normalize_outbound_headers=False,
)
_E = h2.events
_CANCEL = h2.errors.ErrorCodes.CANCEL
WINDOW = 1024 * 1024
OUT_HIGH = 64 * 1024
_CONNECTING_STREAMS = 100  # streams queued on a connection still being opened


class H2Upstream(asyncio.Protocol):
    """One HTTP/2 connection to an endpoint; its streams are `H2Channel`s."""

    def __init__(self, pool: H2EndpointPool) -> None:
        self.pool = pool
        self.transport: Any = None
        self.alive = True
        self.streams: dict[int, H2Channel] = {}
        self.started = 0  # streams ever opened (maxRequestsPerConnection)
        self.queued: list[Any] = []  # waiters for a stream while connecting
        self.scheme = b"https" if pool.ssl_context is not None else b"http"
        conn = h2.connection.H2Connection(config=_CONFIG)
        conn.local_settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW,
        })
        # HPACK as the downstream server does it (h2/hpack_fast.py): requests carry fields
        # unique to each (x-request-id, traceparent) that stock hpack would index and
        # Huffman-code only to evict them; an app's response heads and gRPC trailers
        # repeat, indexed, and are answered from the decoder's cache. (Stock hpack was a
        # fifth of a gRPC call's cost in the client sidecar: bench/grpc_mesh.py.)
        conn.encoder = StaticEncoder()  # type: ignore[assignment]
        conn.decoder = CachingDecoder()  # type: ignore[assignment]
        self.conn = conn

    # ------------------------------------------------------------ capacity
    def free_streams(self) -> int:
        if not self.alive or self.transport is None:
            return 0
        pool = self.pool
        if pool.max_requests and self.started >= pool.max_requests:
            return 0
        limit = self.conn.remote_settings.max_concurrent_streams
        cap = pool.cluster.spec.connection_pool.max_concurrent_streams
        if cap:
            limit = min(limit, cap)
        return limit - len(self.streams)

    def channel(self) -> H2Channel:
        return H2Channel(self)

    # ------------------------------------------------------------ asyncio
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(WINDOW * 4)
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        self.transport = None
        streams = list(self.streams.values())
        self.streams.clear()
        for ch in streams:
            ch.lost()
        self.pool.lost(self)  # type: ignore[arg-type]

    def pause_writing(self) -> None:
        for ch in list(self.streams.values()):
            if ch.sink is not None:
                ch.sink.on_upstream_pause(True)

    def resume_writing(self) -> None:
        for ch in list(self.streams.values()):
            if ch.sink is not None and not ch.blocked:
                ch.sink.on_upstream_pause(False)

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            if (self.conn.state_machine.state is h2.connection.ConnectionState.CLOSED
                    and "ConnectionState.CLOSED" in str(exc)):  # a frame after its GOAWAY
                self.conn.data_to_send()  # (h2's own GOAWAY for it: not worth sending)
            else:
                log.info("upstream %s:%d broke HTTP/2: %s", self.pool.address, self.pool.port,
                         exc)
            self.close()
            return
        touched: list[Any] = []
        ev: Any
        for ev in events:
            kind = type(ev)
            ch = self.streams.get(getattr(ev, "stream_id", 0) or 0)
            if kind is _E.ResponseReceived and ch is not None:
                ch.head(ev.headers)
            elif kind is _E.DataReceived:
                if ch is not None:
                    ch.body(ev.data, ev.flow_controlled_length)
                elif ev.flow_controlled_length:
                    self.conn.increment_flow_control_window(ev.flow_controlled_length)
            elif kind is _E.TrailersReceived and ch is not None:
                ch.trailers(ev.headers)
            elif kind is _E.StreamEnded and ch is not None:
                ch.ended()
            elif kind is _E.StreamReset and ch is not None:
                ch.lost()
            elif kind is _E.WindowUpdated:
                targets = [ch] if ch is not None else list(self.streams.values())
                for t in targets:
                    t.pump()
            elif kind is _E.ConnectionTerminated:
                self.alive = False  # no new streams; those at or below last_stream_id go on
                last = ev.last_stream_id or 0
                for sid in [s for s in self.streams if s > last]:
                    self.streams[sid].lost()
                if not ev.error_code and self.streams:  # h2 closes its state on any GOAWAY
                    self.conn.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
            if ch is not None and ch.sink is not None:
                touched.append(ch.sink)
        self.flush()
        for sink in touched:
            if sink.out:
                sink.flush()
        if not self.alive and not self.streams:
            self.close()

    # ------------------------------------------------------------ output
    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)

    def stream_done(self, ch: H2Channel) -> None:
        """A stream ended (either way): its place may go to a waiting request."""
        if self.streams.pop(ch.sid, None) is None:
            return
        pool = self.pool
        if not self.alive or (pool.max_requests and self.started >= pool.max_requests):
            if not self.streams:
                self.close()
            return
        waiters = pool.cluster.waiters
        if waiters and self.free_streams() > 0:
            pool.cluster.hand_to_waiter(self.channel())

    def close(self) -> None:
        self.alive = False
        tr = self.transport
        if tr is not None:
            try:
                self.conn.close_connection()
                self.flush()
            except h2.exceptions.ProtocolError:
                pass
            tr.close()


class H2Channel:
    """One request's stream on an `H2Upstream` (the lease's `conn`)."""

    __slots__ = (
        "blocked", "chunks", "conn", "ended_local", "left", "mode", "out", "paused",
        "pool", "received", "requests", "reused", "sid", "sink", "transport", "unacked",
    )

    def __init__(self, conn: H2Upstream) -> None:
        self.conn = conn
        self.pool = conn.pool
        self.transport = conn.transport
        self.sid = 0
        self.sink: Any = None
        self.received = False
        self.reused = True
        self.requests = 0
        self.mode = framing.NONE
        self.left = 0
        self.chunks: framing.Dechunker | None = None
        self.out = bytearray()  # request bytes waiting for the server's window
        self.ended_local = False
        self.blocked = False
        self.paused = False
        self.unacked = 0

    @property
    def alive(self) -> bool:
        return self.conn.alive and self.conn.transport is not None

    # ------------------------------------------------------------ request side (Channel)
    def send(self, sink: Any, data: bytes, head_request: bool) -> None:
        conn = self.conn
        end = data.find(b"\r\n\r\n")
        fields, self.mode, self.left = framing.request_fields(data[:end], conn.scheme)
        self.sink = sink
        self.requests = 1
        h2c = conn.conn
        self.sid = h2c.get_next_available_stream_id()
        conn.streams[self.sid] = self
        conn.started += 1
        if self.mode == framing.CHUNKED:
            self.chunks = framing.Dechunker()
        try:
            h2c.send_headers(self.sid, fields, end_stream=self.mode == framing.NONE)
        except h2.exceptions.ProtocolError:
            conn.flush()
            self.lost()
            return
        self.ended_local = self.mode == framing.NONE
        rest = data[end + 4:]
        if rest:
            self.write(rest)
        else:
            conn.flush()

    def write(self, data: bytes) -> None:
        if self.ended_local or self.sink is None:
            return
        if self.chunks is not None:
            pieces, done = self.chunks.feed(data)
            for p in pieces:
                self.out += p
            if done:
                self.left = -1  # END_STREAM once out is sent
        else:
            piece = data[: self.left]
            self.out += piece
            self.left -= len(piece)
            if not self.left:
                self.left = -1
        self.pump()

    def pump(self) -> None:
        if self.ended_local or self.sink is None:
            return
        h2c = self.conn.conn
        out = self.out
        try:
            while out:
                room = min(h2c.local_flow_control_window(self.sid), h2c.max_outbound_frame_size)
                if room <= 0:
                    break
                h2c.send_data(self.sid, bytes(out[:room]))
                del out[:room]
            if not out and self.left == -1:
                h2c.end_stream(self.sid)
                self.ended_local = True
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            self.out.clear()
            self.ended_local = True
        self.conn.flush()
        blocked = len(out) > OUT_HIGH
        if blocked != self.blocked and self.sink is not None:
            self.blocked = blocked
            self.sink.on_upstream_pause(blocked)

    def set_reading(self, on: bool) -> None:
        """Backpressure from the downstream: hold (or hand back) this stream's window."""
        self.paused = not on
        if on and self.unacked:
            n, self.unacked = self.unacked, 0
            self._ack(n)
            self.conn.flush()

    def detach(self) -> None:
        """The request is abandoned: cancel the stream (the connection stays)."""
        self.sink = None
        if self.sid and self.sid in self.conn.streams:
            try:
                self.conn.conn.reset_stream(self.sid, _CANCEL)
            except h2.exceptions.ProtocolError:
                pass
            self.conn.flush()
            self.conn.stream_done(self)

    def close(self) -> None:
        """(The Channel protocol's close: for a stream, `detach`. A method, not `close =
        detach`: compiled, a class-body alias is read as an attribute default, looked up
        in the module's globals at every construction, and left a KeyError pending.)"""
        self.detach()

    # ------------------------------------------------------------ response side
    def head(self, fields: list[tuple[bytes, bytes]]) -> None:
        self.received = True
        status, block = framing.response_block(fields)
        if self.sink is not None:
            self.sink.on_response_head(self, status, block, [])

    def body(self, data: bytes, flow: int) -> None:
        self.received = True
        if self.sink is not None and data:
            self.sink.on_response_body(data)
        if self.paused:
            self.unacked += flow
        else:
            self._ack(flow)

    def trailers(self, fields: list[tuple[bytes, bytes]]) -> None:
        sink = self.sink
        if sink is not None:
            sink.on_response_trailers(fields)

    def ended(self) -> None:
        sink, self.sink = self.sink, None
        self.conn.stream_done(self)
        if sink is not None:
            sink.on_response_end(self)

    def lost(self) -> None:
        sink, self.sink = self.sink, None
        self.conn.stream_done(self)
        if sink is not None:
            sink.on_upstream_lost(self, self.received)

    def _ack(self, n: int) -> None:
        if n:
            try:
                self.conn.conn.acknowledge_received_data(n, self.sid)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                pass


class _Streams:
    """The pool's `idle` for HTTP/2: true while a connection has a free stream; `pop`
    opens a channel on it (what `LiveCluster.acquire` takes as an idle connection)."""

    __slots__ = ("pool",)

    def __init__(self, pool: H2EndpointPool) -> None:
        self.pool = pool

    def _best(self) -> H2Upstream | None:
        best = None
        room = 0
        for c in self.pool.conns:
            free = c.free_streams()
            if free > room:
                best, room = c, free
        return best

    def __bool__(self) -> bool:
        return self._best() is not None

    def __len__(self) -> int:
        return sum(1 for c in self.pool.conns if c.free_streams() > 0)

    def pop(self) -> H2Channel:
        best = self._best()
        assert best is not None
        return best.channel()

    def remove(self, conn: Any) -> None:
        raise ValueError  # channels are never kept here

    def clear(self) -> None:
        pass


class H2EndpointPool(EndpointPool):
    """HTTP/2 connections to one endpoint (see module doc)."""

    def __init__(self, cluster: LiveCluster, index: int, address: str, port: int, *,
                 loop: asyncio.AbstractEventLoop, ssl_context: ssl.SSLContext | None,
                 server_hostname: str | None, connect_timeout: float, max_requests: int,
                 max_idle: int = 256) -> None:
        # named one by one: compiled, a **kw forwarded to the compiled base's keyword-only
        # parameters arrives as one dict in the first of them
        super().__init__(cluster, index, address, port, loop=loop, ssl_context=ssl_context,
                         server_hostname=server_hostname, connect_timeout=connect_timeout,
                         max_requests=max_requests, max_idle=max_idle)
        self.conns: list[H2Upstream] = []
        self.idle = _Streams(self)  # type: ignore[assignment]

    def connect(self, waiter: Any) -> None:
        """A stream for `waiter`: on a connection still being opened when it has room
        (the connection slot the caller took goes back), else on a new connection."""
        for c in self.conns:
            if c.transport is None and c.alive and len(c.queued) < _CONNECTING_STREAMS:
                c.queued.append(waiter)
                self.cluster.limits.close_connection()
                return
        conn = H2Upstream(self)
        conn.queued.append(waiter)
        self.conns.append(conn)
        self.connecting += 1
        self.loop.create_task(self._connect_h2(conn))

    async def _connect_h2(self, conn: H2Upstream) -> None:
        try:
            await connect.open_connection(
                self.loop, lambda: conn, self.address, self.port,
                ssl_context=self.ssl_context, server_hostname=self.server_hostname,
                timeout=self.connect_timeout)
        except (TimeoutError, OSError, ssl.SSLError) as exc:
            self.connecting -= 1
            conn.alive = False
            if conn in self.conns:
                self.conns.remove(conn)
            self.cluster.connection_closed()
            reason = connect.describe(exc)
            for waiter in conn.queued:
                waiter.on_connect_failed(reason)
            conn.queued.clear()
            return
        self.connecting -= 1
        self.created += 1
        self.open.add(conn)  # type: ignore[arg-type]
        queued, conn.queued = conn.queued, []
        for waiter in queued:
            ch = conn.channel() if conn.free_streams() > 0 else None
            if ch is None:  # the server allows fewer streams: the rest wait their turn
                self.cluster.waiters.appendleft(waiter)
                continue
            waiter.on_connected(ch)

    def release(self, conn: Any) -> None:
        """(HTTP/1.1's hook: streams end through H2Upstream.stream_done.)"""

    def lost(self, conn: Any) -> None:
        if conn in self.conns:
            self.conns.remove(conn)
        if conn in self.open:
            self.open.discard(conn)
            self.cluster.connection_closed()

    def retire(self) -> None:
        """The cluster left the config: a connection without streams closes now, one
        with streams takes no new ones and closes after its last (`stream_done`)."""
        for conn in list(self.conns):
            conn.alive = False
            if not conn.streams:
                conn.close()
        if self.pipe is not None:
            self.pipe.retire()

    def close_all(self) -> None:
        for conn in list(self.conns):
            conn.close()

    def statistics(self) -> dict[str, int]:
        stats = super().statistics()
        stats["rq_active_streams"] = sum(len(c.streams) for c in self.conns)
        return stats
