"""HTTP/2 header blocks <-> what the chain reads and what an HTTP/1.1 upstream answers.

Pure functions. A request's header list (already checked by the `h2` library: pseudo
headers first and once, no connection-specific fields, lowercase names) becomes the
fields an `Exchange` carries; a response head block in HTTP/1.1 form (what the forwarder
relays) becomes an HTTP/2 header list. Local replies to gRPC callers are rewritten as
Envoy rewrites them: HTTP 200 with `grpc-status` mapped from the HTTP status, so a gRPC
client reads "unavailable" for a 503 and its retry policy can act on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tollway.proxy.core.grpc import http_to_grpc
from tollway.proxy.http1.parse import RESPONSE_HOP_BY_HOP

if TYPE_CHECKING:  # (hpack_fast imports hpack: loaded with the HTTP/2 server, not before)
    from tollway.proxy.h2.hpack_fast import CachedBlock

Header = tuple[bytes, bytes]

# Fields that never cross into HTTP/2 (RFC 9113 8.2.2) besides the HTTP/1 hop-by-hop set.
_H2_DROP = RESPONSE_HOP_BY_HOP | {b"host", b"http2-settings"}


class RequestHead:
    """A request's pseudo headers and regular fields, as the chain reads them.

    A plain (compiled) class, not a NamedTuple: building a NamedTuple runs its Python-level
    `__new__`, ~3,000 instructions a request on the compiled build."""

    __slots__ = ("authority", "content_length", "grpc", "headers", "method", "path", "raw",
                 "scheme", "size")

    def __init__(self, method: str, scheme: str, authority: str, path: str,
                 headers: dict[str, str], raw: list[Header], size: int,
                 content_length: int | None, grpc: bool) -> None:
        self.method = method
        self.scheme = scheme
        self.authority = authority
        self.path = path
        self.headers = headers  # lowercase name -> value, repeats joined
        self.raw = raw  # regular fields as received (no pseudo headers)
        self.size = size  # bytes of names and values (what a 431 limit counts)
        self.content_length = content_length
        self.grpc = grpc


class HeadError(ValueError):
    """A request head the proxy refuses (the message names the field)."""


class Malformed(HeadError):
    """A header list RFC 9113 8.2/8.3 calls malformed: a connection error (PROTOCOL_ERROR),
    as the `h2` library's inbound validation (which this replaces) answered it."""


# RFC 9113 8.2.2: connection-specific fields never appear in HTTP/2
_CONNECTION_SPECIFIC = frozenset((b"connection", b"proxy-connection", b"keep-alive",
                                  b"transfer-encoding", b"upgrade"))


# Regular field names already checked, with their str form (the header dict's key): a
# client sends the same names request after request. Bounded: cleared when full.
NAMES_MAX = 1024
_NAME_KEYS: dict[bytes, str] = {}


def _name_key(name: bytes) -> str:
    """A regular field name checked (RFC 9113 8.2.1), as the header dict's key."""
    key = _NAME_KEYS.get(name)
    if key is not None:
        return key
    _check_name(name)
    key = name.decode("latin-1")
    if len(name) <= 64:
        if len(_NAME_KEYS) >= NAMES_MAX:
            _NAME_KEYS.clear()
        _NAME_KEYS[name] = key
    return key


def _check_name(name: bytes) -> None:
    """RFC 9113 8.2.1: no uppercase, controls, SP, DEL or non-ASCII; ':' only first."""
    if not name:
        raise Malformed("a header name is empty")
    for i, c in enumerate(name):
        if 0x41 <= c <= 0x5A:
            raise Malformed(f"uppercase header name {name[:40]!r}")
        if c <= 0x20 or c >= 0x7F or (c == 0x3A and i):
            raise Malformed(f"illegal character {c:#04x} in header name {name[:40]!r}")


def _check_value(name: bytes, value: bytes) -> None:
    """RFC 9113 8.2.1: no NUL, CR or LF, no leading or trailing SP / HTAB."""
    if not value:
        return
    # int needles: CPython's `bytes in bytes` first tries the needle as an int and pays for
    # a formatted TypeError (~2,000 instructions a test); an int is one memchr
    if 0 in value or 13 in value or 10 in value:
        raise Malformed(f"illegal character in the value of {name[:40]!r}")
    if value[0] in (0x20, 0x09) or value[-1] in (0x20, 0x09):
        raise Malformed(f"the value of {name[:40]!r} has surrounding whitespace")


def request_head(fields: list[Header]) -> RequestHead:
    """Split an HTTP/2 request header list (bytes pairs) into what an Exchange needs,
    checking it as RFC 9113 8.2-8.3 asks (one pass: what `h2`'s inbound validation did
    in seven generator passes): `Malformed` for a header list the RFC forbids.

    Repeated fields are joined with "," (cookies with "; ", RFC 9113 8.2.3, and as one
    field in `raw`, what an HTTP/1.1 upstream must get), `:authority` wins over `host`
    (RFC 9113 8.3.1) and becomes the `host` the matchers read."""
    method = scheme = authority = path = ""
    has_method = has_path = has_scheme = has_authority = False
    host: bytes | None = None
    headers: dict[str, str] = {}
    raw: list[Header] = []
    cookies: list[bytes] = []
    size = 0
    regular = False
    for name, value in fields:
        size += len(name) + len(value) + 32  # HPACK's per-entry overhead (RFC 7541 4.1)
        if name != b"cookie":
            _check_value(name, value)
        elif 0 in value or 13 in value or 10 in value:  # h2 checks the joined
            raise Malformed("illegal character in the value of b'cookie'")  # crumbs' ends
        if name and name[0] == 0x3A:  # a pseudo header
            if regular:
                raise Malformed(f"pseudo header {name[:40]!r} after a regular field")
            text = value.decode("latin-1")
            if name == b":method" and not has_method:  # (an empty one counts: a second
                method, has_method = text, True  # :method after it is a duplicate)
            elif name == b":path" and not has_path:
                if not value:
                    raise Malformed("an empty :path")
                path, has_path = text, True
            elif name == b":authority" and not has_authority:
                authority, has_authority = text, True
            elif name == b":scheme" and not has_scheme:
                scheme, has_scheme = text, True
            elif name in (b":method", b":path", b":authority", b":scheme"):
                raise Malformed(f"duplicate pseudo header {name.decode('latin-1')}")
            else:
                raise Malformed(f"pseudo header {name[:40]!r} is not allowed in a request")
            continue
        key = _name_key(name)
        if name == b"cookie":  # h2 moved cookies behind the other fields before its
            cookies.append(value)  # order check: the same header lists pass here
            key = "cookie"
            prior = headers.get(key)
            val = value.decode("latin-1")
            headers[key] = val if prior is None else prior + "; " + val
            continue
        regular = True
        if name in _CONNECTION_SPECIFIC:
            raise Malformed(f"connection-specific header field {name.decode('latin-1')}")
        if name == b"te" and value.lower() != b"trailers":
            raise Malformed(f"te: {value[:40]!r} (only te: trailers is allowed)")
        if name == b"host":
            if host is not None:
                raise Malformed("more than one host header")
            host = value
        val = value.decode("latin-1")
        prior = headers.get(key)
        headers[key] = val if prior is None else prior + "," + val
        raw.append((name, value))
    if cookies:
        joined = cookies[0] if len(cookies) == 1 else b"; ".join(cookies)
        _check_value(b"cookie", joined)  # an empty crumb leaves "; " at an end: as h2 did
        raw.append((b"cookie", joined))
    if not method:
        raise Malformed("request has no :method")
    if method == "CONNECT":
        if has_path or has_scheme:
            raise Malformed("CONNECT with :scheme or :path")
    elif not has_path or not has_scheme:
        raise Malformed("request has no :path or :scheme")
    if not has_authority:
        if host is None:
            raise Malformed("request has neither :authority nor host")
        authority = host.decode("latin-1")
    elif host is not None and host != authority.encode("latin-1"):
        raise Malformed(f"host {host[:40]!r} does not match :authority")
    authority = authority.lower()
    headers["host"] = authority
    length: int | None = None
    cl = headers.get("content-length")
    if cl is not None:
        if not cl.isdigit():
            raise HeadError(f"content-length {cl!r} is not a number")
        length = int(cl)
    grpc = headers.get("content-type", "").startswith("application/grpc")
    return RequestHead(method, scheme, authority, path, headers, raw, size, length, grpc)


def request_head_cached(fields: list[Header], entry: CachedBlock) -> RequestHead:
    """`request_head` of a header list the connection's decoder answered from its cache
    (`entry`: a client repeating a request sends the same block, which decodes to the same
    fields): the checked head is kept on the entry, and it is the one returned - shared,
    so a caller that changes the header dict or the field list copies them first (the
    server does). It lives and dies with the entry, whose fields it was made from. Raises
    as `request_head` does (a refused list is never kept)."""
    note = entry.note
    if isinstance(note, RequestHead):
        return note
    head = request_head(fields)
    entry.note = head
    return head


# Memos of response_fields, line by line: an upstream repeats its header lines from one
# response to the next (server, content-type, content-length; date once a second), and a
# dict lookup is a tenth of partition/strip/lower. Bounded: cleared when full, only short
# lines kept (a line is public response metadata, shared by every connection as the
# encoder's output would be).
MEMO_MAX = 1024
MEMO_LINE = 128
_DROPPED: Header = (b"", b"")
_LINES: dict[bytes, Header] = {}
_STATUS: dict[bytes, tuple[int, bytes]] = {}


def _status_line(line: bytes) -> tuple[int, bytes]:
    hit = _STATUS.get(line)
    if hit is not None:
        return hit
    parts = line.split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise HeadError(f"not a response status line: {line[:40]!r}")
    found = (int(parts[1]), parts[1])
    if len(line) <= MEMO_LINE:
        if len(_STATUS) >= MEMO_MAX:
            _STATUS.clear()
        _STATUS[line] = found
    return found


def _field_line(line: bytes) -> Header:
    """A header line as an HTTP/2 field; `_DROPPED` (an empty name) for hop-by-hop
    fields and lines without a colon."""
    hit = _LINES.get(line)
    if hit is not None:
        return hit
    name, sep, value = line.partition(b":")
    field = _DROPPED
    if sep:
        lname = name.strip().lower()
        if lname not in _H2_DROP or lname == b"content-length":
            field = (lname, value.strip())
    if len(line) <= MEMO_LINE:
        if len(_LINES) >= MEMO_MAX:
            _LINES.clear()
        _LINES[line] = field
    return field


def response_fields(block: bytes) -> tuple[int, list[Header]]:
    """(status, HTTP/2 header list) from an HTTP/1.1 response head (status line and
    header lines, the blank line optional): names lowercased, hop-by-hop fields dropped."""
    lines = block.split(b"\r\n")
    status, code = _status_line(lines[0])
    out: list[Header] = [(b":status", code)]
    for line in lines[1:]:
        if line:
            field = _field_line(line)
            if field[0]:  # (not `is _DROPPED`: mypyc boxes tuples anew, identity is lost)
                out.append(field)
    return status, out


def local_reply_fields(
    status: int, body: bytes, grpc: bool, extra: tuple[tuple[str, str], ...] = ()
) -> tuple[list[Header], bytes]:
    """(headers, body) of a reply the proxy makes itself. To a gRPC caller it is a
    trailers-only response: `:status 200`, `grpc-status`, the text in `grpc-message`."""
    fields = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in extra]
    if any(n == b"grpc-status" for n, _ in fields):  # a gRPC answer already (fault abort)
        return [(b":status", b"%d" % status), *fields], b""
    if grpc:
        message = body.decode("utf-8", "replace") or f"HTTP status {status}"
        return [
            (b":status", b"200"),
            (b"content-type", b"application/grpc"),
            (b"grpc-status", b"%d" % http_to_grpc(status)),
            (b"grpc-message", _percent_encode(message).encode("latin-1")),
            *fields,
        ], b""
    return [
        (b":status", b"%d" % status),
        (b"content-type", b"text/plain"),
        (b"content-length", b"%d" % len(body)),
        *fields,
    ], body


def _percent_encode(text: str) -> str:
    """grpc-message is percent-encoded outside printable ASCII (gRPC over HTTP/2 spec)."""
    out = []
    for ch in text.encode("utf-8"):
        if 0x20 <= ch <= 0x7E and ch != 0x25:
            out.append(chr(ch))
        else:
            out.append(f"%{ch:02X}")
    return "".join(out)


_GRPC_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def grpc_timeout(value: str) -> float | None:
    """Seconds from a `grpc-timeout` header (1-8 digits and a unit: H M S m u n, the gRPC
    over HTTP/2 spec); None when malformed (then it is ignored, as Envoy ignores it)."""
    unit = _GRPC_UNITS.get(value[-1:])
    digits = value[:-1]
    if unit is None or not digits.isdigit() or len(digits) > 8:
        return None
    return int(digits) * unit
