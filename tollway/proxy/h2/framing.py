"""An HTTP/1.1-form request (what the router builds) as an HTTP/2 request, and back [pure].

The router renders every upstream request once, as HTTP/1.1 bytes (request line, header
lines, body chunk-framed when its length is unknown); the HTTP/2 upstream channel reads
that form back: `request_fields` turns the head into a header list (pseudo headers,
lowercase names, connection-specific fields dropped, `te: trailers` for gRPC as the gRPC
protocol asks), and `Dechunker` unframes a chunked body. `response_block` renders an
HTTP/2 response's header list as the HTTP/1.1 block the Attempt relays.
"""

from __future__ import annotations

from typing import Final

from tollway.proxy.http1.write import reason

Header = tuple[bytes, bytes]

NONE: Final = 0  # no body: END_STREAM with the headers
LENGTH: Final = 1  # content-length bytes follow as they are
CHUNKED: Final = 2  # chunk-framed: unframe, END_STREAM at the last chunk

_DROP = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
                   b"upgrade", b"host", b"te", b"http2-settings"))


def request_fields(head: bytes, scheme: bytes) -> tuple[list[Header], int, int]:
    """(header list, body mode, content length) of an HTTP/1.1 request head (up to and
    without the blank line)."""
    lines = head.split(b"\r\n")
    method, _, rest = lines[0].partition(b" ")
    path = rest.rpartition(b" ")[0] or rest
    authority = b""
    fields: list[Header] = []
    mode = NONE
    length = 0
    grpc = False
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip()
        if name == b"host":
            authority = value
            continue
        if name == b"transfer-encoding":
            if value.lower().endswith(b"chunked"):
                mode = CHUNKED
            continue
        if name in _DROP:
            continue
        if name == b"content-length":
            if mode != CHUNKED and value.isdigit():
                length = int(value)
                mode = LENGTH if length else NONE
        elif name == b"content-type" and value.startswith(b"application/grpc"):
            grpc = True
        fields.append((name, value))
    pseudo = [(b":method", method), (b":scheme", scheme), (b":authority", authority),
              (b":path", path)]
    if grpc:
        fields.append((b"te", b"trailers"))
    return pseudo + fields, mode, length


def response_block(fields: list[Header]) -> tuple[int, bytes]:
    """(status, HTTP/1.1 head block: status line and header lines, each ending in CRLF)."""
    status = 0
    lines = []
    for name, value in fields:
        if name == b":status":
            status = int(value)
        elif name[:1] != b":":
            lines.append(b"%s: %s\r\n" % (name, value))
    # the standard phrase: an HTTP/1.1 client is shown this line as it is
    return status, b"HTTP/1.1 %d %s\r\n" % (status, reason(status)) + b"".join(lines)


class ChunkError(ValueError):
    """A chunked body that does not parse (the router made it: a bug, not an attacker)."""


class Dechunker:
    """Incremental chunked-body decoder: `feed(data)` -> (pieces, finished)."""

    __slots__ = ("buf", "done", "left", "state")

    def __init__(self) -> None:
        self.buf = b""
        self.left = 0
        self.state = 0  # 0 size line, 1 data, 2 CRLF after data, 3 trailer lines
        self.done = False

    def feed(self, data: bytes) -> tuple[list[bytes], bool]:
        out: list[bytes] = []
        buf = self.buf + data
        while buf and not self.done:
            if self.state == 1:
                piece = buf[: self.left]
                buf = buf[len(piece):]
                self.left -= len(piece)
                if piece:
                    out.append(piece)
                if not self.left:
                    self.state = 2
                continue
            end = buf.find(b"\r\n")
            if end < 0:
                break
            line, buf = buf[:end], buf[end + 2:]
            if self.state == 0:
                size = line.split(b";", 1)[0].strip()
                try:
                    self.left = int(size, 16)
                except ValueError as exc:
                    raise ChunkError(f"bad chunk size {size[:20]!r}") from exc
                self.state = 1 if self.left else 3
            elif self.state == 2:
                self.state = 0
            elif not line:  # the blank line after the (optional) trailers
                self.done = True
        self.buf = buf
        return out, self.done
