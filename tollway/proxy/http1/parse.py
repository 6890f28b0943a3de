"""Request-side HTTP/1.1 rules the parser (httptools/llhttp) does not apply for us.

llhttp already refuses the classic smuggling shapes: Content-Length together with
Transfer-Encoding, duplicate Content-Length, a Transfer-Encoding whose last coding is not
chunked, obs-fold, bare LF, whitespace before the colon. What stays here is policy: size
limits (431), which headers never cross the proxy (hop-by-hop and `x-envoy-*`), and the
lowercase view of the headers the matchers read.
"""

from __future__ import annotations

# Headers that describe one connection, never forwarded (RFC 9110 §7.6.1), plus the
# framing headers the proxy re-emits itself.
HOP_BY_HOP: frozenset[bytes] = frozenset(
    (
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"content-length",
        b"expect",
        b"host",
    )
)

# Response headers dropped before the response goes downstream (framing is re-emitted).
RESPONSE_HOP_BY_HOP: frozenset[bytes] = frozenset(
    (
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"upgrade",
        b"proxy-authenticate",
        b"transfer-encoding",
        b"content-length",
    )
)


class Limits:
    """Downstream limits; Envoy-like defaults (60 KiB of headers, 100 headers).

    A plain slotted class, not a dataclass: `dataclasses` pulls `inspect` and `ast` into
    every sidecar's memory."""

    __slots__ = (
        "drain_timeout",
        "header_timeout",
        "idle_timeout",
        "max_head_bytes",
        "max_headers",
        "max_pipelined",
        "retry_buffer_bytes",
        "stream_idle_timeout",
    )

    def __init__(
        self,
        *,
        max_head_bytes: int = 60 * 1024,
        max_headers: int = 100,
        header_timeout: float = 10.0,
        idle_timeout: float = 300.0,
        max_pipelined: int = 32,
        retry_buffer_bytes: int = 64 * 1024,
        drain_timeout: float = 10.0,
        stream_idle_timeout: float = 300.0,
    ) -> None:
        self.max_head_bytes = max_head_bytes
        self.max_headers = max_headers
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.max_pipelined = max_pipelined
        self.retry_buffer_bytes = retry_buffer_bytes
        self.drain_timeout = drain_timeout
        # an HTTP/2 stream with no progress either way (Envoy's stream_idle_timeout, 5 min)
        self.stream_idle_timeout = stream_idle_timeout


def header_view(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Lowercase name -> value; repeated headers joined with "," (what matchers read)."""
    view: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        val = value.decode("latin-1")
        old = view.get(key)
        view[key] = val if old is None else old + "," + val
    return view


def is_untrusted(lname: bytes) -> bool:
    """`x-envoy-*` headers set by a caller are not trusted (Envoy strips them at the edge)."""
    return lname.startswith(b"x-envoy-")


def split_absolute(target: str) -> tuple[str, str] | None:
    """`http://host:port/path?q` -> ("host:port", "/path?q"); None for origin-form."""
    low = target[:8].lower()
    if low.startswith("http://"):
        rest = target[7:]
    elif low.startswith("https://"):
        rest = target[8:]
    else:
        return None
    slash = rest.find("/")
    if slash < 0:
        q = rest.find("?")
        if q < 0:
            return rest.lower(), "/"
        return rest[:q].lower(), "/" + rest[q:]
    return rest[:slash].lower(), rest[slash:]
