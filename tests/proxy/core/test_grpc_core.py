"""core/grpc: Envoy's gRPC status mappings and order, and the streaming message counter."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from tollway.proxy.core import grpc


def _frame(message: bytes, compressed: bool = False) -> bytes:
    return bytes([1 if compressed else 0]) + struct.pack(">I", len(message)) + message


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in [*points, len(data)]:
        pieces.append(data[last:p])
        last = p
    return pieces


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=300), st.booleans()), max_size=12),
       st.lists(st.integers(min_value=0, max_value=10_000), max_size=30))
def test_messages_are_counted_however_the_stream_is_cut(
        messages: list[tuple[bytes, bool]], cuts: list[int]) -> None:
    stream = b"".join(_frame(m, c) for m, c in messages)
    counter = grpc.MessageCounter()
    began = sum(counter.feed(piece) for piece in _split(stream, cuts))
    assert counter.count == began == len(messages)
    assert (counter.skip, counter.need) == (0, 0)  # at a message boundary at the end


def test_a_large_message_is_passed_over_not_kept() -> None:
    counter = grpc.MessageCounter()
    counter.feed(_frame(b"")[:3])  # a prefix cut inside its length
    counter.feed(b"\0\0")
    head = b"\0" + struct.pack(">I", 50_000_000)
    counter.feed(head + b"x" * 1000)
    assert counter.count == 2 and counter.skip == 50_000_000 - 1000
    counter.feed(b"y" * (50_000_000 - 1000))
    counter.feed(_frame(b"z"))
    assert counter.count == 3 and counter.skip == 0


def test_a_stream_that_is_not_grpc_framing_stops_the_count() -> None:
    counter = grpc.MessageCounter()
    counter.feed(_frame(b"ok") + b"GET / HTTP/1.1\r\n")  # flag byte 'G': not gRPC
    assert counter.count == 1 and counter.stopped
    counter.feed(_frame(b"later"))
    assert counter.count == 1


def test_envoy_status_mappings() -> None:
    # grpcToHttpStatus, as the router tells outlier detection
    assert [grpc.grpc_to_http(c) for c in range(17)] == [
        200, 499, 500, 400, 504, 404, 409, 403, 429, 400, 409, 400, 501, 500, 503, 500, 401]
    assert grpc.grpc_to_http(grpc.INVALID) == grpc.grpc_to_http(99) == 500
    # httpToGrpcStatus, for replies with no grpc-status
    assert {s: grpc.http_to_grpc(s) for s in (200, 400, 401, 403, 404, 429, 500, 502, 503,
                                              504)} == {
        200: 2, 400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 500: 2, 502: 14, 503: 14, 504: 14}


def test_status_order_trailers_then_head_then_http_status() -> None:
    assert grpc.final_status(8, 0, 200) == 8
    assert grpc.final_status(None, 14, 200) == 14
    assert grpc.final_status(None, None, 503) == 14
    assert grpc.final_status(None, None, 200) == 2  # a 200 with no grpc-status anywhere
    assert grpc.final_status(None, None, 0) is None  # nothing was answered


def test_status_parsing_and_labels() -> None:
    block = b"HTTP/1.1 200 X\r\ncontent-type: application/grpc\r\ngrpc-status: 14\r\n"
    assert grpc.status_in_block(block) == 14
    assert grpc.status_in_block(b"HTTP/1.1 200 X\r\nx-grpc-status: 3\r\n") is None
    assert grpc.status_in_block(b"HTTP/1.1 200 X\r\nGRPC-Status:  5") == 5
    assert grpc.status_in_fields([(b":status", b"200"), (b"grpc-status", b"0")]) == 0
    assert grpc.status_in_fields([(b"grpc-status", b"abc")]) == grpc.INVALID
    assert grpc.status_in_fields(None) is None
    assert [grpc.label(c) for c in (None, 0, 16, 17, grpc.INVALID)] == ["", "0", "16", "-1",
                                                                          "-1"]


def test_grpc_content_types() -> None:
    assert grpc.is_grpc("application/grpc")
    assert grpc.is_grpc("application/grpc+proto")
    assert grpc.is_grpc("application/grpc;charset=utf-8")
    assert not grpc.is_grpc("application/grpc-web")
    assert not grpc.is_grpc("application/json")


def test_span_tags_as_envoys_tracer() -> None:
    tags: dict[str, str] = {}
    grpc.span_tags((b"5", b"no such thing"), tags)  # NOT_FOUND: the caller's mistake
    assert tags == {"grpc.status_code": "5", "grpc.message": "no such thing"}
    grpc.span_tags((b"14", None), tags)  # trailers after a head: they win
    assert tags == {"grpc.status_code": "14", "grpc.message": "no such thing", "error": "true"}
    quiet: dict[str, str] = {}
    grpc.span_tags((None, b"x"), quiet)  # no grpc-status in that list: nothing
    grpc.span_tags(None, quiet)
    grpc.span_tags((b"oops", None), quiet)  # not a number: tagged as sent, not an error
    assert quiet == {"grpc.status_code": "oops"}
    assert grpc.status_and_message([(b"grpc-message", b"m"), (b"grpc-status", b"3")]) == (
        b"3", b"m")
