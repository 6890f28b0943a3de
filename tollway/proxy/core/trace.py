"""Request id and trace context: keep what the client sent, create what is missing.

x-request-id is kept (or created, uuid4 form). W3C `traceparent`, B3 multi-header
`x-b3-*` and B3 single-header `b3` are understood (in that order of preference) and
propagated with a fresh span id for this hop (the caller's span becomes the parent), or
created. One trace id is shared by every format so a trace started in either shows up in
all; `b3` is sent back only to a caller that used it. Randomness comes from the injected
`random.Random`.

When this proxy reports spans (`spans=True`) and the trace is sampled, the hop is two
spans as Envoy's with `spawn_upstream_span`: a SERVER span (parent: the caller's span)
and a CLIENT span (parent: the server span) whose id is the one sent upstream. The ids
come back as `SpanIds`; nothing extra is drawn or built for an unsampled request.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from typing import Final

_HEX: Final = frozenset("0123456789abcdef")
# A fixed, linear pattern: the stdlib engine is fine here (user regexes go to RE2), and
# measured faster than slicing plus a set-based hex check.
_TRACEPARENT: Final = re.compile(
    r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[0-9a-zA-Z_.=,;/+-]*)?"
)
_ZERO_TRACE: Final = "0" * 32
_ZERO_SPAN: Final = "0" * 16
# RFC 4122 variant: the top two bits of the clock_seq_hi nibble are 0b10.
_VARIANT: Final = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}
# Bits of the 320-bit draw (little-endian bytes) holding hex digits 12 and 16 of the
# request id: digit 12 becomes 4, the top two bits of digit 16 become 10 (RFC 4122).
_UUID_KEEP: Final = ~((0xF << 52) | (0b11 << 70)) & ((1 << 320) - 1)
_UUID_SET: Final = (0x4 << 52) | (0b10 << 70)
# Names `headers_to_set` may emit, for callers that drop incoming copies in one pass.
HEADER_NAMES: Final = frozenset({"x-request-id", "traceparent", "x-b3-traceid", "x-b3-spanid",
                                 "x-b3-parentspanid", "x-b3-sampled", "b3"})
HEADER_NAMES_BYTES: Final = frozenset(n.encode() for n in HEADER_NAMES)


# (trace id, server span id, caller's span id or None, client span id = the id sent upstream)
SpanIds = tuple[str, str, str | None, str]


def _is_hex(s: str, length: int) -> bool:
    return len(s) == length and _HEX.issuperset(s)


class TraceContext:
    """The ids this hop forwards; `headers_to_set()` lists them as request headers."""

    __slots__ = ("b3", "b3_single", "parent_span_id", "request_id", "request_id_created",
                 "sampled", "server_span_id", "span_id", "trace_id")  # fmt: skip

    def __init__(
        self,
        request_id: str,
        trace_id: str,
        span_id: str,
        parent_span_id: str | None,
        sampled: bool,
        *,
        request_id_created: bool = False,
        b3: bool = True,
        b3_single: bool = False,
        server_span_id: str | None = None,
    ) -> None:
        self.request_id = request_id
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_span_id = parent_span_id
        self.sampled = sampled
        self.request_id_created = request_id_created
        self.b3 = b3
        self.b3_single = b3_single
        self.server_span_id = server_span_id  # set when this hop reports its spans

    @property
    def span_ids(self) -> SpanIds | None:
        """This hop's span ids when it reports spans for a sampled trace."""
        if self.server_span_id is None:
            return None
        return (self.trace_id, self.server_span_id, self.parent_span_id, self.span_id)

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"

    def headers_to_set(self) -> list[tuple[str, str]]:
        """Headers to set (replacing any incoming value) on the upstream request."""
        out = [("x-request-id", self.request_id), ("traceparent", self.traceparent)]
        parent = self.server_span_id or self.parent_span_id
        flag = "1" if self.sampled else "0"
        if self.b3:
            out.append(("x-b3-traceid", self.trace_id))
            out.append(("x-b3-spanid", self.span_id))
            if parent is not None:
                out.append(("x-b3-parentspanid", parent))
            out.append(("x-b3-sampled", flag))
        if self.b3_single:
            out.append(("b3", f"{self.trace_id}-{self.span_id}-{flag}"))
        return out


def prepare(
    headers: Mapping[str, str], rng: random.Random, *, sample_rate: float = 0.01,
    spans: bool = False,
) -> TraceContext:
    """Build this hop's context from the request headers (lowercase names).

    `sample_rate` (Istio's default 1%) only decides for a trace this hop starts; an
    incoming sampling decision is kept. `spans`: this hop reports spans (module doc)."""
    rid = headers.get("x-request-id")
    created = not rid
    # One draw for everything this hop may need: request id, trace id, span id.
    h = rng.randbytes(40).hex()
    if not rid:
        rid = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"
    span = h[64:80]
    if span == _ZERO_SPAN:
        span = "0" * 15 + "1"
    single = "b3" in headers
    w3c = _parse_traceparent(headers.get("traceparent"))
    parent: str | None = None
    if w3c is not None:
        trace_id, parent, sampled = w3c
    else:
        b3 = _parse_b3(headers)
        if b3 is None and single:
            b3 = _parse_b3_single(headers["b3"])
        b3_trace = b3[0] if b3 is not None else None
        if b3 is not None and b3_trace is not None:
            trace_id, parent = b3_trace, b3[1]
            sampled = b3[2] if b3[2] is not None else rng.random() < sample_rate
        else:
            trace_id = h[32:64]
            if trace_id == _ZERO_TRACE:
                trace_id = "0" * 31 + "1"
            decided = b3[2] if b3 is not None else None
            sampled = decided if decided is not None else rng.random() < sample_rate
    server = _server_span(rng) if spans and sampled else None
    return TraceContext(rid, trace_id, span, parent, sampled, request_id_created=created,
                        b3_single=single, server_span_id=server)


def _server_span(rng: random.Random) -> str:
    """A fresh non-zero span id for this hop's SERVER span."""
    sid = rng.getrandbits(64)
    return f"{sid or 1:016x}"


def upstream_lines(
    headers: dict[str, str], rng: random.Random, sample_rate: float = 0.01,
    spans: bool = False,
) -> tuple[str, bytes, SpanIds | None]:
    """(request id, `prepare(...).headers_to_set()` as request header lines, span ids).

    The hot path's form of `prepare`: the same draws from `rng`, the same values in the
    same order, rendered with one format and no TraceContext or pair list in between
    (~1 us less per request). `rng` must be a `random.Random`: its `randbytes(40)` is
    `getrandbits(320).to_bytes(40, "little")`, called here directly to save a frame.
    A property test holds the two functions equal. The span ids are None unless `spans`
    and the trace is sampled: a proxy that reports no spans pays one test of a bool."""
    rid = headers.get("x-request-id")
    # The draw with prepare()'s uuid4 nibbles set by two masks (version 4 at hex digit
    # 12, variant 10xx at digit 16), then hexed in three pieces: no per-digit slicing.
    # One hex() of the whole draw, then str slices (a slice is cheaper than a method call):
    # bytes [a:b] are hex digits [2a:2b].
    h = ((rng.getrandbits(320) & _UUID_KEEP) | _UUID_SET).to_bytes(40, "little").hex()
    if not rid:
        rid = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
    span = h[64:80]
    if span == _ZERO_SPAN:
        span = "0" * 15 + "1"
    parent: str | None = None
    single = "b3" in headers
    tp = headers.get("traceparent")
    w3c = _parse_traceparent(tp) if tp else None
    if w3c is not None:
        trace_id, parent, sampled = w3c
    else:
        b3 = _parse_b3(headers) if "x-b3-traceid" in headers else None
        if b3 is None and single:
            b3 = _parse_b3_single(headers["b3"])
        if b3 is None:  # the common case: no context came, a new trace
            trace_id = h[32:64]
            if trace_id == _ZERO_TRACE:
                trace_id = "0" * 31 + "1"
            sampled = rng.random() < sample_rate
        else:
            b3_trace, b3_parent, b3_sampled = b3
            if b3_trace is not None:
                trace_id, parent = b3_trace, b3_parent
            else:  # `b3: 0|1|d` alone: a new trace with the caller's decision
                trace_id = h[32:64]
                if trace_id == _ZERO_TRACE:
                    trace_id = "0" * 31 + "1"
            sampled = b3_sampled if b3_sampled is not None else rng.random() < sample_rate
    flag = "1" if sampled else "0"
    ids: SpanIds | None = None
    if spans and sampled:
        server = _server_span(rng)
        ids = (trace_id, server, parent, span)
        parent = server  # the sent span's parent is this hop's SERVER span
    if parent is None:
        text = (f"x-request-id: {rid}\r\ntraceparent: 00-{trace_id}-{span}-0{flag}\r\n"
                f"x-b3-traceid: {trace_id}\r\nx-b3-spanid: {span}\r\nx-b3-sampled: {flag}\r\n")
    else:
        text = (f"x-request-id: {rid}\r\ntraceparent: 00-{trace_id}-{span}-0{flag}\r\n"
                f"x-b3-traceid: {trace_id}\r\nx-b3-spanid: {span}\r\n"
                f"x-b3-parentspanid: {parent}\r\nx-b3-sampled: {flag}\r\n")
    if single:
        text += f"b3: {trace_id}-{span}-{flag}\r\n"
    return rid, text.encode("latin-1"), ids


def _parse_traceparent(value: str | None) -> tuple[str, str, bool] | None:
    """(trace id, parent span id, sampled) from a valid traceparent (W3C: version ff is
    invalid, version 00 has exactly four fields, all-zero ids are invalid)."""
    if not value:
        return None
    m = _TRACEPARENT.fullmatch(value.strip().lower())
    if m is None:
        return None
    version, trace_id, parent, flags, extra = m.groups()
    if version == "ff" or (version == "00" and extra):
        return None
    if trace_id == _ZERO_TRACE or parent == _ZERO_SPAN:
        return None
    return trace_id, parent, bool(int(flags, 16) & 1)


_B3 = tuple[str | None, str | None, bool | None]


def _parse_b3(headers: Mapping[str, str]) -> _B3 | None:
    """(trace id as 32 hex, caller span, sampled or None) from x-b3-* headers."""
    raw = headers.get("x-b3-traceid")
    if not raw:
        return None
    trace_id = raw.strip().lower()
    if _is_hex(trace_id, 16):
        trace_id = "0" * 16 + trace_id
    if not _is_hex(trace_id, 32) or trace_id == _ZERO_TRACE:
        return None
    span = headers.get("x-b3-spanid", "").strip().lower()
    parent = span if _is_hex(span, 16) else None
    flag = headers.get("x-b3-sampled")
    if headers.get("x-b3-flags") == "1":
        sampled: bool | None = True
    elif flag is None:
        sampled = None
    else:
        sampled = flag.strip().lower() in ("1", "true", "d")
    return trace_id, parent, sampled


def _parse_b3_single(value: str) -> _B3 | None:
    """(trace id as 32 hex or None, caller span, sampled or None) from B3's single header
    `b3: {TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]]` or `b3: {SamplingState}`
    (openzipkin/b3-propagation). A sampling state alone keeps its decision for a new trace;
    anything malformed is ignored as a whole, as a missing header."""
    parts = value.strip().lower().split("-")
    if len(parts) == 1:
        flag = parts[0]
        return (None, None, flag in ("1", "d")) if flag in ("0", "1", "d") else None
    if len(parts) > 4:
        return None
    trace_id, span = parts[0], parts[1]
    if _is_hex(trace_id, 16):
        trace_id = "0" * 16 + trace_id
    if not _is_hex(trace_id, 32) or trace_id == _ZERO_TRACE or not _is_hex(span, 16) \
            or span == _ZERO_SPAN:
        return None
    sampled: bool | None = None
    if len(parts) >= 3:
        if parts[2] not in ("0", "1", "d"):
            return None
        sampled = parts[2] in ("1", "d")
    if len(parts) == 4 and not _is_hex(parts[3], 16):
        return None
    return trace_id, span, sampled
