"""Bytes for the wire: status lines, local replies, chunk framing, request heads.

Pure and allocation-light: everything here runs per request or per body chunk, so it
builds one bytes object with `%`-formatting or `b"".join` and nothing more.
"""

from __future__ import annotations

from http import HTTPStatus

_REASONS: dict[int, bytes] = {s.value: s.phrase.encode() for s in HTTPStatus}

CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"


def reason(status: int) -> bytes:
    """The standard reason phrase for `status` (b"Unknown" for codes without one)."""
    return _REASONS.get(status, b"Unknown")


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (never call it with empty data: that ends the body)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def local_reply(
    status: int,
    body: bytes,
    *,
    close: bool,
    head_only: bool = False,
    headers: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """A complete response the proxy writes itself (404 NR, 503 UO, 400 ...)."""
    extra = b"".join(b"%s: %s\r\n" % (n.encode("latin-1"), v.encode("latin-1")) for n, v in headers)
    head = b"HTTP/1.1 %d %s\r\ncontent-length: %d\r\ncontent-type: text/plain\r\n%s%s\r\n" % (
        status,
        reason(status),
        len(body),
        extra,
        b"connection: close\r\n" if close else b"",
    )
    if head_only or status in (204, 304) or status < 200:
        return head
    return head + body
