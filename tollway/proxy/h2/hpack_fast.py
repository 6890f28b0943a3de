"""HPACK for the downstream HTTP/2 server: a stateless encoder and a decoder fast path.

The `h2` library keeps the connection's state machine, framing and flow control; it calls
`conn.encoder.encode(headers)` and `conn.decoder.decode(block, raw=True)` for header
blocks, and both were a fifth of a request's cost in pure-Python `hpack`
(bench/h2_hot_path.py, docs/performance.md "HTTP/2"). These two objects take their place:

- `StaticEncoder` never uses the dynamic table, as nginx's HTTP/2 encoder does: a field
  that is in the static table whole is indexed, any other is a literal *without
  indexing* (its name indexed when the static table has it), no Huffman. Output depends
  on nothing but the header list, so encoding is one pass of byte concatenation, and
  responses leak nothing through a shared compression context. Each block after a
  change of the peer's SETTINGS_HEADER_TABLE_SIZE (and the first) starts with a dynamic
  table size update to 0, the size this encoder uses.
- `CachingDecoder` wraps `hpack.Decoder` (which keeps the dynamic table, Huffman, and
  the size limits that stop HPACK bombs). A block made only of one-byte indexed fields
  cannot change the table, so its decoding is remembered until a block that might
  change the table goes through the library; a client sending the same request fields
  (indexed after its first request, as h2load, curl and gRPC clients do) is answered
  from the cache. Bounded: at most `CACHE_MAX` blocks, each within the header list
  limit it was decoded under.
"""

from __future__ import annotations

from typing import Final

import hpack

Header = tuple[bytes, bytes]

CACHE_MAX: Final = 64

_FULL: dict[tuple[bytes, bytes], int] = {}
_NAME: dict[bytes, int] = {}
for _i, (_n, _v) in enumerate(hpack.table.HeaderTable.STATIC_TABLE, 1):
    _NAME.setdefault(_n, _i)
    if _v:
        _FULL.setdefault((_n, _v), _i)


_BYTE: Final = [bytes((i,)) for i in range(256)]  # one-byte strings, built once

# Encoded fields by (name, value): a response's fields repeat from one response to the
# next (status, server, content-type, most lengths), and the encoding depends on nothing
# else. Bounded: cleared when full, short values only.
MEMO_MAX: Final = 1024
MEMO_VALUE: Final = 64
_MEMO: dict[tuple[bytes, bytes], bytes] = {}


def _integer(value: int, prefix_bits: int, first: int) -> bytes:
    """RFC 7541 5.1: `value` with an N-bit prefix; `first` holds the bits above it."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return _BYTE[first | value]
    out = bytearray(_BYTE[first | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_field(name: bytes, value: bytes) -> bytes:
    """One field: indexed when the static table has it whole, else a literal without
    indexing (RFC 7541 6.2.2), its name indexed when the static table has the name."""
    key = (name, value)
    hit = _MEMO.get(key)
    if hit is not None:
        return hit
    full = _FULL.get(key)
    if full is not None:
        out = _BYTE[0x80 | full]
    else:
        index = _NAME.get(name)
        if index is not None:
            head = _BYTE[index] if index < 15 else _integer(index, 4, 0)
        else:
            head = b"\x00" + _integer(len(name), 7, 0) + name
        out = head + _integer(len(value), 7, 0) + value
    if len(value) <= MEMO_VALUE:
        if len(_MEMO) >= MEMO_MAX:
            _MEMO.clear()
        _MEMO[key] = out
    return out


class StaticEncoder:
    """What `h2` asks of its encoder (see module doc)."""

    def __init__(self) -> None:
        self.size_update = True  # the first block says: this encoder's table is 0 bytes
        self.table_size = 4096

    @property
    def header_table_size(self) -> int:
        return self.table_size

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        self.table_size = value
        self.size_update = True

    def encode(self, headers: list[Header], huffman: bool = True) -> bytes:
        if self.size_update:
            self.size_update = False
            return b"\x20" + encode_fields(headers)
        return encode_fields(headers)

    def prefix(self, block: bytes) -> bytes:
        """A block from `encode_fields` as this connection must send it: with the table
        size update first when one is due."""
        if self.size_update:
            self.size_update = False
            return b"\x20" + block
        return block


def encode_fields(headers: list[Header]) -> bytes:
    """A header block with nothing connection-specific in it: what `StaticEncoder`
    sends, less the table size update (`StaticEncoder.prefix` adds it when due)."""
    return b"".join([encode_field(name, value) for name, value in headers])


def indexed_only(block: bytes) -> bool:
    """Every byte one indexed field with an index of 1-126: a block that reads the
    table and never changes it."""
    if not block:
        return False
    for b in block:
        if b < 0x81 or b == 0xFF:
            return False
    return True


class CachedBlock:
    """A table-neutral block's fields, and what a reader made of them (`note`: the
    server's checked request head), which stays right exactly as long as the entry: both
    go when the cache is cleared (the table may have changed under the block)."""

    __slots__ = ("fields", "note")

    def __init__(self, fields: list[Header]) -> None:
        self.fields = fields
        self.note: object | None = None


class CachingDecoder:
    """`hpack.Decoder` behind a cache of table-neutral blocks (see module doc)."""

    def __init__(self) -> None:
        self.inner = hpack.Decoder()
        self.cache: dict[bytes, CachedBlock] = {}
        self.hit: CachedBlock | None = None  # the entry that answered the last block

    @property
    def max_header_list_size(self) -> int:
        return int(self.inner.max_header_list_size)

    @max_header_list_size.setter
    def max_header_list_size(self, value: int) -> None:
        self.inner.max_header_list_size = value
        self.cache.clear()

    @property
    def max_allowed_table_size(self) -> int:
        return int(self.inner.max_allowed_table_size)

    @max_allowed_table_size.setter
    def max_allowed_table_size(self, value: int) -> None:
        self.inner.max_allowed_table_size = value
        self.cache.clear()

    @property
    def header_table_size(self) -> int:
        return int(self.inner.header_table_size)

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        self.inner.header_table_size = value
        self.cache.clear()

    def decode(self, data: bytes, raw: bool = False) -> list[Header]:
        cache = self.cache
        hit = cache.get(data)
        if hit is not None:
            self.hit = hit
            return list(hit.fields)
        self.hit = None
        if not indexed_only(data):
            cache.clear()  # the table may change under this block
            return list(self.inner.decode(data, raw=raw))
        fields: list[Header] = list(self.inner.decode(data, raw=raw))
        if raw:  # h2 always asks for bytes; the cache holds only those
            if len(cache) >= CACHE_MAX:
                cache.clear()
            cache[data] = CachedBlock(fields)
        return list(fields)
