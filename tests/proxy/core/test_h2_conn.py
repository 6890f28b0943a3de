"""Tollway's server-side HTTP/2 connection (tollway/proxy/h2/conn.py), without sockets.

A real client (the `h2` library's client side) talks to it: requests, bodies, trailers,
flow control both ways, upgrade. Every stream state transition and every abuse the
`h2` library used to stop inside itself (CONTINUATION floods, HPACK bombs, stream-id
misuse, window abuse) is driven with raw frames and answered with the RFC's error.
A small differential property test holds its events to the library's on the same client
bytes (h2check's fuzz is the wide one)."""

from __future__ import annotations

import base64
import struct
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tollway.proxy.h2 import conn as c
from tollway.proxy.h2 import wire

REQUEST = [(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"http"),
           (b":authority", b"example")]
POST = [(b":method", b"POST"), *REQUEST[1:]]


def frame(kind: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes((kind, flags)) + struct.pack(
        ">I", sid) + payload


def server(**kw: Any) -> c.ServerConnection:
    s = c.ServerConnection(**{"max_concurrent_streams": 100, "initial_window_size": 65535,
                              "max_header_list_size": 65536, **kw})
    s.initiate_connection()
    return s


def client() -> h2.connection.H2Connection:
    cl = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=True, header_encoding=None))
    cl.initiate_connection()
    return cl


def pair(**kw: Any) -> tuple[c.ServerConnection, h2.connection.H2Connection]:
    s, cl = server(**kw), client()
    s.receive_data(cl.data_to_send())
    cl.receive_data(s.data_to_send())
    s.receive_data(cl.data_to_send())  # the client's ACK of our SETTINGS
    return s, cl


def kinds(events: list[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


class Raw:
    """A client writing frames by hand (preface and SETTINGS done), HPACK by `hpack`."""

    def __init__(self, **kw: Any) -> None:
        self.s = server(**kw)
        self.enc = hpack.Encoder()
        self.s.receive_data(wire.PREFACE + frame(wire.SETTINGS, 0, 0))
        self.s.data_to_send()

    def headers(self, sid: int, fields: list[tuple[bytes, bytes]] = REQUEST,
                flags: int = wire.END_HEADERS | wire.END_STREAM) -> bytes:
        return frame(wire.HEADERS, flags, sid, self.enc.encode(fields))

    def send(self, *frames: bytes) -> list[Any]:
        return self.s.receive_data(b"".join(frames))

    def error(self, *frames: bytes) -> int:
        """The connection error code the frames cause (and its GOAWAY went out)."""
        with pytest.raises(c.ProtocolError) as err:
            self.send(*frames)
        out = self.s.data_to_send()
        goaway = out.rfind(bytes((wire.GOAWAY, 0, 0, 0, 0, 0)))
        assert goaway >= 0, "no GOAWAY"
        code = struct.unpack(">I", out[goaway + 10:goaway + 14])[0]
        assert code == err.value.error_code
        assert self.s.receive_data(frame(wire.PING, 0, 0, b"x" * 8)) == []  # nothing read
        return code

    def rst(self) -> list[tuple[int, int]]:
        """(stream, code) of the RST_STREAM frames sent since the last look."""
        r = wire.Reader(preface=False)
        r.feed(self.s.data_to_send())
        out = []
        while r.next():
            if r.kind == wire.RST_STREAM:
                out.append((r.sid, r.flow))
        return out


# ------------------------------------------------------------------ with a real client
def test_a_get_and_its_response() -> None:
    s, cl = pair()
    cl.send_headers(1, REQUEST, end_stream=True)
    events = s.receive_data(cl.data_to_send())
    assert kinds(events) == ["RequestReceived", "StreamEnded"]
    req = events[0]
    assert req.stream_id == 1 and list(req.headers) == REQUEST and req.stream_ended is events[1]
    assert s.highest_inbound_stream_id == 1 and s.open_inbound_streams == 1
    s.send_headers(1, [(b":status", b"200"), (b"content-length", b"2")])
    s.send_data(1, b"ok", end_stream=True)
    got = cl.receive_data(s.data_to_send())
    assert [type(e) for e in got] == [h2.events.ResponseReceived, h2.events.DataReceived,
                                      h2.events.StreamEnded]
    assert got[1].data == b"ok" and s.streams == {} and s.closed == {1: c.BY_END}


def test_a_post_body_trailers_and_the_window_handed_back() -> None:
    s, cl = pair(initial_window_size=65535)
    cl.send_headers(1, POST)
    cl.send_data(1, b"a" * 16384)
    cl.send_data(1, b"b" * 16384)
    cl.send_headers(1, [(b"x-checksum", b"1")], end_stream=True)
    events = s.receive_data(cl.data_to_send())
    assert kinds(events) == ["RequestReceived", "DataReceived", "DataReceived",
                             "TrailersReceived", "StreamEnded"]
    assert events[1].flow_controlled_length == 16384 and events[3].headers == [
        (b"x-checksum", b"1")]
    assert s.remote_flow_control_window(1) == 65535 - 32768
    s.acknowledge_received_data(16384, 1)  # under half the window: nothing yet
    assert s.data_to_send() == b""
    s.acknowledge_received_data(16384, 1)  # half: the connection's window comes back
    cl.receive_data(s.data_to_send())
    assert cl.outbound_flow_control_window == 65535  # (the stream is half-closed: no WU)


def test_the_client_window_bounds_what_the_server_sends() -> None:
    s, cl = pair()
    cl.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 100})
    cl.send_headers(1, REQUEST, end_stream=True)
    events = s.receive_data(cl.data_to_send())
    assert "RemoteSettingsChanged" in kinds(events)
    assert s.local_flow_control_window(1) == 100
    s.send_headers(1, [(b":status", b"200")])
    with pytest.raises(c.FlowControlError):
        s.send_data(1, b"x" * 101)
    s.send_data(1, b"x" * 100)
    assert s.local_flow_control_window(1) == 0
    cl.receive_data(s.data_to_send())
    cl.increment_flow_control_window(50, 1)
    events = s.receive_data(cl.data_to_send())
    assert kinds(events) == ["WindowUpdated"] and events[0].delta == 50
    assert s.local_flow_control_window(1) == 50
    # a new INITIAL_WINDOW_SIZE moves every open stream's window by the difference
    cl.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1100})
    s.receive_data(cl.data_to_send())
    assert s.local_flow_control_window(1) == 1050


def test_long_response_headers_go_out_as_continuations_the_client_reads() -> None:
    s, cl = pair()
    cl.send_headers(1, REQUEST, end_stream=True)
    s.receive_data(cl.data_to_send())
    big = [(b":status", b"200"), *((b"x-h%d" % i, b"v" * 1000) for i in range(40))]
    s.send_headers(1, big, end_stream=True)
    out = s.data_to_send()
    assert out.count(bytes((wire.CONTINUATION,))) >= 2
    got = cl.receive_data(out)
    assert list(got[0].headers) == big


def test_upgrade_makes_stream_1_half_closed_with_the_client_settings() -> None:
    s = c.ServerConnection(100, 65535, 65536)
    value = base64.urlsafe_b64encode(struct.pack(">HI", 4, 1000)).rstrip(b"=")
    s.initiate_upgrade_connection(value)
    assert s.streams[1].state == c.REMOTE_CLOSED and s.local_flow_control_window(1) == 1000
    out = s.data_to_send()
    assert out[3] == wire.SETTINGS and bytes((wire.SETTINGS, wire.ACK)) not in out
    # the client's preface still comes, then its frames
    events = s.receive_data(wire.PREFACE + frame(wire.SETTINGS, 0, 0))
    assert kinds(events) == ["RemoteSettingsChanged"]
    s.send_headers(1, [(b":status", b"200")], end_stream=True)
    assert not s.streams
    bad = c.ServerConnection()
    with pytest.raises(c.ProtocolError):
        bad.initiate_upgrade_connection(b"!!not base64!!")


# ------------------------------------------------------------------ transitions
def test_data_after_the_client_ended_is_a_stream_error() -> None:
    raw = Raw()
    events = raw.send(raw.headers(1), frame(wire.DATA, 0, 1, b"late"))
    assert kinds(events) == ["RequestReceived", "StreamEnded", "StreamReset"]
    assert (events[2].error_code, events[2].remote_reset) == (wire.STREAM_CLOSED, False)
    assert raw.rst() == [(1, wire.STREAM_CLOSED)] and 1 not in raw.s.streams


def test_frames_in_flight_after_our_reset_are_answered_not_fatal() -> None:
    raw = Raw()
    raw.send(raw.headers(1, POST, flags=wire.END_HEADERS))
    raw.s.reset_stream(1, wire.CANCEL)
    assert raw.rst() == [(1, wire.CANCEL)]
    events = raw.send(frame(wire.DATA, 0, 1, b"x" * 100), frame(wire.WINDOW_UPDATE, 0, 1,
                                                                 struct.pack(">I", 5)),
                      frame(wire.RST_STREAM, 0, 1, struct.pack(">I", 8)),
                      raw.headers(1, [(b"x-t", b"1")]))
    assert events == []
    assert raw.rst() == [(1, wire.STREAM_CLOSED), (1, wire.STREAM_CLOSED)]
    # the HPACK table stayed in step: the next request still decodes
    events = raw.send(raw.headers(3, [*REQUEST, (b"x-t", b"1")]))
    assert list(events[0].headers)[-1] == (b"x-t", b"1")


def test_a_response_that_ends_first_then_the_client_ends_closes_the_stream() -> None:
    raw = Raw()
    raw.send(raw.headers(1, POST, flags=wire.END_HEADERS))
    raw.s.send_headers(1, [(b":status", b"200")], end_stream=True)
    assert raw.s.streams[1].state == c.LOCAL_CLOSED
    with pytest.raises(c.StreamClosedError):
        raw.s.send_data(1, b"more")
    events = raw.send(frame(wire.DATA, wire.END_STREAM, 1, b"body"))
    assert kinds(events) == ["DataReceived", "StreamEnded"] and not raw.s.streams
    assert raw.error(raw.headers(1, [(b"x-t", b"1")])) == wire.STREAM_CLOSED


@pytest.mark.parametrize(("frames", "code"), [
    # stream-id misuse (the hostile suite's shapes)
    (lambda r: [r.headers(2)], wire.PROTOCOL_ERROR),
    (lambda r: [r.headers(5), r.headers(3)], wire.PROTOCOL_ERROR),
    (lambda r: [frame(wire.DATA, 0, 7, b"hello")], wire.PROTOCOL_ERROR),
    (lambda r: [frame(wire.RST_STREAM, 0, 9, b"\0\0\0\x08")], wire.PROTOCOL_ERROR),
    (lambda r: [frame(wire.WINDOW_UPDATE, 0, 9, b"\0\0\0\x08")], wire.PROTOCOL_ERROR),
    (lambda r: [frame(wire.CONTINUATION, 4, 1, b"")], wire.PROTOCOL_ERROR),
    # a header block interrupted, or never ending (CVE-2024-27316)
    (lambda r: [r.headers(1, flags=0), frame(wire.PING, 0, 0, b"x" * 8)], wire.PROTOCOL_ERROR),
    (lambda r: [r.headers(1, flags=0), frame(wire.CONTINUATION, 4, 3, b"")],
     wire.PROTOCOL_ERROR),
    (lambda r: [r.headers(1, flags=0), frame(0x20, 0, 1, b"ext")], wire.PROTOCOL_ERROR),
    (lambda r: [r.headers(1, flags=0), *(frame(wire.CONTINUATION, 0, 1, b"")
                                         for _ in range(c.MAX_CONTINUATIONS + 1))],
     wire.PROTOCOL_ERROR),
    # HPACK: garbage, and a list decoding past MAX_HEADER_LIST_SIZE
    (lambda r: [frame(wire.HEADERS, 5, 1, b"\xff\xff\xff\xff\xff")], wire.COMPRESSION_ERROR),
    (lambda r: [r.headers(1, [*REQUEST, (b"x-bomb", b"a" * 3500)]),
                r.headers(3, [*REQUEST, *[(b"x-bomb", b"a" * 3500)] * 25])],
     wire.ENHANCE_YOUR_CALM),
    # flow control
    (lambda r: [frame(wire.WINDOW_UPDATE, 0, 0, struct.pack(">I", 2**31 - 1))],
     wire.FLOW_CONTROL_ERROR),
    (lambda r: [frame(wire.WINDOW_UPDATE, 0, 0, b"\0\0\0\0")], wire.PROTOCOL_ERROR),
    (lambda r: [r.headers(1, POST, flags=4), *(frame(wire.DATA, 0, 1, b"x" * 16384)
                                               for _ in range(5))], wire.FLOW_CONTROL_ERROR),
    # malformed requests the frame layer sees (a content-length mismatch: see below)
    (lambda r: [r.headers(1, POST, flags=4), r.headers(1, [(b"x", b"1")], flags=4)],
     wire.PROTOCOL_ERROR),
    (lambda r: [frame(wire.PRIORITY, 0, 3, b"\0\0\0\x03\x10")], wire.PROTOCOL_ERROR),
    # settings out of range
    (lambda r: [frame(wire.SETTINGS, 0, 0, struct.pack(">HI", 2, 2))], wire.PROTOCOL_ERROR),
    (lambda r: [frame(wire.SETTINGS, 0, 0, struct.pack(">HI", 4, 2**31))],
     wire.FLOW_CONTROL_ERROR),
    (lambda r: [frame(wire.SETTINGS, 0, 0, struct.pack(">HI", 5, 100))], wire.PROTOCOL_ERROR),
    # a frame over our SETTINGS_MAX_FRAME_SIZE
    (lambda r: [frame(wire.DATA, 0, 1, b"x" * 16385)], wire.FRAME_SIZE_ERROR),
])
def test_connection_errors(frames: Any, code: int) -> None:
    raw = Raw()
    assert raw.error(*frames(raw)) == code


TRAILERS = [(b"grpc-status", b"0")]


@pytest.mark.parametrize("frames", [
    lambda r: [r.headers(1, [*POST, (b"content-length", b"3")], flags=4),
               frame(wire.DATA, 1, 1, b"toolong")],
    lambda r: [r.headers(1, [*POST, (b"content-length", b"9")], flags=4),
               frame(wire.DATA, 1, 1, b"short")],
    lambda r: [r.headers(1, [*POST, (b"content-length", b"9")], flags=4),
               frame(wire.DATA, 0, 1, b"short"), frame(wire.DATA, 0, 1, b"toolong")],
    lambda r: [r.headers(1, [*POST, (b"content-length", b"9")], flags=4),
               frame(wire.DATA, 0, 1, b"short"), r.headers(1, TRAILERS)],
    lambda r: [r.headers(1, [*POST, (b"content-length", b"x")], flags=4)],
    lambda r: [r.headers(1, [*POST, (b"content-length", b"")], flags=4)],
    lambda r: [r.headers(1, [*POST, (b"content-length", b"x")])],  # END_STREAM too
    lambda r: [r.headers(1, [*POST, (b"content-length", b"4")])],  # ends with no DATA
])
def test_a_content_length_mismatch_is_a_stream_error(frames: Any) -> None:
    """RFC 9113 8.1.1: a content-length that is not a number, or that the DATA frames do
    not add up to, makes the request malformed: RST_STREAM(PROTOCOL_ERROR) on that stream
    (as nghttp2), nothing of it past the check reaches the server, and the connection
    goes on (the next stream is served, the bytes are back in the connection window)."""
    raw = Raw()
    window = raw.s.recv_window
    events = raw.send(*frames(raw))
    assert kinds(events)[-1] == "StreamReset"
    assert (events[-1].stream_id, events[-1].error_code, events[-1].remote_reset) == (
        1, wire.PROTOCOL_ERROR, False)
    assert "StreamEnded" not in kinds(events) and "TrailersReceived" not in kinds(events)
    assert raw.rst() == [(1, wire.PROTOCOL_ERROR)]
    assert 1 not in raw.s.streams and raw.s.closed[1] == c.BY_RESET
    ok = [e.flow_controlled_length for e in events if type(e).__name__ == "DataReceived"]
    raw.s.acknowledge_received_data(sum(ok), 1)  # what the server consumed
    assert raw.s.recv_window + raw.s.recv_processed == window
    assert kinds(raw.send(raw.headers(3))) == ["RequestReceived", "StreamEnded"]
    assert not raw.s.terminated


def test_a_content_length_that_matches_is_taken() -> None:
    raw = Raw()
    events = raw.send(raw.headers(1, [*POST, (b"content-length", b"0")]),
                      raw.headers(3, [*POST, (b"content-length", b"5")], flags=4),
                      frame(wire.DATA, 0, 3, b"ab"), frame(wire.DATA, 1, 3, b"cde"))
    assert kinds(events) == ["RequestReceived", "StreamEnded", "RequestReceived",
                             "DataReceived", "DataReceived", "StreamEnded"]
    assert raw.rst() == []


def test_too_many_streams_are_refused_one_by_one() -> None:
    raw = Raw(max_concurrent_streams=2)
    events = raw.send(raw.headers(1, flags=4), raw.headers(3, flags=4), raw.headers(5, flags=4))
    assert kinds(events) == ["RequestReceived", "RequestReceived"]
    assert raw.rst() == [(5, wire.REFUSED_STREAM)]
    raw.s.reset_stream(1, wire.CANCEL)
    assert kinds(raw.send(raw.headers(7))) == ["RequestReceived", "StreamEnded"]


def test_stream_window_abuse_is_a_stream_error() -> None:
    raw = Raw()
    raw.send(raw.headers(1))
    events = raw.send(frame(wire.WINDOW_UPDATE, 0, 1, struct.pack(">I", 2**31 - 1)))
    assert kinds(events) == ["StreamReset"] and events[0].error_code == wire.FLOW_CONTROL_ERROR
    raw.send(raw.headers(3))
    events = raw.send(frame(wire.WINDOW_UPDATE, 0, 3, b"\0\0\0\0"))
    assert kinds(events) == ["StreamReset"] and events[0].error_code == wire.PROTOCOL_ERROR
    assert raw.rst() == [(1, wire.FLOW_CONTROL_ERROR), (3, wire.PROTOCOL_ERROR)]


def test_a_client_goaway_is_reported_and_its_streams_go_on() -> None:
    raw = Raw()
    raw.send(raw.headers(1))
    events = raw.send(frame(wire.GOAWAY, 0, 0, struct.pack(">II", 1, 0)),
                      frame(wire.PING, 0, 0, b"p" * 8))
    assert kinds(events) == ["ConnectionTerminated", "PingReceived"]
    assert (events[0].error_code, events[0].last_stream_id, events[0].additional_data) == (
        0, 1, None)
    raw.s.send_headers(1, [(b":status", b"200")], end_stream=True)
    assert not raw.s.streams


def test_ping_settings_and_priority_events() -> None:
    raw = Raw()
    events = raw.send(frame(wire.PING, 0, 0, b"12345678"), frame(wire.PING, 1, 0, b"abcdefgh"),
                      frame(0x20, 0, 0, b"an extension: ignored"),
                      frame(wire.SETTINGS, 0, 0, struct.pack(">HI", 1, 0)),
                      frame(wire.SETTINGS, 1, 0),
                      frame(wire.PRIORITY, 0, 11, b"\x80\0\0\x01\x0f"))
    assert kinds(events) == ["PingReceived", "PingAckReceived", "RemoteSettingsChanged",
                             "SettingsAcknowledged", "PriorityUpdated"]
    assert events[0].ping_data == b"12345678"
    assert events[2].changed_settings[1].new_value == 0
    assert (events[4].stream_id, events[4].depends_on, events[4].weight, events[4].exclusive) == (
        11, 1, 16, True)
    out = raw.s.data_to_send()
    assert bytes((wire.PING, wire.ACK)) in out and bytes((wire.SETTINGS, wire.ACK)) in out
    # a smaller table: the encoder says so at the start of its next block
    raw.send(raw.headers(1))
    raw.s.send_headers(1, [(b":status", b"200")], end_stream=True)
    assert raw.s.data_to_send()[9] == 0x20


def test_an_unexpected_exception_inside_ends_only_this_connection(monkeypatch: Any) -> None:
    raw = Raw()

    def broken(block: bytes, raw: bool = False) -> list[tuple[bytes, bytes]]:
        raise RuntimeError("a bug")
    monkeypatch.setattr(raw.s.decoder.inner, "decode", broken)
    assert raw.error(raw.headers(1)) == wire.INTERNAL_ERROR


def test_closed_streams_are_remembered_within_a_bound() -> None:
    raw = Raw()
    for sid in range(1, 2 * (c.CLOSED_KEEP + 10), 2):
        raw.send(raw.headers(sid))
        raw.s.reset_stream(sid, wire.CANCEL)
    raw.s.data_to_send()
    assert len(raw.s.closed) == c.CLOSED_KEEP and not raw.s.streams


# ------------------------------------------------------------------ against the library
def _library() -> h2.connection.H2Connection:
    lib = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=False, header_encoding=None, validate_inbound_headers=False,
        normalize_inbound_headers=False, validate_outbound_headers=False,
        normalize_outbound_headers=False))
    lib.local_settings = h2.settings.Settings(client=False, initial_values={
        h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100,
        h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 65535,
        h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 65536,
        h2.settings.SettingCodes.ENABLE_PUSH: 0,
    })
    lib.initiate_connection()
    lib.data_to_send()
    return lib


def _norm(ev: Any) -> tuple[Any, ...]:
    name = type(ev).__name__
    if name in ("RequestReceived", "TrailersReceived"):
        return (name, ev.stream_id, [tuple(h) for h in ev.headers], ev.stream_ended is not None)
    if name == "DataReceived":
        return (name, ev.stream_id, ev.data, ev.flow_controlled_length,
                ev.stream_ended is not None)
    if name == "StreamReset":
        return (name, ev.stream_id, int(ev.error_code), ev.remote_reset)
    if name in ("StreamEnded",):
        return (name, ev.stream_id)
    if name == "WindowUpdated":
        return (name, ev.stream_id, ev.delta)
    if name == "PingReceived":
        return (name, ev.ping_data)
    return (name,)


actions = st.lists(st.one_of(
    st.tuples(st.just("get"), st.booleans()),
    st.tuples(st.just("data"), st.integers(0, 5), st.integers(0, 3000), st.booleans()),
    st.tuples(st.just("reset"), st.integers(0, 5)),
    st.tuples(st.just("ping")),
    st.tuples(st.just("window"), st.integers(0, 5), st.integers(1, 1000)),
    st.tuples(st.just("respond"), st.integers(0, 5), st.booleans()),
    st.tuples(st.just("ack"), st.integers(0, 5), st.integers(0, 5000)),
), max_size=25)


@given(actions)
@settings(max_examples=150, deadline=None)
def test_events_match_the_library_on_what_a_client_sends(steps: list[Any]) -> None:
    """The same client bytes into both servers, the same server calls on both: the same
    events (class, stream, data, codes) and both accept or refuse alike."""
    ours, lib, cl = server(), _library(), client()
    opened: list[int] = []
    for step in [("start",), *steps]:
        kind = step[0]
        try:
            if kind == "get":
                sid = cl.get_next_available_stream_id()
                cl.send_headers(sid, POST if not step[1] else REQUEST, end_stream=step[1])
                opened.append(sid)
            elif kind == "data" and opened:
                sid = opened[step[1] % len(opened)]
                room = min(cl.local_flow_control_window(sid), cl.max_outbound_frame_size)
                cl.send_data(sid, b"d" * min(step[2], room), end_stream=step[3])
            elif kind == "reset" and opened:
                cl.reset_stream(opened[step[1] % len(opened)], 8)
            elif kind == "ping":
                cl.ping(b"12345678")
            elif kind == "window" and opened:
                cl.increment_flow_control_window(step[2], opened[step[1] % len(opened)])
            elif kind in ("respond", "ack") and opened:
                sid = opened[step[1] % len(opened)]
                results = []
                for srv in (ours, lib):
                    try:
                        if kind == "respond":
                            srv.send_headers(sid, [(b":status", b"200")], end_stream=step[2])
                        else:
                            srv.acknowledge_received_data(step[2], sid)
                        results.append("ok")
                    except Exception as exc:  # both must refuse alike
                        results.append("refused" if "Closed" in type(exc).__name__ or isinstance(
                            exc, (h2.exceptions.ProtocolError, c.ProtocolError)) else repr(exc))
                assert results[0] == results[1], (step, results)
                if results[0] != "ok":
                    return  # (h2 closes a stream a refused call named: states part here)
                if kind == "respond":
                    cl.receive_data(lib.data_to_send())
                    ours.data_to_send()
                continue
        except (h2.exceptions.ProtocolError, KeyError):
            continue  # the client library refused the step: nothing was sent
        data = cl.data_to_send()
        if not data:
            continue
        got = [_norm(e) for e in ours.receive_data(data)]
        want = [_norm(e) for e in lib.receive_data(data)
                if type(e).__name__ not in ("RemoteSettingsChanged", "SettingsAcknowledged")]
        got = [e for e in got if e[0] not in ("RemoteSettingsChanged", "SettingsAcknowledged")]
        assert got == want, step
        cl.receive_data(lib.data_to_send())
        ours.data_to_send()
