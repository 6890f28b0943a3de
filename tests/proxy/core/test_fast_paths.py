"""The hot path's hand-written shortcuts equal the general code they stand in for.

Each shortcut (bench/hot_path.py measures why it exists) is held equal to its reference
on wide inputs: trace headers rendered in one go, the memoised response-head analysis,
the inlined split, the per-status outlier update, and the HTTP/1.1 test the listener
derives from llhttp's keep-alive answer.
"""

from __future__ import annotations

import random

import httptools
from hypothesis import given, settings
from hypothesis import strategies as st

from tollway.proxy.core.exchange import Outcome
from tollway.proxy.core.outlier import OutlierDetector
from tollway.proxy.core.route import compile_routes
from tollway.proxy.core.split import WeightedPicker
from tollway.proxy.core.trace import prepare, upstream_lines
from tollway.proxy.http1 import response
from tollway.snapshot import types

HEX = "0123456789abcdef"
hex_st = st.text(alphabet=HEX, min_size=0, max_size=34)
TRACE_NAMES = ("x-request-id", "traceparent", "x-b3-traceid", "x-b3-spanid", "x-b3-sampled",
               "x-b3-flags", "b3", "user-agent")  # fmt: skip
def _hex(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=HEX, min_size=n, max_size=n)


header_value_st = st.one_of(
    hex_st,
    _hex(16),
    _hex(32),
    st.builds(lambda t, s, f: f"00-{t}-{s}-{f}", _hex(32), _hex(16), st.sampled_from(["00", "01"])),
    st.builds(lambda t, s, f: f"00-{t}-{s}-{f}", hex_st, hex_st, st.sampled_from(["00", "01"])),
    st.sampled_from(["1", "0", "true", "d", "", " 1 ", "garbage"]),
    st.builds(lambda t, s, f: f"{t}-{s}{f}", st.one_of(_hex(32), _hex(16), hex_st), _hex(16),
              st.sampled_from(["", "-1", "-0", "-d", "-x", "-1-0000000000000001"])),
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(TRACE_NAMES), header_value_st), st.integers(0, 2**32),
       st.sampled_from([0.0, 0.5, 1.0]), st.booleans())
def test_upstream_lines_render_what_prepare_decides(
    headers: dict[str, str], seed: int, rate: float, spans: bool
) -> None:
    ref_rng, fast_rng = random.Random(seed), random.Random(seed)
    ctx = prepare(headers, ref_rng, sample_rate=rate, spans=spans)
    expected = "".join(f"{n}: {v}\r\n" for n, v in ctx.headers_to_set()).encode("latin-1")
    assert upstream_lines(headers, fast_rng, rate, spans) == (
        ctx.request_id, expected, ctx.span_ids)
    assert ref_rng.random() == fast_rng.random()  # the same draws were taken


RESPONSE_NAMES = [b"Connection", b"connection", b"Keep-Alive", b"Content-Length", b"TE",
                  b"Transfer-Encoding", b"Upgrade", b"Trailer", b"Proxy-Connection",
                  b"X-A", b"Date", b"Server"]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(RESPONSE_NAMES),
                          st.from_regex(rb"[a-z0-9=, ]{0,12}", fullmatch=True)), max_size=8),
       st.booleans(), st.booleans(), st.sampled_from([200, 204, 304, 404]))  # fmt: skip
def test_analysed_head_equals_the_unmemoised_head(
    headers: list[tuple[bytes, bytes]], http11: bool, head_request: bool, status: int
) -> None:
    block = b"HTTP/1.1 %d X\r\n" % status + b"".join(b"%s: %s\r\n" % h for h in headers)
    for _ in range(2):  # the second call is a memo hit
        found, cut, length_framed = response.analyse(block)
        assert found == response.special_names(block)
        mode = response.mode_for(status, found, head_request=head_request, http11=http11)
        if not head_request and status not in (204, 304):
            assert (mode == response.PASS) == length_framed
        reference = response.head_bytes(status, block, found, mode, b"\r\n", None)
        assert response.head_bytes(status, block, found, mode, b"\r\n", None, cut) == reference


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 100), min_size=1, max_size=6),
       st.floats(min_value=0.0, max_value=1.0, exclude_max=True))  # fmt: skip
def test_inlined_split_picks_what_the_picker_picks(weights: list[int], r: float) -> None:
    clusters = tuple(
        types.WeightedCluster(cluster=f"c{i}", weight=w) for i, w in enumerate(weights)
    )
    (entry,) = compile_routes((types.Route(clusters=clusters),))
    expected = clusters[WeightedPicker(weights).pick(r)]
    assert entry.pick_cluster(r) is expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.sampled_from([200, 404, 500, 502, 503, 504]),
                          st.floats(0, 5)), max_size=40),
       st.booleans())  # fmt: skip
def test_observe_status_is_observe_of_a_status(
    events: list[tuple[int, int, float]], split: bool
) -> None:
    spec = types.OutlierDetection(consecutive_5xx=3, consecutive_gateway=2, interval=1.0,
                                  base_ejection_time=2.0, max_ejection_percent=100,
                                  split_external_local_origin_errors=split)  # fmt: skip
    a, b = OutlierDetector(spec, 3), OutlierDetector(spec, 3)
    now = 0.0
    for index, status, dt in events:
        now += dt
        assert a.observe(index, Outcome(status, None), now) == b.observe_status(index, status, now)
        assert a.statistics() == b.statistics()
        assert a.usable(now) == b.usable(now)


class _Head:
    def on_headers_complete(self) -> None:
        pass


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([b"1.0", b"1.1", b"0.9", b"2.0"]),
       st.sampled_from([None, b"close", b"keep-alive", b"Keep-Alive", b"upgrade", b"x"]))
def test_http11_is_told_from_keep_alive_without_building_the_version(
    version: bytes, connection: bytes | None
) -> None:
    parser = httptools.HttpRequestParser(_Head())
    extra = b"Connection: %s\r\n" % connection if connection is not None else b""
    try:
        parser.feed_data(b"GET / HTTP/%s\r\nHost: a\r\n%s\r\n" % (version, extra))
    except httptools.HttpParserError:
        return  # llhttp refused it: the listener answers 400 before any such test
    # kept alive without a Connection header: llhttp says so only of HTTP/1.1
    if parser.should_keep_alive() and connection is None:
        assert parser.get_http_version() == "1.1"
