"""The HTTP/2 frame codec (tollway/proxy/h2/wire.py): what the writers write, the reader
reads back, whatever the read boundaries; what hyperframe (the library's codec) writes,
the reader reads the same; and every frame-level rule of RFC 9113 sections 4-6 is a
connection error with the RFC's code."""

from __future__ import annotations

import itertools
import struct

import pytest
from hyperframe.frame import (
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from tollway.proxy.h2 import wire

sids = st.integers(1, 2**31 - 1)


def raw(kind: int, flags: int, sid: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes((kind, flags)) + struct.pack(
        ">I", sid) + payload


def read_all(data: bytes, cuts: list[int], preface: bool = False,
             max_frame_size: int = 16384) -> list[tuple[int, int, int, bytes, int]]:
    """(kind, flags, sid, payload, flow) of every frame in `data`, fed in pieces."""
    r = wire.Reader(preface=preface)
    r.max_frame_size = max_frame_size
    out = []
    bounds = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for a, b in itertools.pairwise(bounds):
        r.feed(data[a:b])
        while r.next():
            out.append((r.kind, r.flags, r.sid, r.payload, r.flow))
    assert not r.rest and not r.data  # nothing left over
    return out


frame_specs = st.one_of(
    st.tuples(st.just("headers"), sids, st.binary(max_size=40000), st.booleans(),
              st.integers(16384, 20000)),
    st.tuples(st.just("data"), sids, st.binary(max_size=16384), st.booleans()),
    st.tuples(st.just("settings"), st.lists(st.tuples(st.integers(0, 0xFFFF),
                                                      st.integers(0, 2**32 - 1)), max_size=8)),
    st.tuples(st.just("settings_ack")),
    st.tuples(st.just("ping_ack"), st.binary(min_size=8, max_size=8)),
    st.tuples(st.just("goaway"), st.integers(0, 2**31 - 1), st.integers(0, 2**32 - 1),
              st.binary(max_size=50)),
    st.tuples(st.just("rst"), sids, st.integers(0, 2**32 - 1)),
    st.tuples(st.just("window"), st.integers(0, 2**31 - 1), st.integers(1, 2**31 - 1)),
)


@given(st.lists(frame_specs, max_size=12), st.lists(st.integers(0, 10**6), max_size=20))
@settings(max_examples=150, deadline=None)
def test_what_the_writers_write_the_reader_reads_back_across_any_read_boundaries(
        specs: list, cuts: list[int]) -> None:
    out: list[bytes] = []
    expected: list = []
    for spec in specs:
        kind = spec[0]
        if kind == "headers":
            _, sid, block, end, size = spec
            wire.write_headers(out, sid, block, end, size)
            expected.append(("headers", sid, block, end))
        elif kind == "data":
            _, sid, payload, end = spec
            wire.write_data(out, sid, payload, end)
            expected.append((wire.DATA, wire.END_STREAM if end else 0, sid, payload, len(payload)))
        elif kind == "settings":
            wire.write_settings(out, spec[1])
            expected.append(("settings", spec[1]))
        elif kind == "settings_ack":
            wire.write_settings_ack(out)
            expected.append((wire.SETTINGS, wire.ACK, 0, b"", 0))
        elif kind == "ping_ack":
            wire.write_ping_ack(out, spec[1])
            expected.append((wire.PING, wire.ACK, 0, spec[1], 8))
        elif kind == "goaway":
            wire.write_goaway(out, spec[1], spec[2], spec[3])
            expected.append(("goaway", spec[1], spec[2], spec[3]))
        elif kind == "rst":
            wire.write_rst_stream(out, spec[1], spec[2])
            expected.append(("rst", spec[1], spec[2]))
        else:
            wire.write_window_update(out, spec[1], spec[2])
            expected.append(("window", spec[1], spec[2]))
    frames = read_all(b"".join(out), cuts, max_frame_size=20000)
    got: list = []
    i = 0
    while i < len(frames):
        kind, flags, sid, payload, flow = frames[i]
        i += 1
        if kind == wire.HEADERS:  # a block: HEADERS, then CONTINUATIONs to END_HEADERS
            block, end = payload, bool(flags & wire.END_STREAM)
            while not flags & wire.END_HEADERS:
                nkind, flags, nsid, more, _ = frames[i]
                i += 1
                assert (nkind, nsid) == (wire.CONTINUATION, sid)
                block += more
            got.append(("headers", sid, block, end))
            continue
        if kind == wire.SETTINGS and not flags:
            got.append(("settings", wire.parse_settings(payload)))
        elif kind == wire.GOAWAY:
            got.append(("goaway", *wire.parse_goaway(payload)))
        elif kind == wire.RST_STREAM:
            got.append(("rst", sid, flow))
        elif kind == wire.WINDOW_UPDATE:
            got.append(("window", sid, flow))
        else:
            got.append((kind, flags, sid, payload, flow))
    assert got == expected


@given(sids, st.binary(max_size=3000), st.booleans(), st.integers(16384, 20000))
@settings(max_examples=100, deadline=None)
def test_headers_split_into_continuations_at_the_peer_frame_size(
        sid: int, block: bytes, end: bool, size: int) -> None:
    block = block * 20
    out: list[bytes] = []
    wire.write_headers(out, sid, block, end, size)
    frames = read_all(b"".join(out), [], max_frame_size=size)
    assert frames[0][0] == wire.HEADERS
    assert bool(frames[0][1] & wire.END_STREAM) == end
    assert all(f[0] == wire.CONTINUATION and not f[1] & wire.END_STREAM for f in frames[1:])
    assert [bool(f[1] & wire.END_HEADERS) for f in frames] == [False] * (len(frames) - 1) + [True]
    assert all(len(f[3]) <= size for f in frames)
    assert b"".join(f[3] for f in frames) == block


hyper_frames = st.one_of(
    st.builds(lambda sid, data, pad, end: _data(sid, data, pad, end),
              sids, st.binary(max_size=2000), st.one_of(st.none(), st.integers(0, 255)),
              st.booleans()),
    st.builds(lambda sid, data, pad, prio: _headers(sid, data, pad, prio),
              sids, st.binary(max_size=2000), st.one_of(st.none(), st.integers(0, 255)),
              st.one_of(st.none(), st.tuples(st.integers(0, 2**31 - 1), st.integers(1, 256),
                                             st.booleans()))),
    st.builds(lambda sid, dep, w, ex: _priority(sid, dep, w, ex),
              sids, st.integers(0, 2**31 - 1), st.integers(1, 256), st.booleans()),
)


def _data(sid: int, data: bytes, pad: int | None, end: bool) -> tuple:
    f = DataFrame(sid)
    f.data = data
    if pad is not None:
        f.flags.add("PADDED")
        f.pad_length = pad
    if end:
        f.flags.add("END_STREAM")
    return f, (wire.DATA, sid, data)


def _headers(sid: int, data: bytes, pad: int | None, prio: tuple | None) -> tuple:
    f = HeadersFrame(sid)
    f.data = data
    f.flags.add("END_HEADERS")
    if pad is not None:
        f.flags.add("PADDED")
        f.pad_length = pad
    if prio is not None:
        f.flags.add("PRIORITY")
        f.depends_on, weight, f.exclusive = prio
        f.stream_weight = weight - 1
    return f, (wire.HEADERS, sid, data)


def _priority(sid: int, dep: int, weight: int, exclusive: bool) -> tuple:
    f = PriorityFrame(sid)
    f.depends_on, f.stream_weight, f.exclusive = dep, weight - 1, exclusive
    return f, (wire.PRIORITY, sid, (dep, weight, exclusive))


@given(st.lists(hyper_frames, min_size=1, max_size=8), st.lists(st.integers(0, 10**5)))
@settings(max_examples=150, deadline=None)
def test_the_reader_reads_what_hyperframe_writes(frames: list, cuts: list[int]) -> None:
    """Padding and priority fields are stripped as hyperframe's parser strips them, and a
    DATA frame's flow-controlled length counts the padding."""
    blob = b"".join(f.serialize() for f, _ in frames)
    r = wire.Reader(preface=False)
    seen = []
    bounds = sorted({c % (len(blob) + 1) for c in cuts} | {0, len(blob)})
    for a, b in itertools.pairwise(bounds):
        r.feed(blob[a:b])
        while r.next():
            if r.kind == wire.PRIORITY:
                seen.append((r.kind, r.sid, (r.depends_on, r.weight, r.exclusive), r.flow))
            else:
                seen.append((r.kind, r.sid, r.payload, r.flow))
    want = []
    for f, (kind, sid, payload) in frames:
        flow = len(f.serialize()) - 9
        want.append((kind, sid, payload, flow))
    assert seen == want


def test_the_preface_is_required_and_may_arrive_in_pieces() -> None:
    r = wire.Reader()
    settings_frame = raw(wire.SETTINGS, 0, 0, b"")
    blob = wire.PREFACE + settings_frame
    for i in range(len(blob)):
        r.feed(blob[i:i + 1])
        if i < len(blob) - 1:
            assert not r.next()
    assert r.next() and r.kind == wire.SETTINGS
    bad = wire.Reader()
    bad.feed(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(wire.FrameError) as err:
        bad.next()
    assert err.value.code == wire.PROTOCOL_ERROR


def test_an_oversized_frame_is_refused_from_its_header_alone() -> None:
    """A client cannot make the reader buffer more than one frame: the length is judged
    as soon as the 9-byte header is in."""
    r = wire.Reader(preface=False)
    r.feed(raw(wire.DATA, 0, 1, b"")[:3].replace(b"\0\0\0", b"\xff\xff\xff") + b"\0\0\0\0\0\x01")
    with pytest.raises(wire.FrameError) as err:
        r.next()
    assert err.value.code == wire.FRAME_SIZE_ERROR
    ok = wire.Reader(preface=False)
    ok.feed(raw(wire.DATA, 0, 1, b"x" * 16384))
    assert ok.next() and len(ok.payload) == 16384


@pytest.mark.parametrize(("frame", "code"), [
    (raw(wire.DATA, 0, 0, b"x"), wire.PROTOCOL_ERROR),
    (raw(wire.HEADERS, 4, 0, b"\x82"), wire.PROTOCOL_ERROR),
    (raw(wire.DATA, wire.PADDED, 1, b"\x05abcd"), wire.PROTOCOL_ERROR),  # pad >= payload
    (raw(wire.DATA, wire.PADDED, 1, b""), wire.FRAME_SIZE_ERROR),
    (raw(wire.HEADERS, wire.PADDED | 4, 1, b"\x01"), wire.PROTOCOL_ERROR),
    (raw(wire.HEADERS, wire.PRIORITY_FLAG | 4, 1, b"\0\0\0"), wire.FRAME_SIZE_ERROR),
    (raw(wire.PRIORITY, 0, 0, b"\0" * 5), wire.PROTOCOL_ERROR),
    (raw(wire.PRIORITY, 0, 1, b"\0" * 4), wire.FRAME_SIZE_ERROR),
    (raw(wire.RST_STREAM, 0, 0, b"\0" * 4), wire.PROTOCOL_ERROR),
    (raw(wire.RST_STREAM, 0, 1, b"\0" * 5), wire.FRAME_SIZE_ERROR),
    (raw(wire.SETTINGS, 0, 1, b""), wire.PROTOCOL_ERROR),
    (raw(wire.SETTINGS, 0, 0, b"\0" * 5), wire.FRAME_SIZE_ERROR),
    (raw(wire.SETTINGS, wire.ACK, 0, b"\0" * 6), wire.FRAME_SIZE_ERROR),
    (raw(wire.PING, 0, 1, b"\0" * 8), wire.PROTOCOL_ERROR),
    (raw(wire.PING, 0, 0, b"\0" * 7), wire.FRAME_SIZE_ERROR),
    (raw(wire.GOAWAY, 0, 1, b"\0" * 8), wire.PROTOCOL_ERROR),
    (raw(wire.GOAWAY, 0, 0, b"\0" * 7), wire.FRAME_SIZE_ERROR),
    (raw(wire.WINDOW_UPDATE, 0, 0, b"\0" * 3), wire.FRAME_SIZE_ERROR),
    (raw(wire.CONTINUATION, 0, 0, b""), wire.PROTOCOL_ERROR),
    (raw(wire.PUSH_PROMISE, 4, 1, b"\0\0\0\x02"), wire.PROTOCOL_ERROR),
])
def test_frame_level_rules_are_connection_errors(frame: bytes, code: int) -> None:
    r = wire.Reader(preface=False)
    r.feed(frame)
    with pytest.raises(wire.FrameError) as err:
        r.next()
    assert err.value.code == code


def test_unknown_frame_types_come_out_unread_but_bounded() -> None:
    r = wire.Reader(preface=False)
    r.feed(raw(0x10, 0xFF, 3, b"whatever") + raw(0xFA, 0, 0, b"") + raw(wire.PING, 0, 0, b"p" * 8))
    assert r.next() and (r.kind, r.sid) == (0x10, 3)
    assert r.next() and r.kind == 0xFA
    assert r.next() and r.kind == wire.PING and r.payload == b"p" * 8
    assert not r.next()
    big = wire.Reader(preface=False)
    big.feed(raw(0x10, 0, 0, b"x" * 16385)[:9])
    with pytest.raises(wire.FrameError):
        big.next()


def test_what_hyperframe_reads_from_the_writers() -> None:
    """The other direction: the writers' bytes parse in hyperframe as the frames meant."""
    out: list[bytes] = []
    wire.write_settings(out, [(wire.MAX_CONCURRENT_STREAMS, 100), (wire.INITIAL_WINDOW_SIZE, 7)])
    wire.write_rst_stream(out, 5, wire.CANCEL)
    wire.write_window_update(out, 0, 1000)
    wire.write_goaway(out, 9, wire.ENHANCE_YOUR_CALM, b"why")
    wire.write_ping_ack(out, b"12345678")
    wire.write_data(out, 3, b"body", True)
    data = memoryview(b"".join(out))
    parsed = []
    while data:
        f, length = SettingsFrame.parse_frame_header(data[:9])
        f.parse_body(data[9:9 + length])
        parsed.append(f)
        data = data[9 + length:]
    s, rst, wu, ga, ping, d = parsed
    assert isinstance(s, SettingsFrame) and s.settings == {3: 100, 4: 7}
    assert isinstance(rst, RstStreamFrame) and (rst.stream_id, rst.error_code) == (5, 8)
    assert isinstance(wu, WindowUpdateFrame) and wu.window_increment == 1000
    assert isinstance(ga, GoAwayFrame) and (ga.last_stream_id, ga.error_code,
                                            ga.additional_data) == (9, 11, b"why")
    assert isinstance(ping, PingFrame) and "ACK" in ping.flags
    assert isinstance(d, DataFrame) and d.data == b"body" and "END_STREAM" in d.flags
