"""One downstream HTTP/2 connection: `conn.ServerConnection` fed from asyncio, streams to
the chain.

The HTTP/1.1 listener (listener.Downstream) hands a connection over when it is HTTP/2: TLS
whose ALPN chose `h2` / `istio-h2` (read once, in connection_made), the HTTP/2 connection
preface on a plaintext port (noticed on llhttp's error path, so HTTP/1.1 requests pay
nothing), or an accepted `Upgrade: h2c`. `transport.set_protocol` makes this object the
connection's protocol from then on.

Each stream becomes an `Exchange`, the same record the HTTP/1.1 path builds, and runs the
same filters and router; its `H2Stream` is the `down` of the exchange: it implements
chain/downstream.Downstream, the response events the router's Attempt relays. The head
arrives as the upstream's HTTP/1.1 block; the stream renders it with the response header
operations (never chunk-framed: the exchange is marked non-HTTP/1.1) and turns it into
HEADERS, the body into DATA.

Flow control both ways: request DATA is acknowledged (window handed back) only as the
upstream takes it, so a slow upstream stops the client on that stream alone; response
bytes wait for the client's window in a per-stream buffer, and above 64 KiB the stream
stops reading its upstream. Abuse is counted by `guard.Guard` with Envoy's limits; any
protocol error ends this connection with GOAWAY and never another.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from tollway.proxy.chain.stream import Exchange
from tollway.proxy.h2 import conn as h2c
from tollway.proxy.h2 import headers as hh
from tollway.proxy.h2 import wire
from tollway.proxy.h2.grpccall import GrpcCall, for_request
from tollway.proxy.h2.guard import Guard
from tollway.proxy.h2.hpack_fast import CachedBlock, encode_fields
from tollway.proxy.http1 import response

if TYPE_CHECKING:
    from tollway.proxy.chain.build import ListenerPlan
    from tollway.proxy.core.headerops import ResponseOps
    from tollway.proxy.http1.parse import Limits
    from tollway.proxy.listener import ListenerRuntime

log = logging.getLogger("tollway.proxy.h2")

UPGRADE_101 = b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n"

MAX_CONCURRENT_STREAMS = 100
STREAM_WINDOW = 256 * 1024
CONNECTION_WINDOW = 1024 * 1024
OUT_HIGH = 64 * 1024  # response bytes waiting for the client's window: stop the upstream
PREMATURE_LIFETIME = 1.0  # Envoy's premature_reset_min_stream_lifetime_seconds



HEADS_MAX = 256
HEAD_BYTES = 1024
_HEADS: dict[bytes, tuple[int, list[hh.Header], bytes]] = {}


def response_head(block: bytes) -> tuple[int, list[hh.Header], bytes]:
    """`headers.response_fields` of an HTTP/1.1 head and its HPACK block (`encode_fields`),
    remembered by the head's bytes: under load an upstream sends the same head for many
    responses (its date changes once a second), and then the head costs one dict lookup
    instead of a parse and an encoding. Bounded (cleared when full, heads of at most
    HEAD_BYTES); the list is shared: readers never change it."""
    hit = _HEADS.get(block)
    if hit is not None:
        return hit
    status, fields = hh.response_fields(block)
    found = (status, fields, encode_fields(fields))
    if len(block) <= HEAD_BYTES:
        if len(_HEADS) >= HEADS_MAX:
            _HEADS.clear()
        _HEADS[block] = found
    return found


class RelayedHead:
    """An upstream's head as a stream sends it: what `relayed_head` remembers."""

    __slots__ = ("block", "fields", "keep_alive", "length", "mode", "status")

    def __init__(self, status: int, length: int, mode: int, keep_alive: bool,
                 fields: list[hh.Header], block: bytes) -> None:
        self.status = status
        self.length = length  # of the HTTP/1.1 head relay_head made (ex.bytes_out counts it)
        self.mode = mode
        self.keep_alive = keep_alive
        self.fields = fields  # shared: readers never change it
        self.block = block  # its HPACK block (hpack_fast.encode_fields)


_RELAYED: dict[bytes, RelayedHead] = {}


def relayed_head(status: int, block: bytes) -> RelayedHead | None:
    """`response.relay_head`, then `response_head`, of an upstream's head block in the
    common case - no response header operations, not a HEAD request, no upgrade, the
    exchange kept alive (H2Stream.response_head checks) - where both depend on nothing but
    the block: remembered by the upstream's own bytes, one lookup a response instead of
    the head analysed, rebuilt and hashed again (bounded as `response_head`). None when
    the head does not convert: the caller takes the general path, which refuses it."""
    hit = _RELAYED.get(block)
    if hit is not None and hit.status == status:
        return hit
    head, mode, keep_alive = response.relay_head(
        status, block, None, head_request=False, http11=False, keep_alive=True,
        upgrade=False,
    )
    try:
        fields = hh.response_fields(head)[1]
    except hh.HeadError:
        return None
    found = RelayedHead(status, len(head), mode, keep_alive, fields, encode_fields(fields))
    if len(block) <= HEAD_BYTES:
        if len(_RELAYED) >= HEADS_MAX:
            _RELAYED.clear()
        _RELAYED[block] = found
    return found


class H2Server(asyncio.Protocol):
    """A downstream HTTP/2 connection (see module doc)."""

    def __init__(self, runtime: ListenerRuntime, transport: Any, peer: tuple[str, int],
                 principal: str | None, cert_hash: str, tls: bool, orig_dst: str,
                 orig_port: int = 0) -> None:
        self.runtime = runtime
        self.loop = runtime.plan.loop
        self.transport: Any = transport
        self.peer = peer
        self.principal = principal
        self.cert_hash = cert_hash
        # mTLS: the plan in force and its copy labelled with this peer (`peer_view`)
        self.peer_base: ListenerPlan | None = None
        self.peer_plan: ListenerPlan | None = None
        self.tls = tls
        self.orig_dst = orig_dst
        self.orig_port = orig_port
        self.streams: dict[int, H2Stream] = {}
        self.guard = Guard()
        self.closing = False
        self.goaway_last: int | None = None  # graceful GOAWAY sent: streams above refused
        self.write_blocked = False
        self.pending: list[H2Stream] = []  # streams to pump at the end of this loop turn
        self.turn_handle: asyncio.Handle | None = None  # that turn end, when scheduled
        self.idle_since = self.loop.time()
        self.rx = None  # what drain and the sweeper read on every connection
        self.tunnel = None
        # HPACK bombs: a header list decoding past max_head_bytes is refused mid-block
        # (ENHANCE_YOUR_CALM); request header lists are checked in one pass by
        # headers.request_head; request trailers are never forwarded
        self.conn = h2c.ServerConnection(MAX_CONCURRENT_STREAMS, STREAM_WINDOW,
                                         runtime.limits.max_head_bytes)

    def peer_view(self, plan: ListenerPlan) -> ListenerPlan:
        """`plan` as this mTLS peer's streams see it (ListenerPlan.for_peer): looked up
        once per connection and snapshot, never per stream."""
        if plan is not self.peer_base or self.peer_plan is None:
            self.peer_base = plan
            self.peer_plan = plan.for_peer(self.principal or "")
        return self.peer_plan

    # ------------------------------------------------------------ start
    def start(self, initial: bytes) -> None:
        """Prior knowledge / ALPN: send our SETTINGS, then read what already arrived
        (`initial`: the bytes from the preface on, or nothing yet)."""
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self._flush()
        if initial:
            self.data_received(initial)

    def start_upgraded(self, settings: str, fields: list[hh.Header]) -> None:
        """`Upgrade: h2c` accepted: the 101 is written; the request is stream 1."""
        self.transport.write(UPGRADE_101)
        try:
            self.conn.initiate_upgrade_connection(settings.encode("latin-1"))
        except Exception as exc:  # a malformed HTTP2-Settings value
            log.info("h2c upgrade from %s refused: HTTP2-Settings: %s", self.peer[0], exc)
            self.runtime.protocol_errors += 1
            self.conn.initiate_connection()
            self._fail(wire.PROTOCOL_ERROR, "malformed HTTP2-Settings")
            return
        self.conn.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        bad = self._request(1, fields, True, None, self.loop.time())
        if bad is not None:
            self.runtime.protocol_errors += 1
            self._fail(wire.PROTOCOL_ERROR, bad)
            return
        self._flush()

    # ------------------------------------------------------------ asyncio
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # already set by the HTTP/1.1 side; kept for symmetry

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.closing = True
        self.runtime.connections.discard(self)  # type: ignore[arg-type]
        for stream in list(self.streams.values()):
            stream.abandon()
        self.streams.clear()

    def pause_writing(self) -> None:
        self.runtime.write_pauses += 1
        self.write_blocked = True
        for stream in self.streams.values():
            stream.upstream_pause()

    def resume_writing(self) -> None:
        self.write_blocked = False
        self.guard.output_drained()
        for stream in list(self.streams.values()):
            stream.upstream_pause()

    def eof_received(self) -> bool | None:
        return None

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return  # frames after our GOAWAY: never read
        try:
            events = self.conn.receive_data(data)
        except h2c.ProtocolError as exc:  # GOAWAY(code) is queued: written by _fail
            self.runtime.protocol_errors += 1
            log.info("h2 connection from %s closed: %s", self.peer[0], exc)
            self._fail(exc.error_code, str(exc))
            return
        queued = self.transport is not None and self.transport.get_write_buffer_size() > 0
        reason: str | None = None
        guard = self.guard
        now = -1.0  # the clock, read once per read that opens streams (they came together)
        for ev in events:
            if isinstance(ev, h2c.RequestReceived):
                guard.other_frame()
                if now < 0:
                    now = self.loop.time()
                bad = self._request(ev.stream_id, ev.headers, ev.stream_ended is not None,
                                    ev.cached, now)
                if bad is not None:
                    self.runtime.protocol_errors += 1
                    log.info("h2 connection from %s closed: %s", self.peer[0], bad)
                    self._fail(wire.PROTOCOL_ERROR, bad)
                    return
            elif isinstance(ev, h2c.StreamEnded):
                stream = self.streams.get(ev.stream_id)
                if stream is not None:
                    stream.request_ended()
            elif isinstance(ev, h2c.DataReceived):
                reason = guard.data_frame(not ev.data and ev.stream_ended is None)
                self._data(ev)
            elif isinstance(ev, h2c.WindowUpdated):
                guard.other_frame()
                reason = guard.window_update()
                self._window(ev.stream_id)
            elif isinstance(ev, h2c.StreamReset):
                guard.other_frame()
                if ev.remote_reset:
                    reason = self._client_reset(ev.stream_id)
                else:  # our stream error (RST_STREAM sent by the connection)
                    self._local_reset(ev.stream_id)
            elif isinstance(ev, (h2c.PingReceived, h2c.RemoteSettingsChanged)):
                guard.other_frame()
                if queued:
                    reason = guard.control_frame_queued()
                if isinstance(ev, h2c.RemoteSettingsChanged):
                    self._window(0)  # INITIAL_WINDOW_SIZE may have grown every stream's
            elif isinstance(ev, h2c.PriorityUpdated):
                reason = guard.priority_frame()
            elif isinstance(ev, h2c.TrailersReceived):
                stream = self.streams.get(ev.stream_id)
                if stream is not None:
                    stream.request_ended()
            elif isinstance(ev, h2c.ConnectionTerminated) and self._client_goaway(ev.error_code):
                return
            if reason is not None:
                break
        if reason is not None:
            self.runtime.protocol_errors += 1
            log.info("h2 connection from %s closed: %s", self.peer[0], reason)
            self._fail(wire.ENHANCE_YOUR_CALM, reason)
            return
        if not queued:
            guard.output_drained()
        self.flush_soon()

    # ------------------------------------------------------------ events
    def _request(self, sid: int, fields: list[hh.Header], ended: bool,
                 cached: CachedBlock | None, now: float) -> str | None:
        """Stream `sid` opened: its exchange dispatched. A malformed header list is a
        connection error: its reason is returned (RFC 9113 8.1.1, as h2 and Envoy).
        `cached`: the decoder's cache entry the header block came from (the checked head
        is kept on it: headers.request_head_cached); `now`: the loop's time."""
        if self.goaway_last is not None and sid > self.goaway_last:
            self._reset_quietly(sid, wire.REFUSED_STREAM)
            return None
        self.guard.stream_opened()
        plan: ListenerPlan = self.runtime.plan
        if plan.by_port is not None:  # a captured inbound: the chain of the dialled port
            plan = plan.for_port(self.orig_port)
        if self.principal is not None:  # mTLS: the plan labelled with this peer
            plan = self.peer_view(plan)
        stream = H2Stream(self, sid, now)
        self.streams[sid] = stream
        try:
            if cached is None:
                head = hh.request_head(fields)
                headers, raw = head.headers, head.raw
            else:  # the kept head is shared: the exchange gets its own dict and list
                head = hh.request_head_cached(fields, cached)
                headers, raw = head.headers.copy(), head.raw.copy()
        except hh.Malformed as exc:
            self.streams.pop(sid, None)
            return str(exc)
        except hh.HeadError as exc:
            stream.refuse(400, f"bad request: {exc}")
            return None
        if head.size > self.runtime.limits.max_head_bytes + 32 * len(fields):
            stream.refuse(431, "request header fields too large")
            return None
        if len(head.raw) > self.runtime.limits.max_headers:
            stream.refuse(431, "request header fields too large")
            return None
        path = head.path
        if path and path[0] == "/":
            normal = plan.paths.normalize(path)
            if normal is None:
                stream.refuse(400, "bad request: the path cannot be normalized")
                return None
            path = normal
        authority = head.authority or self.orig_dst
        ex = Exchange(
            plan, head.method, head.path, path, authority, headers, raw,
            now, self.peer[0], self.peer[1], self.principal, self.tls,
            False, True, False, head.size,
        )  # fmt: skip
        stream.ex = ex
        stream.grpc = head.grpc
        if head.grpc:
            call = stream.call = for_request(headers.get("content-type"), ex.start)
            ex.grpc = call is not None
        if self.cert_hash:
            ex.attrs["peer_cert_hash"] = self.cert_hash
        if self.orig_dst:
            ex.attrs["original_dst"] = self.orig_dst
        ex.attrs["protocol"] = "HTTP/2"
        if head.grpc:
            wanted = headers.get("grpc-timeout")
            if wanted is not None:
                limit = hh.grpc_timeout(wanted)
                if limit is not None:  # Istio: the header bounds the call (no cap)
                    ex.attrs["grpc_timeout"] = limit
        if ended:
            ex.body_done = True
            stream.req_ended = True
        elif head.content_length is not None:
            ex.content_length = head.content_length
        else:
            ex.chunked = True  # an HTTP/1.1 upstream gets it chunked
        if head.method == "CONNECT":
            stream.local_reply(ex, 403, "", "CONNECT is not allowed here")
            return None
        stream.dispatch()
        return None

    def _data(self, ev: h2c.DataReceived) -> None:
        stream = self.streams.get(ev.stream_id)
        if stream is None:
            self._ack(ev.flow_controlled_length, ev.stream_id)
            return
        stream.body(ev.data, ev.flow_controlled_length)
        if ev.stream_ended is not None:
            stream.request_ended()

    def _client_reset(self, sid: int) -> str | None:
        stream = self.streams.pop(sid, None)
        if stream is None:
            return self.guard.stream_reset_by_client(True)
        young = self.loop.time() - stream.opened < PREMATURE_LIFETIME
        stream.abandon()
        self._stream_gone()
        return self.guard.stream_reset_by_client(not young)

    def _local_reset(self, sid: int) -> None:
        """The connection answered a stream's frame with RST_STREAM (RFC 9113 5.4.2):
        the stream is over as if the client had reset it."""
        stream = self.streams.pop(sid, None)
        if stream is not None:
            stream.abandon()
            self._stream_gone()

    def _window(self, sid: int) -> None:
        if sid:
            stream = self.streams.get(sid)
            if stream is not None:
                self.soon(stream)
            return
        for stream in self.streams.values():
            self.soon(stream)

    def _client_goaway(self, code: int) -> bool:
        """The client will open no more streams. Those in flight finish when it asked
        gracefully; True when the connection was closed here."""
        if code or not self.streams:
            self._abort_all()
            self._close_transport()
            return True
        self.goaway_last = self.conn.highest_inbound_stream_id
        return False

    # ------------------------------------------------------------ output
    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)

    def soon(self, stream: H2Stream) -> None:
        """Pump `stream` at the end of this loop turn (once, however many events)."""
        if not stream.queued:
            stream.queued = True
            self.pending.append(stream)
            if self.turn_handle is None:
                self.turn_handle = self.loop.call_soon(self.turn_end)

    def flush_soon(self) -> None:
        """Write the connection's output at the end of this loop turn."""
        if self.turn_handle is None:
            self.turn_handle = self.loop.call_soon(self.turn_end)

    def turn_end(self) -> None:
        """Every stream with news framed, then one write of all of it: the responses that
        came in during one turn leave in one syscall, not one per stream event."""
        self.turn_handle = None
        pending = self.pending
        if pending:
            self.pending = []
            now = self.loop.time()  # one clock read for every stream of the turn
            for stream in pending:
                stream.queued = False
                stream.pump(now)
        self._flush()

    def _ack(self, n: int, sid: int) -> None:
        if n:  # a closed stream's bytes go back to the connection window alone
            self.conn.acknowledge_received_data(n, sid)

    def _reset_quietly(self, sid: int, code: int) -> None:
        try:
            self.conn.reset_stream(sid, code)
        except h2c.ProtocolError:  # already closed (both ends done, or crossed resets)
            pass

    def _stream_gone(self) -> None:
        if not self.streams:
            self.idle_since = self.loop.time()
            if self.goaway_last is not None:
                self._flush()
                self._close_transport()

    def _fail(self, code: int, reason: str) -> None:
        """A connection error: GOAWAY with `code`, every stream abandoned, then close."""
        if self.closing:
            return
        self.closing = True
        # (a no-op when the connection already queued its own GOAWAY)
        self.conn.close_connection(code, additional_data=reason[:100].encode())
        self._flush()
        self._abort_all()
        self._close_transport()

    def _abort_all(self) -> None:
        streams = list(self.streams.values())
        self.streams.clear()
        for stream in streams:
            stream.abandon()

    def _close_transport(self) -> None:
        """Close after what is written; a client that does not read it within a second
        (Envoy's delayed close timeout) is cut: its unread output is not kept.

        Over plain TCP the close lingers: FIN after the output (write_eof), then input is
        read and dropped (data_received while closing) until the client closes too, which
        closes the transport (eof_received). Closing at once with input unread, or still
        arriving, sends RST, and a client then reads ECONNRESET in place of our last frames:
        h2spec generic/3.8 and http2/7/2 send a PING right behind their GOAWAY and failed
        so on a loaded host. TLS transports cannot half-close; they close as before."""
        self.closing = True
        tr = self.transport
        if tr is None:
            return
        if tr.can_write_eof():
            tr.write_eof()
            self.loop.call_later(1.0, tr.abort)
        elif tr.get_write_buffer_size() > 0:
            tr.close()
            self.loop.call_later(1.0, tr.abort)
        else:
            tr.close()

    # ------------------------------------------------------------ what the listener asks
    @property
    def active(self) -> object | None:
        """Busy (drain waits) while a stream is open."""
        return self if self.streams else None

    def _close(self) -> None:
        """Drain / idle: GOAWAY(NO_ERROR) naming the last stream taken; close when none
        is left (the streams up to it go on: not close_connection, which stops them)."""
        if self.closing:
            return
        if self.goaway_last is None:
            self.goaway_last = self.conn.highest_inbound_stream_id
            self.conn.send_goaway(self.goaway_last)
            if self.transport is not None:
                self._flush()
        if not self.streams:
            self._close_transport()

    def discourage(self) -> None:
        """The listener drains: GOAWAY now (open streams finish), as Envoy's drain does."""
        self._close()

    def check_timeouts(self, now: float, limits: Limits) -> None:
        if self.transport is None:
            return
        if not self.streams:
            if now - self.idle_since > limits.idle_timeout:
                self._close()
            return
        for stream in list(self.streams.values()):
            if now - stream.progress > limits.stream_idle_timeout:
                stream.timed_out()
            elif stream.call is not None and stream.ex is not None:
                stream.call.tick(stream.ex, now)  # a long gRPC stream's messages so far


class H2Stream:
    """One stream: the `down` of its exchange (chain/downstream.Downstream)."""

    __slots__ = (
        "call",
        "end_pending",
        "ex",
        "finished",
        "grpc",
        "head_block",
        "head_done",
        "head_fields",
        "mode",
        "opened",
        "out",
        "out_len",
        "paused_in",
        "progress",
        "queued",
        "req_ended",
        "server",
        "sid",
        "trailers",
        "transport",
        "unacked",
        "upstream_paused",
    )

    def __init__(self, server: H2Server, sid: int, now: float) -> None:
        self.server = server
        self.sid = sid
        self.ex: Exchange | None = None
        self.grpc = False
        self.call: GrpcCall | None = None  # a gRPC call's status and messages (telemetry)
        self.head_fields: list[hh.Header] | None = None  # the response head, not yet sent
        self.head_block: bytes | None = None  # its HPACK block when memoised (relayed heads)
        self.head_done = False  # a response head (relayed or local) was taken
        self.queued = False  # in the server's list of streams to pump at the turn's end
        # response bytes waiting for the client's window, as received (most responses: one
        # piece, framed without a copy), and how many
        self.out: list[bytes] = []
        self.out_len = 0
        self.end_pending = False
        self.finished = False
        self.req_ended = False
        self.paused_in = False
        self.unacked = 0
        self.upstream_paused = False
        self.opened = self.progress = now
        self.transport = self
        self.trailers: list[hh.Header] | None = None  # an HTTP/2 upstream's, sent at the end
        self.mode = response.PASS  # how the upstream delimits the response body

    # ------------------------------------------------------------ request side
    def dispatch(self) -> None:
        ex = self.ex
        assert ex is not None
        try:
            for f in ex.plan.filters:
                reply = f.on_request(ex)
                if reply is not None:
                    self.local_reply(ex, reply.status, reply.flag, reply.body, reply.headers)
                    return
            ex.plan.router.handle(ex, self)
        except Exception:  # one bad request must never take the connection down
            log.exception("internal error handling %s %s", ex.method, ex.path)
            if ex.forward is not None:
                ex.forward.abort()
            if not ex.response_started:
                self.local_reply(ex, 500, "", "internal error")
            else:
                self.reset(ex)

    def body(self, data: bytes, flow: int) -> None:
        ex = self.ex
        server = self.server
        if ex is None or self.finished:
            server._ack(flow, self.sid)
            return
        self.progress = server.loop.time()
        if data:
            ex.bytes_in += len(data)
            if self.call is not None:
                self.call.requests.feed(data)
            fwd = ex.forward
            if fwd is not None:
                fwd.body(data)
            elif ex.body_buffer is not None:
                ex.body_buffer.append(data)
                ex.body_size += len(data)
                if ex.body_size > 65536:
                    self.paused_in = True
        if self.paused_in:
            self.unacked += flow
        else:
            server._ack(flow, self.sid)

    def request_ended(self) -> None:
        if self.req_ended:
            return
        self.req_ended = True
        ex = self.ex
        if ex is None or self.finished or ex.body_done:
            return
        ex.body_done = True
        if ex.forward is not None:
            ex.forward.body_end()

    def pause_reading(self, reason: int = 1) -> None:
        self.paused_in = True

    def resume_reading(self, reason: int = 1) -> None:
        if not self.paused_in:
            return
        self.paused_in = False
        n, self.unacked = self.unacked, 0
        self.server._ack(n, self.sid)
        self.server.flush_soon()

    # ------------------------------------------------------------ response side
    def alive_for(self, ex: Exchange) -> bool:
        return not self.finished and self.server.transport is not None

    # the Downstream protocol's response events (chain/downstream.py). Nothing is framed
    # as it comes: the stream is queued (H2Server.soon) and pumped once at the end of the
    # loop turn, when the head, the body of this upstream read and often the end are all
    # known: HEADERS, then DATA carrying END_STREAM (no empty closing frame), and one
    # socket write per connection and turn for all its streams.
    def response_head(
        self, ex: Exchange, status: int, block: bytes, ops: ResponseOps | None
    ) -> None:
        if self.finished:
            return
        if ops is None and ex.keep_alive and not ex.upgrade and not ex.http11 and (
                ex.method != "HEAD"):
            relayed = relayed_head(status, block)
            if relayed is not None:  # the common head: one lookup
                self.mode = relayed.mode
                ex.keep_alive = relayed.keep_alive
                ex.bytes_out += relayed.length
                self.head_done = True
                self.head_fields = relayed.fields
                self.head_block = relayed.block
                if self.call is not None:
                    self.call.head(relayed.fields)
                self.server.soon(self)
                return
        head, self.mode, ex.keep_alive = response.relay_head(
            status, block, ops, head_request=ex.method == "HEAD", http11=ex.http11,
            keep_alive=ex.keep_alive, upgrade=ex.upgrade,
        )
        ex.bytes_out += len(head)
        self.head_done = True
        try:
            fields = response_head(head)
        except hh.HeadError:
            self._reset(wire.PROTOCOL_ERROR)
            return
        self.head_fields = fields[1]
        self.head_block = fields[2]
        if self.call is not None:
            self.call.head(fields[1])
        self.server.soon(self)

    def response_body(self, data: bytes) -> None:
        if data and not self.finished:
            ex = self.ex
            if ex is not None:
                ex.bytes_out += len(data)
            if self.call is not None:
                self.call.responses.feed(data)
            self.out.append(data)
            self.out_len += len(data)
            self.server.soon(self)

    def response_trailers(self, fields: list[hh.Header]) -> None:
        self.trailers = fields
        if self.call is not None:
            self.call.trailers(fields)

    def flush(self) -> None:
        """Nothing waits here: the queued stream is pumped at the end of the turn."""

    def response_end(self, ex: Exchange) -> None:
        self.response_done(ex)

    def ends_at_close(self, received: bool) -> bool:
        return self.mode == response.RAW_CLOSE

    def pump(self, now: float) -> None:
        """Frame what the client's window allows into the connection's output; END_STREAM
        on the last DATA frame (or the trailers, or the head) once all is out. The
        caller writes the output (H2Server.turn_end, or a flush)."""
        if self.finished:
            return
        conn = self.server.conn
        out = self.out
        sid = self.sid
        sent = 0
        ended = False
        try:
            last = self.end_pending and not self.trailers  # the body's end ends the stream
            data = b""
            if out:  # the body so far, as one piece
                data = out[0] if len(out) == 1 else b"".join(out)
                out.clear()
            fields = self.head_fields
            if fields is not None:
                self.head_fields = None
                block = self.head_block  # encoded once for every response with this head
                self.head_block = None
                if block is not None and data and conn.send_response(sid, block, data, last):
                    # the common response: its head and all of its body (and the end) in
                    # one call, the two frames written together
                    sent = 1
                    ended = last
                    data = b""
                else:
                    ended = last and not data
                    if block is not None:
                        conn.send_header_block(sid, block, end_stream=ended)
                    else:
                        conn.send_headers(sid, fields, end_stream=ended)
            if data:
                n = len(data)
                pos = 0
                while pos < n:
                    room = min(conn.local_flow_control_window(sid),
                               conn.max_outbound_frame_size)
                    if room <= 0:
                        break
                    sent += 1
                    if n - pos <= room:  # the rest fits: one frame, the end with it
                        conn.send_data(sid, data[pos:] if pos else data, end_stream=last)
                        pos = n
                        ended = last
                        break
                    conn.send_data(sid, data[pos:pos + room])
                    pos += room
                if pos < n:  # waits for the client's window
                    out.append(data[pos:] if pos else data)
                self.out_len = n - pos
            else:
                self.out_len = 0
            if self.end_pending and not out and not ended:
                if self.trailers:
                    conn.send_headers(self.sid, self.trailers, end_stream=True)
                else:
                    conn.end_stream(self.sid)
                ended = True
        except h2c.ProtocolError:  # the stream closed under us (StreamClosedError)
            self._gone()
            return
        server = self.server
        if sent:
            self.progress = now
            server.guard.data_sent_frames(sent)
        if ended:
            self._done(now)
            return
        self.upstream_pause()

    def upstream_pause(self) -> None:
        """Stop (or restart) reading the upstream: client window or socket full."""
        want = self.out_len > OUT_HIGH or self.server.write_blocked
        if want != self.upstream_paused and self.ex is not None:
            fwd = self.ex.forward
            if fwd is not None:
                self.upstream_paused = want
                fwd.pause_upstream(want)

    def response_done(self, ex: Exchange) -> None:
        if self.finished:
            return
        if not self.head_done:  # a response with no head at all: nothing usable came
            self._reset(wire.INTERNAL_ERROR)
            return
        self.end_pending = True
        self.server.soon(self)

    def local_reply(self, ex: Exchange, status: int, flag: str, body: str,
                    headers: tuple[tuple[str, str], ...] = ()) -> None:
        if self.finished:
            return
        if ex.response_started:
            self.reset(ex)
            return
        if flag:
            ex.add_flag(flag)
        ex.status = status
        ex.response_started = True
        fields, payload = hh.local_reply_fields(status, body.encode(), self.grpc, headers)
        if self.call is not None:
            self.call.head(fields)
        if ex.method == "HEAD" or status in (204, 304):
            payload = b""
        ex.bytes_out += len(payload)
        self._reply(fields, payload)

    def refuse(self, status: int, text: str) -> None:
        """A request refused before it became an exchange (malformed head)."""
        self.server.runtime.protocol_errors += 1
        fields, payload = hh.local_reply_fields(status, text.encode(), False)
        self._reply(fields, payload)

    def _reply(self, fields: list[hh.Header], payload: bytes) -> None:
        """A whole response of the proxy's own, framed at the end of the turn."""
        self.head_done = True
        self.head_fields = fields
        if payload:
            self.out.append(payload)
            self.out_len += len(payload)
        self.end_pending = True
        self.server.soon(self)

    def reset(self, ex: Exchange) -> None:
        """The response cannot be completed: RST_STREAM (the client sees the reset)."""
        self._reset(wire.INTERNAL_ERROR)

    def start_tunnel(self, ex: Exchange, conn: Any, rest: bytes) -> None:
        """Upgrades do not exist inside an HTTP/2 stream (the router never asks)."""
        conn.close()
        self._reset(wire.PROTOCOL_ERROR)

    def timed_out(self) -> None:
        """No progress for the idle timeout (a window that never opens): reset."""
        ex = self.ex
        if ex is not None:
            ex.add_flag("SI")  # Envoy's stream idle timeout flag
            if ex.forward is not None:
                ex.forward.abort()
        self._reset(wire.CANCEL)

    # ------------------------------------------------------------ endings
    def abandon(self) -> None:
        """The client reset the stream, or the connection is gone."""
        if self.finished:
            return
        self.finished = True
        if self.unacked:  # DATA held back (paused): its bytes go back to the connection
            self.server._ack(self.unacked, self.sid)
            self.unacked = 0
        ex = self.ex
        if ex is not None:
            if ex.forward is not None:
                ex.forward.abort()
            if not ex.response_started:
                ex.status = 0
            self._record(ex)

    def _reset(self, code: int) -> None:
        if self.finished:
            return
        self.server._reset_quietly(self.sid, code)
        self.server._flush()
        self._gone()

    def _gone(self) -> None:
        """Ended without a complete response."""
        if self.finished:
            return
        ex = self.ex
        if ex is not None and ex.forward is not None:
            ex.forward.abort()
        self._finish()

    def _done(self, now: float) -> None:
        """The response went out whole."""
        if not self.req_ended and not self.finished:
            # the client is still sending a body nobody will read (RFC 9113 8.1)
            self.server._reset_quietly(self.sid, wire.NO_ERROR)
            self.server._flush()
        self._finish(now)

    def _finish(self, now: float = -1.0) -> None:
        """`now`: the loop's time when the caller has it (else read here)."""
        self.finished = True
        if self.unacked:
            self.server._ack(self.unacked, self.sid)
            self.unacked = 0
        server = self.server
        streams = server.streams
        if self.sid in streams:
            del streams[self.sid]
            server._stream_gone()
        if self.ex is not None:
            self._record(self.ex, now)

    def _record(self, ex: Exchange, now: float = -1.0) -> None:
        """Metrics, access log and trace span of a finished stream (Exchange.end, the
        ending the HTTP/1.1 listener shares); a gRPC call is counted with its status and
        the messages not reported yet."""
        call = self.call
        messages = None
        if call is not None:
            call.finish(ex)
            if ex.plan.metrics_on:
                messages = call.unreported()
        ex.end(now if now >= 0 else self.server.loop.time(), messages)
