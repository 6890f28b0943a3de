"""The sans-IO parts of the HTTP/2 downstream: header translation and Envoy's counters."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tollway.proxy.h2 import guard as g
from tollway.proxy.h2 import headers as hh
from tollway.proxy.h2.preface import PREFACE, after_preface


def _fields(**extra: str) -> list[tuple[bytes, bytes]]:
    base = [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"Svc.NS:8080"),
            (b":path", b"/pkg.Svc/Call")]
    return base + [(k.replace("_", "-").encode(), v.encode()) for k, v in extra.items()]


def test_request_head_reads_pseudo_headers_and_joins_repeats() -> None:
    fields = [*_fields(content_type="application/grpc"), (b"cookie", b"a=1"),
              (b"cookie", b"b=2"), (b"x-v", b"1"), (b"x-v", b"2")]
    head = hh.request_head(fields)
    assert (head.method, head.scheme, head.authority, head.path) == (
        "POST", "https", "svc.ns:8080", "/pkg.Svc/Call")
    assert head.headers["cookie"] == "a=1; b=2"  # RFC 9113 8.2.3
    assert head.headers["x-v"] == "1,2"
    assert head.headers["host"] == "svc.ns:8080"  # what the matchers read
    assert head.grpc and head.content_length is None
    assert all(not n.startswith(b":") for n, _ in head.raw)


def test_authority_and_host_must_agree_and_host_fills_in() -> None:
    with pytest.raises(hh.Malformed):  # RFC 9113 8.3.1 (h2's validation refused it too)
        hh.request_head([*_fields(), (b"host", b"other")])
    assert hh.request_head([*_fields(), (b"host", b"Svc.NS:8080")]).authority == "svc.ns:8080"
    no_authority = [f for f in _fields() if f[0] != b":authority"] + [(b"host", b"h:1")]
    assert hh.request_head(no_authority).authority == "h:1"


@pytest.mark.parametrize("drop", [b":method", b":path", b":scheme"])
def test_a_request_without_its_pseudo_headers_is_refused(drop: bytes) -> None:
    with pytest.raises(hh.HeadError):
        hh.request_head([f for f in _fields() if f[0] != drop])


def test_a_non_numeric_content_length_is_refused() -> None:
    with pytest.raises(hh.HeadError, match="content-length"):
        hh.request_head(_fields(content_length="12x"))
    assert hh.request_head(_fields(content_length="12")).content_length == 12


def test_response_fields_drop_hop_by_hop_and_lowercase() -> None:
    block = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
             b"Connection: close\r\nKeep-Alive: x\r\nTransfer-Encoding: chunked\r\n"
             b"X-Thing:  v \r\nContent-Length: 3")
    status, fields = hh.response_fields(block)
    assert status == 503
    assert fields == [(b":status", b"503"), (b"content-type", b"text/plain"),
                      (b"x-thing", b"v"), (b"content-length", b"3")]


@pytest.mark.parametrize(("http", "grpc"), [
    (400, 13), (401, 16), (403, 7), (404, 12), (429, 14), (502, 14), (503, 14), (504, 14),
    (500, 2), (418, 2)])
def test_http_to_grpc_follows_envoy(http: int, grpc: int) -> None:
    assert hh.http_to_grpc(http) == grpc


def test_grpc_local_reply_is_trailers_only_and_percent_encoded() -> None:
    fields, body = hh.local_reply_fields(503, "no healthy upstream ü%".encode(), True)
    d = dict(fields)
    assert d[b":status"] == b"200" and d[b"grpc-status"] == b"14" and body == b""
    assert d[b"grpc-message"] == b"no healthy upstream %C3%BC%25"
    plain, body = hh.local_reply_fields(404, b"nope", False, (("X-A", "1"),))
    assert dict(plain)[b":status"] == b"404" and body == b"nope"
    assert (b"x-a", b"1") in plain


@settings(deadline=None)
@given(st.binary(max_size=64), st.integers(min_value=0, max_value=len(PREFACE)))
def test_after_preface_finds_the_frames_after_a_split_preface(frames: bytes, cut: int) -> None:
    settings = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    rest = settings + frames
    assert after_preface(PREFACE + rest) == rest
    assert after_preface(PREFACE[cut:] + rest) == rest  # the tail of a split preface


def test_after_preface_refuses_what_is_not_a_preface() -> None:
    assert after_preface(b"GET / HTTP/1.1\r\n\r\n") is None


def test_rapid_reset_needs_500_streams_and_half_of_them_reset_early() -> None:
    guard = g.Guard()
    for _ in range(499):
        guard.stream_opened()
        assert guard.stream_reset_by_client(answered=False) is None
    guard.stream_opened()
    assert guard.stream_reset_by_client(answered=False) is not None


@settings(deadline=None, max_examples=50, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 1000), st.integers(0, 1000), st.randoms(use_true_random=False))
def test_resets_after_the_answer_never_count(done: int, early: int, rnd: Any) -> None:
    """Whatever the mix, the cut happens only when early resets are half the streams."""
    answered = [True] * done + [False] * early
    rnd.shuffle(answered)
    guard = g.Guard()
    cut = False
    for done in answered:
        guard.stream_opened()
        cut = cut or guard.stream_reset_by_client(done) is not None
    if cut:
        assert early * 2 >= g.PREMATURE_RESET_MIN_STREAMS
    if all(answered):
        assert not cut


def test_control_frames_count_only_while_output_waits() -> None:
    guard = g.Guard()
    for _ in range(g.MAX_OUTBOUND_CONTROL_FRAMES):
        assert guard.control_frame_queued() is None
    guard.output_drained()
    for _ in range(g.MAX_OUTBOUND_CONTROL_FRAMES):
        assert guard.control_frame_queued() is None
    assert guard.control_frame_queued() is not None


def test_empty_data_frames_priority_and_window_updates() -> None:
    guard = g.Guard()
    assert guard.data_frame(empty=True) is None
    assert guard.data_frame(empty=True) is not None  # Envoy allows 1 in a row
    guard = g.Guard()
    guard.data_frame(empty=True)
    guard.other_frame()
    assert guard.data_frame(empty=True) is None
    guard = g.Guard()
    assert all(guard.priority_frame() is None for _ in range(100))
    assert guard.priority_frame() is not None
    guard = g.Guard()
    assert all(guard.window_update() is None for _ in range(5))
    assert guard.window_update() is not None
    guard.data_sent_frames(1)
    assert guard.window_update() is None


# ------------------------------------------------------------------ framing (h2/framing.py)

from tollway.proxy.h2 import framing  # noqa: E402


def test_request_fields_from_the_routers_head() -> None:
    head = (b"POST /pkg.Svc/Call HTTP/1.1\r\nhost: svc:50051\r\ncontent-type: application/grpc"
            b"\r\nConnection: x\r\nx-request-id: 1\r\ntransfer-encoding: chunked")
    fields, mode, _ = framing.request_fields(head, b"http")
    assert fields[:4] == [(b":method", b"POST"), (b":scheme", b"http"),
                          (b":authority", b"svc:50051"), (b":path", b"/pkg.Svc/Call")]
    assert (b"te", b"trailers") in fields  # gRPC asks for it
    assert all(n not in (b"connection", b"transfer-encoding", b"host") for n, _ in fields)
    assert mode == framing.CHUNKED
    _, mode, length = framing.request_fields(b"PUT /x HTTP/1.1\r\nhost: a\r\ncontent-length: 5",
                                             b"https")
    assert (mode, length) == (framing.LENGTH, 5)
    assert framing.request_fields(b"GET / HTTP/1.1\r\nhost: a", b"http")[1] == framing.NONE


def test_response_block_renders_an_http1_head() -> None:
    status, block = framing.response_block(
        [(b":status", b"200"), (b"content-type", b"application/grpc"), (b"grpc-status", b"0")])
    assert status == 200
    assert block == b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ngrpc-status: 0\r\n"


@settings(deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=40), max_size=8), st.data())
def test_dechunker_gives_back_the_body_however_it_is_cut(pieces: list[bytes], data: Any) -> None:
    wire = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    d = framing.Dechunker()
    got: list[bytes] = []
    done = False
    for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        out, done = d.feed(wire[a:b])
        got += out
    assert done and b"".join(got) == b"".join(pieces)


def test_dechunker_refuses_a_bad_size() -> None:
    with pytest.raises(framing.ChunkError):
        framing.Dechunker().feed(b"zz\r\n")


@pytest.mark.parametrize(("value", "seconds"), [
    ("1S", 1.0), ("250m", 0.25), ("2M", 120.0), ("1H", 3600.0), ("100u", 1e-4),
    ("5n", 5e-9), ("S", None), ("123456789S", None), ("10x", None), ("", None)])
def test_grpc_timeout_parses_the_spec_units(value: str, seconds: float | None) -> None:
    got = hh.grpc_timeout(value)
    assert got == pytest.approx(seconds) if seconds is not None else got is None
