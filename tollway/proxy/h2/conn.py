"""A server-side HTTP/2 connection, sans IO: bytes in, events out, frames queued [pure].

`ServerConnection` is what the downstream server (server.py) used the `h2` library's
`H2Connection` for, and has the same surface for that subset - `receive_data` ->
events, `send_headers` / `send_data` / `reset_stream` / `acknowledge_received_data` ...,
`data_to_send` - with events of the same class and attribute names as `h2.events`, so
the server's code reads the same and a differential test drives both with the same calls
(tests/proxy/core/test_h2_conn.py and h2check's fuzz). It is ours, compiled with mypyc,
because the library was 72% of an HTTP/2 request's instructions, 5.5x a whole HTTP/1.1
request (docs/performance.md, HTTP/2): hyperframe objects per frame, two state machines
of enum lookups per event, logging calls. Here the frame layer is `wire.Reader` (fields,
no object per frame), a stream is one small record in a dict, a state is an int, and the
transitions are the few `if`s below. `h2` stays for the upstream client and as the
oracle in tests.

Semantics (RFC 9113; where it leaves a choice, what `h2` did, so the server and its
tests saw no change):
- stream states: idle -> open / half-closed (remote) on HEADERS; END_STREAM either way
  half-closes, both ways closes; RST_STREAM either way closes. A closed stream leaves
  the dict and is remembered in a bounded dict (how it closed) for frames still in
  flight: DATA on it is answered with RST_STREAM(STREAM_CLOSED) and its bytes given back
  to the connection window; WINDOW_UPDATE, RST_STREAM and PRIORITY are ignored; HEADERS
  on a stream we reset are decoded (the HPACK table must stay in step) and answered with
  RST_STREAM, on one that ended normally they are a connection error.
- stream ids: a client opens odd ids, each higher than the last; anything else, and
  DATA / RST_STREAM / WINDOW_UPDATE on a stream never opened, is a PROTOCOL_ERROR.
- more streams than our MAX_CONCURRENT_STREAMS: the new stream is refused with
  RST_STREAM(REFUSED_STREAM) (h2 made it a connection error; the RFC allows either and a
  client may retry a refused stream).
- flow control: both windows per direction; a DATA frame past either receive window or a
  window pushed past 2^31-1 is a FLOW_CONTROL_ERROR (on a stream's send window: a
  stream error). Received bytes are handed back when the server says it consumed them
  (`acknowledge_received_data`), in WINDOW_UPDATEs of at least half the window (h2's
  algorithm), so a reader that keeps up costs one WINDOW_UPDATE per half window.
- a request whose content-length is not a number, or whose body (the DATA frames' total,
  0 when HEADERS ends the stream) is longer or shorter than it, is malformed (RFC 9113
  8.1.1): a stream error, RST_STREAM(PROTOCOL_ERROR) on that stream alone, as nghttp2
  (Envoy's codec) answers it; h2 ended the connection. Never forwarded: an HTTP/1.1
  upstream frames the body by the length, a mismatch would be request smuggling.
- abuse the library used to stop, now stopped here: a header block of more than
  `MAX_CONTINUATIONS` CONTINUATION frames (CVE-2024-27316) is a PROTOCOL_ERROR, and a
  block is never longer than that many frames of our MAX_FRAME_SIZE; a header list that
  decodes past MAX_HEADER_LIST_SIZE (HPACK bombs) is ENHANCE_YOUR_CALM, raised by the
  `hpack` decoder inside `hpack_fast.CachingDecoder` mid-block. The rate limits
  (rapid reset, PING/SETTINGS floods, empty DATA, PRIORITY, WINDOW_UPDATE) are
  `guard.Guard`'s, fed by the server from these events.
- a connection error: GOAWAY(code) is queued, the connection stops reading, and
  `receive_data` raises `ProtocolError(error_code)` (events of that read are dropped, as
  h2 did). Any unexpected exception inside is turned into INTERNAL_ERROR the same way:
  one connection ends, never the process.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

import hpack

from tollway.proxy.h2 import wire
from tollway.proxy.h2.hpack_fast import CachedBlock, CachingDecoder, StaticEncoder

Header = tuple[bytes, bytes]

# stream states (closed streams leave the dict)
OPEN: Final = 0
REMOTE_CLOSED: Final = 1  # half-closed (remote): the client sent END_STREAM
LOCAL_CLOSED: Final = 2  # half-closed (local): we sent END_STREAM

# how a stream closed, remembered for frames still in flight
BY_END: Final = 0
BY_RESET: Final = 1

MAX_CONTINUATIONS: Final = 64  # h2's CONTINUATION_BACKLOG; Envoy (nghttp2) bounds the block too
CLOSED_KEEP: Final = 1024  # closed streams remembered (oldest forgotten first)
DEFAULT_WINDOW: Final = 65535
MALFORMED_LENGTH: Final = -2  # _content_length of a value that is not a number


# ------------------------------------------------------------------ errors
class ProtocolError(Exception):
    """A connection error: GOAWAY with `error_code` was queued."""

    def __init__(self, error_code: int, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code


class StreamClosedError(ProtocolError):
    """An action on a stream that is closed (or was never opened)."""

    def __init__(self, stream_id: int) -> None:
        super().__init__(wire.STREAM_CLOSED, f"stream {stream_id} is closed")
        self.stream_id = stream_id


class FlowControlError(ProtocolError):
    def __init__(self, message: str) -> None:
        super().__init__(wire.FLOW_CONTROL_ERROR, message)


# ------------------------------------------------------------------ events (h2.events' names)
class StreamEnded:
    __slots__ = ("stream_id",)

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id


class PriorityUpdated:
    __slots__ = ("depends_on", "exclusive", "stream_id", "weight")

    def __init__(self, stream_id: int, weight: int, depends_on: int, exclusive: bool) -> None:
        self.stream_id = stream_id
        self.weight = weight
        self.depends_on = depends_on
        self.exclusive = exclusive


class RequestReceived:
    __slots__ = ("cached", "headers", "priority_updated", "stream_ended", "stream_id")

    def __init__(self, stream_id: int, headers: list[Header],
                 stream_ended: StreamEnded | None, cached: CachedBlock | None = None) -> None:
        self.stream_id = stream_id
        self.headers = headers
        self.stream_ended = stream_ended
        self.priority_updated: PriorityUpdated | None = None
        # (not in h2.events) the decoder's cache entry that answered the header block: the
        # same fields as an earlier request (server.py keeps their checked head on it)
        self.cached = cached


class TrailersReceived:
    __slots__ = ("headers", "priority_updated", "stream_ended", "stream_id")

    def __init__(self, stream_id: int, headers: list[Header],
                 stream_ended: StreamEnded | None) -> None:
        self.stream_id = stream_id
        self.headers = headers
        self.stream_ended = stream_ended
        self.priority_updated: PriorityUpdated | None = None


class DataReceived:
    __slots__ = ("data", "flow_controlled_length", "stream_ended", "stream_id")

    def __init__(self, stream_id: int, data: bytes, flow_controlled_length: int,
                 stream_ended: StreamEnded | None) -> None:
        self.stream_id = stream_id
        self.data = data
        self.flow_controlled_length = flow_controlled_length
        self.stream_ended = stream_ended


class StreamReset:
    __slots__ = ("error_code", "remote_reset", "stream_id")

    def __init__(self, stream_id: int, error_code: int, remote_reset: bool) -> None:
        self.stream_id = stream_id
        self.error_code = error_code
        self.remote_reset = remote_reset


class WindowUpdated:
    __slots__ = ("delta", "stream_id")

    def __init__(self, stream_id: int, delta: int) -> None:
        self.stream_id = stream_id
        self.delta = delta


class PingReceived:
    __slots__ = ("ping_data",)

    def __init__(self, ping_data: bytes) -> None:
        self.ping_data = ping_data


class PingAckReceived:
    __slots__ = ("ping_data",)

    def __init__(self, ping_data: bytes) -> None:
        self.ping_data = ping_data


class ChangedSetting:
    __slots__ = ("new_value", "original_value", "setting")

    def __init__(self, setting: int, original_value: int | None, new_value: int) -> None:
        self.setting = setting
        self.original_value = original_value
        self.new_value = new_value


class RemoteSettingsChanged:
    __slots__ = ("changed_settings",)

    def __init__(self, changed_settings: dict[int, ChangedSetting]) -> None:
        self.changed_settings = changed_settings


class SettingsAcknowledged:
    __slots__ = ("changed_settings",)

    def __init__(self) -> None:
        self.changed_settings: dict[int, ChangedSetting] = {}


class ConnectionTerminated:
    __slots__ = ("additional_data", "error_code", "last_stream_id")

    def __init__(self, error_code: int, last_stream_id: int,
                 additional_data: bytes | None) -> None:
        self.error_code = error_code
        self.last_stream_id = last_stream_id
        self.additional_data = additional_data


Event = (RequestReceived | DataReceived | StreamEnded | StreamReset | WindowUpdated
         | PingReceived | PingAckReceived | RemoteSettingsChanged | SettingsAcknowledged
         | PriorityUpdated | TrailersReceived | ConnectionTerminated)


# ------------------------------------------------------------------ the connection
class _Stream:
    """One open stream's state and its two windows."""

    __slots__ = ("expected", "head_sent", "received", "recv_max", "recv_processed",
                 "recv_window", "send_window", "sid", "state")

    def __init__(self, sid: int, send_window: int, recv_window: int) -> None:
        self.sid = sid
        self.state = OPEN
        self.send_window = send_window  # what we may still send
        self.recv_window = recv_window  # what the client may still send
        self.recv_max = recv_window
        self.recv_processed = 0  # consumed by the server, not yet handed back
        self.expected = -1  # the request's content-length, -1 when none
        self.received = 0  # request body bytes so far
        self.head_sent = False  # the response head went out: more HEADERS are trailers


def _window_increment(window: int, top: int, processed: int) -> int:
    """h2's WindowManager rule: hand back what was consumed once it is half the window
    (or, with the window shut, once it is 1 KiB or a quarter); -1 means not yet."""
    if (window == 0 and processed > min(1024, top // 4)) or processed >= top // 2:
        return min(processed, top - window)
    return -1


class ServerConnection:
    """A server-side HTTP/2 connection (see module doc)."""

    def __init__(self, max_concurrent_streams: int = 100,
                 initial_window_size: int = DEFAULT_WINDOW,
                 max_header_list_size: int = 65536,
                 header_table_size: int = 4096) -> None:
        self.max_concurrent_streams = max_concurrent_streams
        self.local_initial_window = initial_window_size
        self.max_header_list_size = max_header_list_size
        self.header_table_size = header_table_size
        self.reader = wire.Reader()
        self.out: list[bytes] = []  # frames (pieces of them) to send, joined once per flush
        self.encoder = StaticEncoder()
        decoder = CachingDecoder()
        decoder.max_header_list_size = max_header_list_size
        decoder.max_allowed_table_size = header_table_size
        self.decoder = decoder
        self.streams: dict[int, _Stream] = {}
        self.closed: dict[int, int] = {}  # stream id -> BY_END / BY_RESET
        self.closed_order: list[int] = []  # the same ids, a ring: the oldest is forgotten
        self.closed_next = 0  # where in the ring the next id goes once it is full
        self.highest_inbound_stream_id = 0
        # the client's settings
        self.remote_initial_window = DEFAULT_WINDOW
        self.max_outbound_frame_size = wire.DEFAULT_MAX_FRAME_SIZE
        self.remote_settings: dict[int, int] = {
            wire.HEADER_TABLE_SIZE: 4096, wire.ENABLE_PUSH: 1,
            wire.INITIAL_WINDOW_SIZE: DEFAULT_WINDOW,
            wire.MAX_FRAME_SIZE: wire.DEFAULT_MAX_FRAME_SIZE,
        }
        # connection windows
        self.send_window = DEFAULT_WINDOW
        self.recv_window = DEFAULT_WINDOW
        self.recv_max = DEFAULT_WINDOW
        self.recv_processed = 0
        # a header block spread over CONTINUATION frames
        self.block_sid = 0
        self.block_flags = 0
        self.block_parts: list[bytes] = []
        self.block_priority: PriorityUpdated | None = None
        self.terminated = False  # a GOAWAY with an error went out: nothing more is read
        self.goaway_received = False

    # ------------------------------------------------------------ start
    def initiate_connection(self) -> None:
        """Our SETTINGS, the first frame a server sends (RFC 9113 3.4)."""
        wire.write_settings(self.out, [
            (wire.ENABLE_PUSH, 0),
            (wire.MAX_CONCURRENT_STREAMS, self.max_concurrent_streams),
            (wire.INITIAL_WINDOW_SIZE, self.local_initial_window),
            (wire.MAX_HEADER_LIST_SIZE, self.max_header_list_size),
        ])

    def initiate_upgrade_connection(self, settings_header: bytes) -> None:
        """`Upgrade: h2c` accepted: our SETTINGS, the client's HTTP2-Settings applied (no
        ACK: RFC 7540 3.2.1), and stream 1 - the upgraded request - half-closed (remote).
        A malformed header value raises ProtocolError (nothing is applied)."""
        value = settings_header.strip()
        try:
            payload = base64.urlsafe_b64decode(value + b"=" * (-len(value) % 4))
        except (binascii.Error, ValueError) as exc:
            raise ProtocolError(wire.PROTOCOL_ERROR, "HTTP2-Settings is not base64url") from exc
        if len(payload) % 6:
            raise ProtocolError(wire.PROTOCOL_ERROR, "HTTP2-Settings is not a SETTINGS payload")
        self._apply_settings(payload)
        self.initiate_connection()
        stream = _Stream(1, self.remote_initial_window, self.local_initial_window)
        stream.state = REMOTE_CLOSED
        self.streams[1] = stream
        self.highest_inbound_stream_id = 1

    # ------------------------------------------------------------ input
    def receive_data(self, data: bytes) -> list[Event]:
        """Events of the frames in `data` (and what an earlier read left unfinished).
        A connection error queues GOAWAY and raises ProtocolError."""
        events: list[Event] = []
        if self.terminated:
            return events
        reader = self.reader
        reader.feed(data)
        try:
            while reader.next():
                self._frame(reader, events)
        # (one name per clause: mypyc gives a name one type per function)
        except wire.FrameError as frame_error:
            self._die(frame_error.code, frame_error.message)
        except ProtocolError as protocol_error:
            self._die(protocol_error.error_code, str(protocol_error))
        except hpack.OversizedHeaderListError as oversized:
            self._die(wire.ENHANCE_YOUR_CALM, f"a header list over the limit: {oversized}")
        except (hpack.HPACKError, IndexError, UnicodeDecodeError) as undecodable:
            self._die(wire.COMPRESSION_ERROR,
                      f"a header block that does not decode: {undecodable}")
        except Exception as exc:  # a bug meets input: this connection ends, not the process
            self._die(wire.INTERNAL_ERROR, f"internal error: {exc!r}")
        return events

    def _die(self, code: int, message: str) -> None:
        if not self.terminated:
            self.terminated = True
            wire.write_goaway(self.out, self.highest_inbound_stream_id, code)
        raise ProtocolError(code, message)

    def _frame(self, r: wire.Reader, events: list[Event]) -> None:
        kind = r.kind
        if self.block_sid:  # inside a header block only its CONTINUATIONs may come
            if kind != wire.CONTINUATION or r.sid != self.block_sid:
                raise ProtocolError(wire.PROTOCOL_ERROR, "a frame inside a header block")
            parts = self.block_parts
            parts.append(r.payload)
            if len(parts) > MAX_CONTINUATIONS:
                raise ProtocolError(wire.PROTOCOL_ERROR, f"more than {MAX_CONTINUATIONS} "
                                    "CONTINUATION frames in one header block")
            if r.flags & wire.END_HEADERS:
                sid = self.block_sid
                self.block_sid = 0
                self.block_parts = []
                self._headers(sid, self.block_flags, b"".join(parts), self.block_priority,
                              events)
            return
        if kind == wire.HEADERS:
            priority: PriorityUpdated | None = None
            if r.flags & wire.PRIORITY_FLAG:
                priority = PriorityUpdated(r.sid, r.weight, r.depends_on, r.exclusive)
            if r.flags & wire.END_HEADERS:
                self._headers(r.sid, r.flags, r.payload, priority, events)
            else:
                self.block_sid = r.sid
                self.block_flags = r.flags
                self.block_parts = [r.payload]
                self.block_priority = priority
        elif kind == wire.DATA:
            self._data(r.sid, r.flags, r.payload, r.flow, events)
        elif kind == wire.WINDOW_UPDATE:
            self._window_update(r.sid, r.flow, events)
        elif kind == wire.SETTINGS:
            if r.flags & wire.ACK:
                events.append(SettingsAcknowledged())
            else:
                events.append(RemoteSettingsChanged(self._apply_settings(r.payload)))
                wire.write_settings_ack(self.out)
        elif kind == wire.RST_STREAM:
            self._rst_stream(r.sid, r.flow, events)
        elif kind == wire.PING:
            if r.flags & wire.ACK:
                events.append(PingAckReceived(r.payload))
            else:
                wire.write_ping_ack(self.out, r.payload)
                events.append(PingReceived(r.payload))
        elif kind == wire.PRIORITY:
            if r.depends_on == r.sid:
                raise ProtocolError(wire.PROTOCOL_ERROR, f"stream {r.sid} depends on itself")
            events.append(PriorityUpdated(r.sid, r.weight, r.depends_on, r.exclusive))
        elif kind == wire.GOAWAY:
            last, code, debug = wire.parse_goaway(r.payload)
            self.goaway_received = True
            events.append(ConnectionTerminated(code, last, debug or None))
        elif kind > wire.CONTINUATION:
            return  # an extension frame type: ignored (RFC 9113 5.5)
        else:  # CONTINUATION outside a header block
            raise ProtocolError(wire.PROTOCOL_ERROR, "CONTINUATION without a HEADERS before it")

    def _decode(self, block: bytes) -> list[Header]:
        return self.decoder.decode(block, raw=True)

    def _headers(self, sid: int, flags: int, block: bytes, priority: PriorityUpdated | None,
                 events: list[Event]) -> None:
        if priority is not None and priority.depends_on == sid:
            raise ProtocolError(wire.PROTOCOL_ERROR, f"stream {sid} depends on itself")
        stream = self.streams.get(sid)
        end = (flags & wire.END_STREAM) != 0
        if stream is None:
            if not sid & 1:
                raise ProtocolError(wire.PROTOCOL_ERROR, f"HEADERS on stream {sid}: a "
                                    "client opens odd stream ids")
            if sid <= self.highest_inbound_stream_id:
                how = self.closed.get(sid)
                if how is None:
                    raise ProtocolError(wire.PROTOCOL_ERROR, f"HEADERS on stream {sid}, "
                                        "lower than a stream already opened")
                self._decode(block)  # the HPACK table must stay in step
                if how == BY_END:
                    raise ProtocolError(wire.STREAM_CLOSED, f"HEADERS on closed stream {sid}")
                wire.write_rst_stream(self.out, sid, wire.STREAM_CLOSED)
                return
            fields = self._decode(block)
            cached = self.decoder.hit
            self.highest_inbound_stream_id = sid
            if len(self.streams) >= self.max_concurrent_streams:
                wire.write_rst_stream(self.out, sid, wire.REFUSED_STREAM)
                self._remember(sid, BY_RESET)
                return
            expected = _content_length(fields)
            if expected == MALFORMED_LENGTH or (end and expected > 0):
                # RFC 9113 8.1.1: a content-length that is not a number, or that a request
                # ending here (no DATA) cannot match, makes the request malformed: a stream
                # error (as nghttp2 and Envoy answer it); the connection goes on
                wire.write_rst_stream(self.out, sid, wire.PROTOCOL_ERROR)
                self._remember(sid, BY_RESET)
                events.append(StreamReset(sid, wire.PROTOCOL_ERROR, False))
                return
            stream = _Stream(sid, self.remote_initial_window, self.local_initial_window)
            if end:
                stream.state = REMOTE_CLOSED
            else:
                stream.expected = expected
            self.streams[sid] = stream
            ended = StreamEnded(sid) if end else None
            request = RequestReceived(sid, fields, ended, cached)
            events.append(request)
            if ended is not None:
                events.append(ended)
            if priority is not None:
                request.priority_updated = priority
                events.append(priority)
            return
        fields = self._decode(block)
        if stream.state == REMOTE_CLOSED:
            self._stream_error(stream, wire.STREAM_CLOSED, events)
            return
        if not end:
            raise ProtocolError(wire.PROTOCOL_ERROR, f"trailers on stream {sid} without "
                                "END_STREAM")
        if stream.expected >= 0 and stream.received != stream.expected:
            # a body short of its content-length (RFC 9113 8.1.1): a stream error
            self._stream_error(stream, wire.PROTOCOL_ERROR, events)
            return
        ended = StreamEnded(sid)
        trailers = TrailersReceived(sid, fields, ended)
        events.append(trailers)
        events.append(ended)
        self._remote_end(stream)
        if priority is not None:
            trailers.priority_updated = priority
            events.append(priority)

    def _data(self, sid: int, flags: int, data: bytes, flow: int, events: list[Event]) -> None:
        self.recv_window -= flow
        if self.recv_window < 0:
            raise FlowControlError("DATA past the connection's flow-control window")
        stream = self.streams.get(sid)
        if stream is None:
            if not sid & 1 or sid > self.highest_inbound_stream_id:
                raise ProtocolError(wire.PROTOCOL_ERROR, f"DATA on stream {sid}, never opened")
            # closed: in flight when it closed. Its bytes go back to the connection
            self._processed(flow)
            wire.write_rst_stream(self.out, sid, wire.STREAM_CLOSED)
            return
        stream.recv_window -= flow
        if stream.recv_window < 0:
            raise FlowControlError(f"DATA past stream {sid}'s flow-control window")
        if stream.state == REMOTE_CLOSED:  # after the client's END_STREAM
            self._processed(flow)
            self._stream_error(stream, wire.STREAM_CLOSED, events)
            return
        end = (flags & wire.END_STREAM) != 0
        if stream.expected >= 0:
            stream.received += len(data)
            if stream.received > stream.expected or (end and stream.received != stream.expected):
                # the body differs from its content-length (RFC 9113 8.1.1): a stream error;
                # the frame never reaches the server, its bytes go back to the connection
                self._processed(flow)
                self._stream_error(stream, wire.PROTOCOL_ERROR, events)
                return
        if end:
            ended = StreamEnded(sid)
            events.append(DataReceived(sid, data, flow, ended))
            events.append(ended)
            self._remote_end(stream)
        else:
            events.append(DataReceived(sid, data, flow, None))

    def _window_update(self, sid: int, increment: int, events: list[Event]) -> None:
        if not sid:
            if not increment:
                raise ProtocolError(wire.PROTOCOL_ERROR, "a WINDOW_UPDATE of 0")
            self.send_window += increment
            if self.send_window > wire.MAX_WINDOW:
                raise FlowControlError("the connection's window pushed past 2^31-1")
            events.append(WindowUpdated(0, increment))
            return
        stream = self.streams.get(sid)
        if stream is None:
            if not sid & 1 or sid > self.highest_inbound_stream_id:
                raise ProtocolError(wire.PROTOCOL_ERROR,
                                    f"WINDOW_UPDATE on stream {sid}, never opened")
            return  # closed meanwhile: nothing to send on it
        if not increment:
            self._stream_error(stream, wire.PROTOCOL_ERROR, events)
            return
        stream.send_window += increment
        if stream.send_window > wire.MAX_WINDOW:
            self._stream_error(stream, wire.FLOW_CONTROL_ERROR, events)
            return
        events.append(WindowUpdated(sid, increment))

    def _rst_stream(self, sid: int, code: int, events: list[Event]) -> None:
        stream = self.streams.get(sid)
        if stream is None:
            if not sid & 1 or sid > self.highest_inbound_stream_id:
                raise ProtocolError(wire.PROTOCOL_ERROR,
                                    f"RST_STREAM on stream {sid}, never opened")
            return  # already closed: the two resets crossed
        self._close(stream, BY_RESET)
        events.append(StreamReset(sid, code, True))

    def _apply_settings(self, payload: bytes) -> dict[int, ChangedSetting]:
        pairs = wire.parse_settings(payload)
        for ident, value in pairs:  # all checked before any applies
            if ident == wire.ENABLE_PUSH or ident == wire.ENABLE_CONNECT_PROTOCOL:
                if value > 1:
                    raise ProtocolError(wire.PROTOCOL_ERROR, f"setting {ident} = {value}")
            elif ident == wire.INITIAL_WINDOW_SIZE and value > wire.MAX_WINDOW:
                raise FlowControlError(f"SETTINGS_INITIAL_WINDOW_SIZE {value}")
            elif ident == wire.MAX_FRAME_SIZE and not (
                    wire.DEFAULT_MAX_FRAME_SIZE <= value <= wire.MAX_MAX_FRAME_SIZE):
                raise ProtocolError(wire.PROTOCOL_ERROR, f"SETTINGS_MAX_FRAME_SIZE {value}")
        changed: dict[int, ChangedSetting] = {}
        remote = self.remote_settings
        for ident, value in pairs:
            changed[ident] = ChangedSetting(ident, remote.get(ident), value)
            remote[ident] = value
            if ident == wire.INITIAL_WINDOW_SIZE:
                delta = value - self.remote_initial_window
                self.remote_initial_window = value
                for stream in self.streams.values():  # RFC 9113 6.9.2
                    stream.send_window += delta
                    if stream.send_window > wire.MAX_WINDOW:
                        raise FlowControlError("SETTINGS_INITIAL_WINDOW_SIZE pushed a "
                                               "stream's window past 2^31-1")
            elif ident == wire.MAX_FRAME_SIZE:
                self.max_outbound_frame_size = value
            elif ident == wire.HEADER_TABLE_SIZE:
                self.encoder.header_table_size = value
        return changed

    # ------------------------------------------------------------ state transitions
    def _remote_end(self, stream: _Stream) -> None:
        if stream.state == OPEN:
            stream.state = REMOTE_CLOSED
        else:
            self._close(stream, BY_END)

    def _local_end(self, stream: _Stream) -> None:
        if stream.state == OPEN:
            stream.state = LOCAL_CLOSED
        else:
            self._close(stream, BY_END)

    def _close(self, stream: _Stream, how: int) -> None:
        del self.streams[stream.sid]
        self._remember(stream.sid, how)

    def _remember(self, sid: int, how: int) -> None:
        """At most CLOSED_KEEP closed streams, the oldest forgotten first (a ring of their
        ids: `next(iter(dict))` to find the oldest scans the deleted slots a dict keeps at
        its front, ~1,500 instructions a stream)."""
        closed = self.closed
        order = self.closed_order
        if len(order) < CLOSED_KEEP:
            order.append(sid)
        else:
            at = self.closed_next
            old = order[at]
            if old in closed:  # (each id is remembered once: always there)
                del closed[old]
            order[at] = sid
            self.closed_next = at + 1 if at + 1 < CLOSED_KEEP else 0
        closed[sid] = how

    def _stream_error(self, stream: _Stream, code: int, events: list[Event]) -> None:
        """RFC 9113 5.4.2: RST_STREAM(code), the stream closed, the server told."""
        wire.write_rst_stream(self.out, stream.sid, code)
        self._close(stream, BY_RESET)
        events.append(StreamReset(stream.sid, code, False))

    def _processed(self, n: int) -> None:
        """`n` received bytes consumed: the connection window handed back when due."""
        processed = self.recv_processed + n
        inc = _window_increment(self.recv_window, self.recv_max, processed)
        if inc < 0:
            self.recv_processed = processed
            return
        self.recv_processed = 0
        if inc:
            self.recv_window += inc
            wire.write_window_update(self.out, 0, inc)

    # ------------------------------------------------------------ output
    def data_to_send(self) -> bytes:
        out = self.out
        if not out:
            return b""
        data = b"".join(out)
        out.clear()
        return data

    def _sendable(self, stream_id: int) -> _Stream:
        stream = self.streams.get(stream_id)
        if stream is None or stream.state == LOCAL_CLOSED or self.terminated:
            raise StreamClosedError(stream_id)
        return stream

    def send_headers(self, stream_id: int, headers: list[Header],
                     end_stream: bool = False) -> None:
        stream = self._sendable(stream_id)
        if stream.head_sent and not end_stream:
            raise ProtocolError(wire.PROTOCOL_ERROR, "trailers must end the stream")
        stream.head_sent = True
        block = self.encoder.encode(headers)
        wire.write_headers(self.out, stream_id, block, end_stream, self.max_outbound_frame_size)
        if end_stream:
            self._local_end(stream)

    def send_header_block(self, stream_id: int, block: bytes, end_stream: bool = False) -> None:
        """`send_headers` for a block made by `hpack_fast.encode_fields` (a response head
        encoded once and reused: the server's head memo)."""
        stream = self._sendable(stream_id)
        if stream.head_sent and not end_stream:
            raise ProtocolError(wire.PROTOCOL_ERROR, "trailers must end the stream")
        stream.head_sent = True
        wire.write_headers(self.out, stream_id, self.encoder.prefix(block), end_stream,
                           self.max_outbound_frame_size)
        if end_stream:
            self._local_end(stream)

    def send_response(self, stream_id: int, block: bytes, data: bytes, end_stream: bool) -> bool:
        """`send_header_block` and `send_data` in one: a response head's block and its body
        as one DATA frame, written together (the common small response). False, with
        nothing sent, when the body does not fit the client's windows or frame size now
        (or the head went out already): the caller sends them one by one."""
        stream = self._sendable(stream_id)
        n = len(data)
        top = self.max_outbound_frame_size
        if (stream.head_sent or n > stream.send_window or n > self.send_window or n > top
                or len(block) >= top):  # (>=: a table size update may go in front)
            return False
        stream.head_sent = True
        stream.send_window -= n
        self.send_window -= n
        wire.write_headers_data(self.out, stream_id, self.encoder.prefix(block), data,
                                end_stream)
        if end_stream:
            self._local_end(stream)
        return True

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        """One DATA frame: within the client's windows and frame size (the caller asks
        `local_flow_control_window` and `max_outbound_frame_size` first)."""
        stream = self._sendable(stream_id)
        n = len(data)
        if n > self.max_outbound_frame_size:
            raise ProtocolError(wire.FRAME_SIZE_ERROR, f"{n} bytes of DATA are over the "
                                f"client's frame size {self.max_outbound_frame_size}")
        if n > stream.send_window or n > self.send_window:
            raise FlowControlError(f"{n} bytes of DATA are over the client's window")
        stream.send_window -= n
        self.send_window -= n
        wire.write_data(self.out, stream_id, data, end_stream)
        if end_stream:
            self._local_end(stream)

    def end_stream(self, stream_id: int) -> None:
        self.send_data(stream_id, b"", end_stream=True)

    def reset_stream(self, stream_id: int, error_code: int = 0) -> None:
        stream = self.streams.get(stream_id)
        if stream is None or self.terminated:
            raise StreamClosedError(stream_id)
        wire.write_rst_stream(self.out, stream_id, error_code)
        self._close(stream, BY_RESET)

    def acknowledge_received_data(self, acknowledged_size: int, stream_id: int) -> None:
        """The server consumed `acknowledged_size` bytes of `stream_id`'s DATA: hand the
        window back (the connection's always, the stream's while the client may send)."""
        if acknowledged_size < 0:
            raise ValueError("a negative acknowledgement")
        if not acknowledged_size or self.terminated:
            return
        self._processed(acknowledged_size)
        stream = self.streams.get(stream_id)
        if stream is None or stream.state == REMOTE_CLOSED:
            return
        processed = stream.recv_processed + acknowledged_size
        inc = _window_increment(stream.recv_window, stream.recv_max, processed)
        if inc < 0:
            stream.recv_processed = processed
            return
        stream.recv_processed = 0
        if inc:
            stream.recv_window += inc
            wire.write_window_update(self.out, stream_id, inc)

    def increment_flow_control_window(self, increment: int, stream_id: int | None = None) -> None:
        """Open our receive window by `increment` now (one WINDOW_UPDATE)."""
        if not 1 <= increment <= wire.MAX_WINDOW:
            raise ValueError(f"a window increment of {increment}")
        if stream_id:
            stream = self.streams.get(stream_id)
            if stream is None:
                raise StreamClosedError(stream_id)
            stream.recv_window += increment
            if stream.recv_window > wire.MAX_WINDOW:
                raise FlowControlError("a stream window past 2^31-1")
            stream.recv_max = max(stream.recv_max, stream.recv_window)
            wire.write_window_update(self.out, stream_id, increment)
            return
        self.recv_window += increment
        if self.recv_window > wire.MAX_WINDOW:
            raise FlowControlError("the connection window past 2^31-1")
        self.recv_max = max(self.recv_max, self.recv_window)
        wire.write_window_update(self.out, 0, increment)

    def local_flow_control_window(self, stream_id: int) -> int:
        """How many bytes of DATA may go out on `stream_id` now (both windows)."""
        stream = self.streams.get(stream_id)
        if stream is None:
            raise StreamClosedError(stream_id)
        return min(stream.send_window, self.send_window)

    def remote_flow_control_window(self, stream_id: int) -> int:
        """How many bytes the client may still send on `stream_id` (both windows)."""
        stream = self.streams.get(stream_id)
        if stream is None:
            raise StreamClosedError(stream_id)
        return min(stream.recv_window, self.recv_window)

    @property
    def open_inbound_streams(self) -> int:
        return len(self.streams)

    def close_connection(self, error_code: int = 0, additional_data: bytes | None = None,
                         last_stream_id: int | None = None) -> None:
        """GOAWAY, and this connection reads and sends no more (h2's close_connection).
        A second call does nothing."""
        if self.terminated:
            return
        self.terminated = True
        last = self.highest_inbound_stream_id if last_stream_id is None else last_stream_id
        wire.write_goaway(self.out, last, error_code, additional_data or b"")

    def send_goaway(self, last_stream_id: int, error_code: int = 0) -> None:
        """A graceful GOAWAY (drain): streams up to `last_stream_id` go on; the server
        refuses later ones (RFC 9113 6.8)."""
        if not self.terminated:
            wire.write_goaway(self.out, last_stream_id, error_code)


def _content_length(fields: list[Header]) -> int:
    """A request's content-length (RFC 9113 8.1.1), -1 when it has none,
    MALFORMED_LENGTH when it is not a number (a malformed request)."""
    for name, value in fields:
        if name == b"content-length":
            if not value.isdigit():
                return MALFORMED_LENGTH
            return int(value)
    return -1
