"""Response heads from an upstream: how the body is framed downstream, and the head bytes.

Pure functions over the raw head block the upstream sent (status line and header lines,
already validated by llhttp, ending in CRLF). The common case passes the block through
byte for byte; only hop-by-hop lines are cut out, and the head is rebuilt only when header
operations apply or the framing must change (HTTP/1.0 client, read-until-close upstream).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Final

from tollway.proxy.http1 import write
from tollway.proxy.http1.parse import RESPONSE_HOP_BY_HOP

PASS: Final = 0  # body bytes as they come (content-length framing)
CHUNK: Final = 1  # re-frame each body piece as a chunk
RAW_CLOSE: Final = 2  # unframed body, the connection closes at the end (HTTP/1.0 client)
NONE: Final = 3  # no body

HeaderOp = Callable[[list[tuple[str, str]]], list[tuple[str, str]]]

_PATCH_NAMES = RESPONSE_HOP_BY_HOP - {b"content-length", b"transfer-encoding"}
_FRAMING = frozenset((b"content-length", b"transfer-encoding"))
_NONE_FOUND: frozenset[bytes] = frozenset()
_NO_BODY_STATUS: Final[frozenset[int]] = frozenset((204, 304))
NO_BODY_STATUS: Final[frozenset[int]] = _NO_BODY_STATUS
# one regex pass finds the framing and hop-by-hop header names in the raw block
_SPECIAL = re.compile(
    rb"\r\n(" + b"|".join(sorted(RESPONSE_HOP_BY_HOP)) + rb")[ \t]*:", re.IGNORECASE
)
_PATCH_LINES = re.compile(
    rb"\r\n(?:" + b"|".join(sorted(_PATCH_NAMES)) + rb")[ \t]*:[^\r\n]*", re.IGNORECASE
)


def special_names(block: bytes) -> frozenset[bytes]:
    """Lowercase framing / hop-by-hop header names present in the block."""
    found = _SPECIAL.findall(block)
    return frozenset(m.lower() for m in found) if found else _NONE_FOUND


# Memo of `analyse`, keyed by the raw block. An upstream answering the same resource sends
# the same head bar the Date line, which changes once a second: at any real rate nearly
# every head is a hit (a dict lookup instead of two regex passes, ~1.5 us). Bounded in
# entries and in block size, and cleared whole when full, so varied heads cost one insert.
_ANALYSED: dict[bytes, tuple[frozenset[bytes], bytes, bool]] = {}
_ANALYSED_MAX = 128
_ANALYSED_BLOCK_MAX = 1024


def analyse(block: bytes) -> tuple[frozenset[bytes], bytes, bool]:
    """(`special_names(block)`, the block with its non-framing hop-by-hop lines cut,
    whether the body is Content-Length framed: `mode_for` gives PASS when a body is due)."""
    hit = _ANALYSED.get(block)
    if hit is not None:
        return hit
    found = special_names(block)
    cut = _PATCH_LINES.sub(b"", block) if found - _FRAMING else block
    res = (found, cut, b"transfer-encoding" not in found and b"content-length" in found)
    if len(block) <= _ANALYSED_BLOCK_MAX:
        if len(_ANALYSED) >= _ANALYSED_MAX:
            _ANALYSED.clear()
        _ANALYSED[block] = res
    return res


def mode_for(status: int, found: frozenset[bytes], *, head_request: bool, http11: bool) -> int:
    """How the response body is relayed to this client."""
    if head_request or status in _NO_BODY_STATUS or status < 200:
        return NONE
    if b"transfer-encoding" in found or b"content-length" not in found:
        return CHUNK if http11 else RAW_CLOSE
    return PASS


def head_bytes(
    status: int,
    block: bytes,
    found: frozenset[bytes],
    mode: int,
    tail: bytes,
    ops: Sequence[HeaderOp] | None,
    cut: bytes | None = None,
) -> bytes:
    """The head to write downstream (`tail` ends it: CRLF, or connection: close + CRLF).

    `cut`: the block with its non-framing hop-by-hop lines removed, when the caller has it
    already (`analyse`)."""
    chunked = b"transfer-encoding" in found
    if ops is None and not (chunked and mode == RAW_CLOSE) and not (mode == CHUNK and not chunked):
        if cut is not None:
            return cut + tail
        if not (found - _FRAMING):
            return block + tail  # the upstream's head, byte for byte
        return _PATCH_LINES.sub(b"", block) + tail  # only hop-by-hop lines dropped
    return rebuild(status, block, mode, tail, ops or ())


def rebuild(status: int, block: bytes, mode: int, tail: bytes, ops: Sequence[HeaderOp]) -> bytes:
    """Re-serialise the head: header operations applied, framing re-emitted for `mode`."""
    lines = block.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    phrase = parts[2] if len(parts) > 2 else write.reason(status)
    out = [b"HTTP/1.1 %d %s\r\n" % (status, phrase)]
    pairs: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(b":")
        lname = name.strip().lower()
        if lname in RESPONSE_HOP_BY_HOP and not (lname == b"content-length" and mode == PASS):
            continue
        pairs.append((name.strip().decode("latin-1"), value.strip().decode("latin-1")))
    for op in ops:
        pairs = op(pairs)
    for name_s, value_s in pairs:
        out.append(b"%s: %s\r\n" % (name_s.encode("latin-1"), value_s.encode("latin-1")))
    if mode == CHUNK:
        out.append(b"transfer-encoding: chunked\r\n")
    out.append(tail)
    return b"".join(out)


def relay_head(
    status: int,
    block: bytes,
    ops: Sequence[HeaderOp] | None,
    *,
    head_request: bool,
    http11: bool,
    keep_alive: bool,
    upgrade: bool,
) -> tuple[bytes, int, bool]:
    """(head bytes, body mode, keep-alive) for relaying an upstream head to a client:
    what `listener.Downstream.response_head` does inline on the hot path, as one call for
    other downstreams (an HTTP/2 stream reads the head in this form)."""
    if status == 101:
        return block + b"\r\n", NONE, keep_alive
    found, cut, length_framed = analyse(block)
    if head_request or status in _NO_BODY_STATUS or status < 200:
        mode = NONE
    elif length_framed:
        mode = PASS
    else:
        mode = CHUNK if http11 else RAW_CLOSE
    if mode == RAW_CLOSE or upgrade:  # a refused upgrade ends the connection
        keep_alive = False
    tail = b"\r\n" if keep_alive else b"connection: close\r\n\r\n"
    if ops is None and mode in (PASS, NONE):
        return cut + tail, mode, keep_alive
    return head_bytes(status, block, found, mode, tail, ops, cut), mode, keep_alive


def header_view(block: bytes) -> dict[str, str]:
    """Lowercase header view of a raw head (only on the retry path)."""
    out: dict[str, str] = {}
    for line in block.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            out[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return out
