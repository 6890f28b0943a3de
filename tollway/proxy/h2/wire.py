"""HTTP/2 frames on the wire: an incremental reader and the writers a server needs [pure].

The frame layer of RFC 9113 (sections 4 and 6) and nothing above it: no streams, no
windows, no HPACK. `conn.ServerConnection` keeps those; this module turns bytes into one
frame at a time and frames into bytes, compiled with mypyc (tollway/native.py).

Why not hyperframe: it builds a Frame object, a flags set and a memoryview per frame and
serialises through the same objects; on the proxy's hot path (one HEADERS in, HEADERS and
DATA out per request) that was a third of the `h2` library's cost (docs/performance.md,
HTTP/2). Here the reader keeps the current frame in its own fields (no object per frame)
and reads the 9-byte header by indexing; the writers append to one output bytearray.

The reader makes the checks that need nothing but the frame (section 4-6): the length
against our SETTINGS_MAX_FRAME_SIZE, as soon as the header arrives (a client cannot make
us buffer more than one frame of it); stream id 0 where it is forbidden or required;
the fixed lengths of PRIORITY, RST_STREAM, SETTINGS, PING, WINDOW_UPDATE and GOAWAY;
padding; PUSH_PROMISE from a client. Every failure is a `FrameError` carrying the RFC's
error code: a connection error. A frame type it does not know comes out with its `kind`
and no payload, bounded by the size limit like any other: the connection ignores it
(section 4.1) unless it interrupts a header block (section 5.5).
"""

from __future__ import annotations

from struct import Struct
from typing import Final

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# frame types (RFC 9113 section 6)
DATA: Final = 0
HEADERS: Final = 1
PRIORITY: Final = 2
RST_STREAM: Final = 3
SETTINGS: Final = 4
PUSH_PROMISE: Final = 5
PING: Final = 6
GOAWAY: Final = 7
WINDOW_UPDATE: Final = 8
CONTINUATION: Final = 9

# flags
END_STREAM: Final = 0x1
ACK: Final = 0x1
END_HEADERS: Final = 0x4
PADDED: Final = 0x8
PRIORITY_FLAG: Final = 0x20

# error codes (RFC 9113 section 7)
NO_ERROR: Final = 0
PROTOCOL_ERROR: Final = 1
INTERNAL_ERROR: Final = 2
FLOW_CONTROL_ERROR: Final = 3
SETTINGS_TIMEOUT: Final = 4
STREAM_CLOSED: Final = 5
FRAME_SIZE_ERROR: Final = 6
REFUSED_STREAM: Final = 7
CANCEL: Final = 8
COMPRESSION_ERROR: Final = 9
CONNECT_ERROR: Final = 10
ENHANCE_YOUR_CALM: Final = 11
INADEQUATE_SECURITY: Final = 12
HTTP_1_1_REQUIRED: Final = 13

# settings (RFC 9113 section 6.5.2)
HEADER_TABLE_SIZE: Final = 1
ENABLE_PUSH: Final = 2
MAX_CONCURRENT_STREAMS: Final = 3
INITIAL_WINDOW_SIZE: Final = 4
MAX_FRAME_SIZE: Final = 5
MAX_HEADER_LIST_SIZE: Final = 6
ENABLE_CONNECT_PROTOCOL: Final = 8

DEFAULT_MAX_FRAME_SIZE: Final = 16384
MAX_MAX_FRAME_SIZE: Final = (1 << 24) - 1
MAX_WINDOW: Final = (1 << 31) - 1

_HEAD = Struct(">IBI")  # (length << 8 | type), flags, stream id: the 9-byte frame header
_HEAD2 = Struct(">IBIIBI")  # two of them (HEADERS and DATA of one response)
_SETTING = Struct(">HI")
_U32 = Struct(">I")
_U32x2 = Struct(">II")


class FrameError(Exception):
    """A frame the RFC makes a connection error of: GOAWAY with `code`."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Reader:
    """Frames out of a byte stream, one `next()` at a time (see module doc).

    After `next()` returns True the frame is in the fields: `kind`, `flags`, `sid`,
    `payload` (padding and HEADERS' priority fields already removed), `flow` (the whole
    payload length: what a DATA frame counts against flow control), and for HEADERS with
    the PRIORITY flag or PRIORITY frames `depends_on`, `weight` (1-256), `exclusive`.
    A partial frame waits in `rest` for the next `feed`.
    """

    __slots__ = ("data", "depends_on", "exclusive", "flags", "flow", "kind", "max_frame_size",
                 "payload", "pos", "preface", "rest", "sid", "weight")

    def __init__(self, preface: bool = True) -> None:
        self.data = b""
        self.pos = 0
        self.rest = b""
        self.preface = preface  # the client's connection preface is still to come
        self.max_frame_size = DEFAULT_MAX_FRAME_SIZE
        self.kind = 0
        self.flags = 0
        self.sid = 0
        self.flow = 0
        self.payload = b""
        self.depends_on = 0
        self.weight = 16
        self.exclusive = False

    def feed(self, data: bytes) -> None:
        """Bytes read from the socket; frames come out of `next()`."""
        if self.rest:
            self.data = self.rest + data
            self.rest = b""
        else:
            self.data = data
        self.pos = 0

    def next(self) -> bool:
        """Parse the next whole frame into the fields: False when none is complete (what
        is left waits for the next `feed`). Raises FrameError."""
        data = self.data
        pos = self.pos
        end = len(data)
        if self.preface:
            if end - pos < 24:
                if PREFACE.startswith(data[pos:]):
                    self._keep(pos)
                    return False
                raise FrameError(PROTOCOL_ERROR, "the connection did not start with the "
                                 "HTTP/2 client preface")
            if data[pos:pos + 24] != PREFACE:
                raise FrameError(PROTOCOL_ERROR, "the connection did not start with the "
                                 "HTTP/2 client preface")
            pos += 24
            self.preface = False
        while True:
            if end - pos < 9:
                self._keep(pos)
                return False
            length = (data[pos] << 16) | (data[pos + 1] << 8) | data[pos + 2]
            if length > self.max_frame_size:
                raise FrameError(FRAME_SIZE_ERROR, f"a frame of {length} bytes is over "
                                 f"SETTINGS_MAX_FRAME_SIZE ({self.max_frame_size})")
            if end - pos < 9 + length:
                self._keep(pos)
                return False
            kind = data[pos + 3]
            flags = data[pos + 4]
            sid = (((data[pos + 5] & 0x7F) << 24) | (data[pos + 6] << 16)
                   | (data[pos + 7] << 8) | data[pos + 8])
            start = pos + 9
            pos = start + length
            self.pos = pos
            self.kind = kind
            self.flags = flags
            self.sid = sid
            self.flow = length
            if kind > CONTINUATION:  # an extension type: its payload is never read (the
                return True  # connection ignores it, but not inside a header block: 5.5)
            self._check(kind, flags, sid, length, data, start, pos)
            return True

    def _keep(self, pos: int) -> None:
        """The partial frame from `pos` waits for more bytes."""
        self.rest = self.data[pos:] if pos < len(self.data) else b""
        self.data = b""
        self.pos = 0

    def _check(self, kind: int, flags: int, sid: int, length: int, data: bytes,
               start: int, end: int) -> None:
        """Section 6's per-type rules; the payload without padding or priority."""
        if kind <= HEADERS:  # DATA or HEADERS
            if not sid:
                raise FrameError(PROTOCOL_ERROR, f"{_NAMES[kind]} on stream 0")
            if flags & PADDED:
                if not length:
                    raise FrameError(FRAME_SIZE_ERROR, f"padded {_NAMES[kind]} without "
                                     "a pad length")
                pad = data[start]
                start += 1
                if pad > end - start:  # pad length >= the payload's (RFC 9113 6.1)
                    raise FrameError(PROTOCOL_ERROR, f"{_NAMES[kind]} padding ({pad}) is "
                                     "not shorter than the payload")
                end -= pad
            if kind == HEADERS and flags & PRIORITY_FLAG:
                if end - start < 5:
                    raise FrameError(FRAME_SIZE_ERROR, "HEADERS too short for its priority")
                dep = ((data[start] << 24) | (data[start + 1] << 16)
                       | (data[start + 2] << 8) | data[start + 3])
                self.exclusive = bool(dep & 0x80000000)
                self.depends_on = dep & 0x7FFFFFFF
                self.weight = data[start + 4] + 1
                start += 5
            self.payload = data[start:end]
        elif kind == CONTINUATION:
            if not sid:
                raise FrameError(PROTOCOL_ERROR, "CONTINUATION on stream 0")
            self.payload = data[start:end]
        elif kind == SETTINGS:
            if sid:
                raise FrameError(PROTOCOL_ERROR, "SETTINGS on a stream")
            if flags & ACK:
                if length:
                    raise FrameError(FRAME_SIZE_ERROR, "a SETTINGS ACK with a payload")
            elif length % 6:
                raise FrameError(FRAME_SIZE_ERROR, "a SETTINGS payload not a multiple "
                                 "of 6 bytes")
            self.payload = data[start:end]
        elif kind == WINDOW_UPDATE:
            if length != 4:
                raise FrameError(FRAME_SIZE_ERROR, "a WINDOW_UPDATE not 4 bytes long")
            self.flow = ((data[start] & 0x7F) << 24) | (data[start + 1] << 16) | (
                data[start + 2] << 8) | data[start + 3]  # the increment
        elif kind == RST_STREAM:
            if not sid:
                raise FrameError(PROTOCOL_ERROR, "RST_STREAM on stream 0")
            if length != 4:
                raise FrameError(FRAME_SIZE_ERROR, "a RST_STREAM not 4 bytes long")
            self.flow = (data[start] << 24) | (data[start + 1] << 16) | (
                data[start + 2] << 8) | data[start + 3]  # the error code
        elif kind == PING:
            if sid:
                raise FrameError(PROTOCOL_ERROR, "PING on a stream")
            if length != 8:
                raise FrameError(FRAME_SIZE_ERROR, "a PING not 8 bytes long")
            self.payload = data[start:end]
        elif kind == PRIORITY:
            if not sid:
                raise FrameError(PROTOCOL_ERROR, "PRIORITY on stream 0")
            if length != 5:
                raise FrameError(FRAME_SIZE_ERROR, "a PRIORITY not 5 bytes long")
            dep = ((data[start] << 24) | (data[start + 1] << 16)
                   | (data[start + 2] << 8) | data[start + 3])
            self.exclusive = bool(dep & 0x80000000)
            self.depends_on = dep & 0x7FFFFFFF
            self.weight = data[start + 4] + 1
        elif kind == GOAWAY:
            if sid:
                raise FrameError(PROTOCOL_ERROR, "GOAWAY on a stream")
            if length < 8:
                raise FrameError(FRAME_SIZE_ERROR, "a GOAWAY shorter than 8 bytes")
            self.payload = data[start:end]
        else:  # PUSH_PROMISE
            raise FrameError(PROTOCOL_ERROR, "PUSH_PROMISE from a client")


_NAMES: Final = ("DATA", "HEADERS")


def parse_settings(payload: bytes) -> list[tuple[int, int]]:
    """A SETTINGS payload's (identifier, value) pairs, in order."""
    return [_SETTING.unpack_from(payload, i) for i in range(0, len(payload), 6)]


def parse_goaway(payload: bytes) -> tuple[int, int, bytes]:
    """(last stream id, error code, debug data) of a GOAWAY payload."""
    last, code = _U32x2.unpack_from(payload, 0)
    return last & 0x7FFFFFFF, code, payload[8:]


# ------------------------------------------------------------------ writers
def head(length: int, kind: int, flags: int, sid: int) -> bytes:
    """A 9-byte frame header."""
    return _HEAD.pack((length << 8) | kind, flags, sid)


def write_headers(out: list[bytes], sid: int, block: bytes, end_stream: bool,
                  max_frame_size: int) -> None:
    """HEADERS, and CONTINUATIONs when the block is longer than the peer's frame size;
    END_HEADERS on the last of them, END_STREAM on the HEADERS."""
    flags = END_STREAM if end_stream else 0
    n = len(block)
    if n <= max_frame_size:
        out.append(_HEAD.pack((n << 8) | HEADERS, flags | END_HEADERS, sid))
        out.append(block)
        return
    out.append(_HEAD.pack((max_frame_size << 8) | HEADERS, flags, sid))
    out.append(block[:max_frame_size])
    pos = max_frame_size
    while pos < n:
        piece = block[pos:pos + max_frame_size]
        pos += len(piece)
        out.append(_HEAD.pack((len(piece) << 8) | CONTINUATION,
                              END_HEADERS if pos >= n else 0, sid))
        out.append(piece)


def write_headers_data(out: list[bytes], sid: int, block: bytes, data: bytes,
                       end_stream: bool) -> None:
    """HEADERS (the whole block: the caller keeps it within the peer's frame size) and
    one DATA frame, END_STREAM on the DATA when asked: both frame headers in one pack."""
    heads = _HEAD2.pack((len(block) << 8) | HEADERS, END_HEADERS, sid,
                        (len(data) << 8) | DATA, END_STREAM if end_stream else 0, sid)
    out.append(heads[:9])
    out.append(block)
    out.append(heads[9:])
    out.append(data)


def write_data(out: list[bytes], sid: int, data: bytes, end_stream: bool) -> None:
    """One DATA frame (the caller keeps it within the window and the frame size)."""
    out.append(_HEAD.pack((len(data) << 8) | DATA, END_STREAM if end_stream else 0, sid))
    out.append(data)


def write_settings(out: list[bytes], settings: list[tuple[int, int]]) -> None:
    out.append(_HEAD.pack((6 * len(settings) << 8) | SETTINGS, 0, 0))
    for ident, value in settings:
        out.append(_SETTING.pack(ident, value))


def write_settings_ack(out: list[bytes]) -> None:
    out.append(_SETTINGS_ACK)


def write_ping_ack(out: list[bytes], opaque: bytes) -> None:
    out.append(_PING_ACK_HEAD)
    out.append(opaque)


def write_goaway(out: list[bytes], last_sid: int, code: int, debug: bytes = b"") -> None:
    out.append(_HEAD.pack(((8 + len(debug)) << 8) | GOAWAY, 0, 0))
    out.append(_U32x2.pack(last_sid, code))
    out.append(debug)


def write_rst_stream(out: list[bytes], sid: int, code: int) -> None:
    out.append(_HEAD.pack((4 << 8) | RST_STREAM, 0, sid))
    out.append(_U32.pack(code))


def write_window_update(out: list[bytes], sid: int, increment: int) -> None:
    out.append(_HEAD.pack((4 << 8) | WINDOW_UPDATE, 0, sid))
    out.append(_U32.pack(increment))


_SETTINGS_ACK: Final = _HEAD.pack(SETTINGS, ACK, 0)
_PING_ACK_HEAD: Final = _HEAD.pack((8 << 8) | PING, ACK, 0)
