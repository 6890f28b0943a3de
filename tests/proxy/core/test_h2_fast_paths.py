"""What the HTTP/2 downstream does itself instead of asking `h2`/`hpack`, checked against
them: the stateless HPACK encoder and the decoder cache (hpack_fast), and the one-pass
request header checks (headers.request_head) against h2's inbound validation."""

from __future__ import annotations

import hpack
import pytest
from h2.config import H2Configuration
from h2.exceptions import ProtocolError
from h2.utilities import HeaderValidationFlags, normalize_inbound_headers, validate_headers
from hypothesis import given, settings
from hypothesis import strategies as st

from tollway.proxy.h2 import headers as hh
from tollway.proxy.h2.hpack_fast import CACHE_MAX, CachingDecoder, StaticEncoder, indexed_only

STATIC_NAMES = [n for n, _ in hpack.table.HeaderTable.STATIC_TABLE]
names = st.one_of(
    st.sampled_from(STATIC_NAMES),
    st.binary(min_size=1, max_size=40),
    st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=300).map(str.encode),
)
values = st.one_of(st.sampled_from([b"", b"200", b"GET", b"/", b"gzip, deflate", b"http"]),
                   st.binary(max_size=300))
header_lists = st.lists(st.tuples(names, values), max_size=30)


@given(st.lists(header_lists, min_size=1, max_size=5), st.data())
@settings(max_examples=200, deadline=None)
def test_the_static_encoder_decodes_as_encoded_by_hpack(blocks: list, data: st.DataObject) -> None:
    enc, dec = StaticEncoder(), hpack.Decoder()
    for fields in blocks:
        if data.draw(st.booleans()):  # the peer changed SETTINGS_HEADER_TABLE_SIZE
            enc.header_table_size = data.draw(st.integers(0, 65536))
        block = enc.encode(fields)
        assert dec.decode(block, raw=True) == fields
        assert len(dec.header_table.dynamic_entries) == 0  # never the dynamic table


def test_the_encoder_starts_with_a_table_size_update_and_repeats_it_after_a_change() -> None:
    enc = StaticEncoder()
    assert enc.encode([(b":status", b"200")]) == b"\x20\x88"
    assert enc.encode([(b":status", b"200")]) == b"\x88"
    enc.header_table_size = 0
    assert enc.encode([(b":status", b"404")]) == b"\x20\x8d"


@given(st.lists(st.lists(st.tuples(st.sampled_from([b"a", b"b", b"user-agent", b":path"]),
                                   st.sampled_from([b"1", b"2", b"/x"])), max_size=6),
                min_size=1, max_size=40),
       st.lists(st.booleans(), min_size=40, max_size=40))
@settings(max_examples=200, deadline=None)
def test_the_caching_decoder_reads_what_hpack_reads(blocks: list, resize: list[bool]) -> None:
    """Blocks from a real hpack encoder (dynamic table in use: repeated fields turn into
    one-byte indexed blocks, evictions move indexes), read by hpack and by the cache."""
    enc, plain, cached = hpack.Encoder(), hpack.Decoder(), CachingDecoder()
    for i, fields in enumerate(blocks):
        if resize[i]:  # a smaller table evicts entries: the cache must not answer stale
            enc.header_table_size = 64 if i % 2 else 4096
        block = enc.encode(fields)
        assert cached.decode(block, raw=True) == plain.decode(block, raw=True)
    assert len(cached.cache) <= CACHE_MAX


def test_the_cache_serves_only_table_neutral_blocks_and_stays_bounded() -> None:
    enc, dec = hpack.Encoder(), CachingDecoder()
    fields = [(b":method", b"GET"), (b"x-a", b"1")]
    first = enc.encode(fields)
    assert not indexed_only(first)  # x-a: 1 is inserted
    dec.decode(first, raw=True)
    again = enc.encode(fields)
    assert indexed_only(again)
    assert dec.decode(again, raw=True) == fields and again in dec.cache
    for i in range(CACHE_MAX + 10):
        dec.decode(bytes((0x81 + i % 60, 0x82)), raw=True)
    assert len(dec.cache) <= CACHE_MAX
    dec.max_header_list_size = 10  # a new limit: nothing decoded under the old one is kept
    assert not dec.cache
    with pytest.raises(hpack.OversizedHeaderListError):
        dec.decode(again, raw=True)


def test_an_hpack_bomb_still_stops_inside_hpack() -> None:
    enc, dec = hpack.Encoder(), CachingDecoder()
    dec.max_header_list_size = 1000
    block = enc.encode([(b"x-big", b"v" * 2000)])
    with pytest.raises(hpack.OversizedHeaderListError):
        dec.decode(block, raw=True)


# ---------------------------------------------------------------- request header checks
_FLAGS = HeaderValidationFlags(is_client=False, is_trailer=False, is_response_header=False,
                               is_push_promise=False)
_CONFIG = H2Configuration(client_side=False)


def _h2_refuses(fields: list[tuple[bytes, bytes]]) -> bool:
    try:
        list(validate_headers(normalize_inbound_headers(fields, _FLAGS), _FLAGS))
    except ProtocolError:
        return True
    return False


def _ours_refuses(fields: list[tuple[bytes, bytes]]) -> bool:
    try:
        hh.request_head(fields)
    except hh.Malformed:
        return True
    except hh.HeadError:  # refused by us for another reason (a 400): not malformed
        return False
    return False


pseudo = st.sampled_from([b":method", b":path", b":scheme", b":authority", b":status",
                          b":bogus", b":Path"])
field_names = st.one_of(pseudo, st.sampled_from([
    b"host", b"te", b"connection", b"keep-alive", b"upgrade", b"transfer-encoding",
    b"cookie", b"x-a", b"X-A", b"x a", b"x:a", b"", b"content-type", b"\xff"]))
field_values = st.sampled_from([b"GET", b"CONNECT", b"/", b"", b"http", b"h:1", b"H:1",
                                b"trailers", b"gzip", b" lead", b"trail\t", b"a\r\nb",
                                b"nul\x00", b"x"])
base = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"h:1"), (b":path", b"/")]


@given(st.lists(st.tuples(field_names, field_values), max_size=8), st.integers(0, 4),
       st.integers(0, 4))
@settings(max_examples=600, deadline=None)
def test_request_checks_refuse_exactly_what_h2_refuses(extra: list, keep: int, at: int) -> None:
    """`h2`'s inbound validation (what the server ran before) and request_head's checks
    agree on every header list: malformed for one is malformed for the other."""
    fields = base[:keep] + extra
    fields = fields[:at] + base[keep:] + fields[at:] if keep < 4 else fields
    assert _ours_refuses(fields) == _h2_refuses(fields), fields


def _as_tuple(head: hh.RequestHead) -> tuple:
    return (head.method, head.scheme, head.authority, head.path, head.headers, head.raw,
            head.size, head.content_length, head.grpc)


@given(st.lists(st.tuples(field_names, field_values), max_size=8), st.integers(0, 4))
@settings(max_examples=300, deadline=None)
def test_a_head_kept_on_the_decoders_cache_entry_is_what_request_head_answers(
        extra: list, keep: int) -> None:
    """A repeated block's head comes from its cache entry: the same head (or the same
    refusal) as request_head, every time, and a refused list leaves nothing on the entry.
    (The server copies the shared head's dict and list for each exchange: the live test
    below.)"""
    from tollway.proxy.h2.hpack_fast import CachedBlock
    fields = base[:keep] + extra + base[keep:]
    entry = CachedBlock(list(fields))
    try:
        expected = _as_tuple(hh.request_head(list(fields)))
    except hh.HeadError as exc:
        for _ in range(2):
            with pytest.raises(type(exc)):
                hh.request_head_cached(list(fields), entry)
        assert entry.note is None
        return
    first = hh.request_head_cached(list(fields), entry)
    assert _as_tuple(first) == expected and entry.note is first
    assert hh.request_head_cached(list(fields), entry) is first  # kept, shared


def test_cookies_are_one_field_for_an_http1_upstream() -> None:
    head = hh.request_head([*base, (b"cookie", b"a=1"), (b"x", b"1"), (b"cookie", b"b=2")])
    assert (b"cookie", b"a=1; b=2") in head.raw and head.headers["cookie"] == "a=1; b=2"


@given(st.lists(st.tuples(names, values), min_size=1, max_size=30))
@settings(max_examples=100, deadline=None)
def test_the_encoder_memo_answers_what_encoding_answers(fields: list) -> None:
    """Encoded fields are remembered; a remembered one is the same bytes, and the memo
    stays within its bound."""
    from tollway.proxy.h2 import hpack_fast
    first = StaticEncoder().encode(fields)
    again = StaticEncoder().encode(fields)  # (from the memo where the values are short)
    assert first == again and hpack.Decoder().decode(first, raw=True) == fields
    assert len(hpack_fast._MEMO) <= hpack_fast.MEMO_MAX


def test_response_field_memos_are_bounded_and_agree_with_parsing() -> None:
    block = (b"HTTP/1.1 200 OK\r\nServer: x\r\nConnection: keep-alive\r\nno colon\r\n"
             b"Content-Length: 5\r\nX-A:  spaced  \r\n")
    want = (200, [(b":status", b"200"), (b"server", b"x"), (b"content-length", b"5"),
                  (b"x-a", b"spaced")])
    assert hh.response_fields(block) == want
    assert hh.response_fields(block) == want  # from the memo
    for i in range(hh.MEMO_MAX + 50):
        hh.response_fields(b"HTTP/1.1 %d X\r\nx-n: %d\r\n" % (200 + i % 300, i))
    assert len(hh._LINES) <= hh.MEMO_MAX and len(hh._STATUS) <= hh.MEMO_MAX
    with pytest.raises(hh.HeadError):
        hh.response_fields(b"garbage\r\n")


def test_response_heads_are_memoised_with_their_block_and_bounded() -> None:
    from tollway.proxy.h2 import server
    from tollway.proxy.h2.hpack_fast import encode_fields
    block = b"HTTP/1.1 404 Not Found\r\nServer: x\r\nKeep-Alive: timeout=5\r\n"
    status, fields, encoded = server.response_head(block)
    assert (status, fields) == hh.response_fields(block) and encoded == encode_fields(fields)
    assert hpack.Decoder().decode(encoded, raw=True) == fields
    assert server.response_head(block)[2] is encoded  # the memo
    for i in range(server.HEADS_MAX + 20):
        server.response_head(b"HTTP/1.1 200 OK\r\nx-n: %d\r\n" % i)
    assert len(server._HEADS) <= server.HEADS_MAX


def test_a_memoised_block_gets_the_table_size_update_its_connection_owes() -> None:
    """A block encoded once is sent on any connection: the size update that connection's
    encoder owes (first block, or after the client changed SETTINGS_HEADER_TABLE_SIZE)
    is put in front of it there."""
    import h2.config
    import h2.connection

    from tollway.proxy.h2.conn import ServerConnection
    from tollway.proxy.h2.hpack_fast import encode_fields
    server = ServerConnection(100, 65535, 65536)
    server.initiate_connection()
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                  header_encoding=None))
    client.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    block = encode_fields([(b":status", b"200"), (b"x-a", b"1")])
    for sid in (1, 3):
        client.send_headers(sid, [(b":method", b"GET"), (b":path", b"/"),
                                  (b":scheme", b"http"), (b":authority", b"a")],
                            end_stream=True)
        server.receive_data(client.data_to_send())
        server.send_header_block(sid, block, end_stream=True)
        out = server.data_to_send()
        assert out[9:10] == (b"\x20" if sid == 1 else block[:1])
        events = client.receive_data(out)
        assert list(events[0].headers) == [(b":status", b"200"), (b"x-a", b"1")]


_LINES = [b"content-length: 5", b"content-length: 0", b"transfer-encoding: chunked",
          b"connection: close", b"keep-alive: timeout=5", b"server: app", b"x-a: 1",
          b"Content-Type: text/plain", b"date: Sat, 05 Dec 2026 10:00:00 GMT", b"bad line",
          b"x-b:", b"upgrade: h2c"]


@given(st.sampled_from([100, 101, 200, 204, 206, 304, 404, 503]),
       st.lists(st.sampled_from(_LINES), max_size=6), st.sampled_from([b"OK", b"", b"x y"]))
@settings(max_examples=300, deadline=None)
def test_a_remembered_relayed_head_is_what_relaying_it_makes(
        status: int, lines: list[bytes], phrase: bytes) -> None:
    """server.relayed_head (the common case's memo, by the upstream's block) answers what
    relay_head then response_head answer for that block, the first time and again."""
    from tollway.proxy.h2 import server as h2server
    from tollway.proxy.http1 import response

    block = b"\r\n".join([b"HTTP/1.1 %d %s" % (status, phrase), *lines])
    head, mode, keep = response.relay_head(status, block, None, head_request=False,
                                           http11=False, keep_alive=True, upgrade=False)
    try:
        _, fields, hblock = h2server.response_head(head)
    except hh.HeadError:
        assert h2server.relayed_head(status, block) is None
        return
    for _ in range(2):
        got = h2server.relayed_head(status, block)
        assert got is not None
        assert (got.length, got.mode, got.keep_alive, got.fields, got.block) == (
            len(head), mode, keep, fields, hblock)
