"""Span encodings [pure]: Zipkin v2 JSON valid for any span, OTLP round-trips, B3 single."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tollway.proxy.core import trace
from tollway.proxy.core.otlp import otlp_protobuf
from tollway.proxy.core.spans import Span, endpoint, zipkin_json

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.spancollector import zipkin_errors

hex_id = st.text(alphabet="0123456789abcdef", min_size=16, max_size=16)
address = st.one_of(
    st.ip_addresses().map(lambda ip: f"[{ip}]:8080" if ip.version == 6 else f"{ip}:8080"),
    st.text(max_size=20), st.just(""), st.just("10.0.0.1:0"),
)
span_st = st.builds(
    Span, trace_id=st.tuples(hex_id, hex_id).map("".join), span_id=hex_id,
    parent_id=st.one_of(st.none(), hex_id), kind=st.sampled_from(["SERVER", "CLIENT"]),
    name=st.text(max_size=40), start_us=st.integers(1, 2**53), duration_us=st.integers(-5, 2**40),
    remote=address, tags=st.dictionaries(st.text(max_size=10), st.text(max_size=300)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(span_st, max_size=5), st.text(min_size=1, max_size=30), st.integers(0, 300))
def test_any_batch_is_valid_zipkin_v2(spans: list[Span], service: str, limit: int) -> None:
    payload = json.loads(zipkin_json(spans, service, limit))
    assert zipkin_errors(payload) == []
    for s, d in zip(spans, payload, strict=True):
        assert d["id"] == s.span_id and d["duration"] >= 1
        if limit:
            assert all(len(v) <= limit for v in d["tags"].values())


@settings(max_examples=100, deadline=None)
@given(st.lists(span_st, min_size=1, max_size=5))
def test_otlp_round_trips_ids_times_and_tags(spans: list[Span]) -> None:
    req = ExportTraceServiceRequest()
    req.ParseFromString(otlp_protobuf(spans, "svc.ns", 0))
    (rs,) = req.resource_spans
    assert rs.resource.attributes[0].value.string_value == "svc.ns"
    got = rs.scope_spans[0].spans
    for s, pb in zip(spans, got, strict=True):
        assert pb.trace_id.hex() == s.trace_id and pb.span_id.hex() == s.span_id
        assert pb.parent_span_id.hex() == (s.parent_id or "")
        assert pb.end_time_unix_nano - pb.start_time_unix_nano == s.duration_us * 1000
        assert {a.key: a.value.string_value for a in pb.attributes
                if a.key != "http.response.status_code"} == s.tags


def test_endpoint_reads_v4_v6_and_refuses_names() -> None:
    assert endpoint("10.1.2.3:80") == {"ipv4": "10.1.2.3", "port": 80}
    assert endpoint("[::1]:9") == {"ipv6": "::1", "port": 9}
    assert endpoint("backend:80") is None


def test_b3_single_forms() -> None:
    rng = random.Random(1)
    b3 = "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90"
    ctx = trace.prepare({"b3": b3}, rng, spans=True)
    assert ctx.trace_id == "80f198ee56343ba864fe8b2a57d3eff7"
    assert ctx.parent_span_id == "e457b5a2e4d86bd1" and ctx.sampled
    ids = ctx.span_ids
    assert ids is not None and ids[2] == "e457b5a2e4d86bd1" and ids[3] == ctx.span_id
    sent = dict(ctx.headers_to_set())
    assert sent["b3"] == f"{ctx.trace_id}-{ctx.span_id}-1"
    assert sent["x-b3-parentspanid"] == ids[1]  # the SERVER span is the sent span's parent
    # a sampling state alone: new trace, the decision kept (even at a 100% rate)
    deny = trace.prepare({"b3": "0"}, rng, sample_rate=1.0, spans=True)
    assert not deny.sampled and deny.span_ids is None and deny.parent_span_id is None
    assert trace.prepare({"b3": "d"}, rng, sample_rate=0.0).sampled
    # malformed: ignored as a whole (a new trace)
    for bad in ("xyz-e457b5a2e4d86bd1-1", f"{'a' * 32}-{'0' * 16}-1", f"{'a' * 32}-{'b' * 16}-2",
                f"{'a' * 32}-{'b' * 16}-1-{'c' * 16}-x"):
        ctx = trace.prepare({"b3": bad}, rng, sample_rate=0.0)
        assert ctx.parent_span_id is None and ctx.trace_id != "a" * 32


def test_no_span_ids_without_spans_or_sampling() -> None:
    rng = random.Random(2)
    tp = {"traceparent": f"00-{'a' * 32}-{'b' * 16}-01"}
    assert trace.upstream_lines(tp, rng, 0.01, False)[2] is None
    assert trace.upstream_lines({"traceparent": f"00-{'a' * 32}-{'b' * 16}-00"}, rng, 1.0,
                                True)[2] is None
    ids = trace.upstream_lines(tp, rng, 0.0, True)[2]
    assert ids is not None and ids[0] == "a" * 32 and ids[2] == "b" * 16
