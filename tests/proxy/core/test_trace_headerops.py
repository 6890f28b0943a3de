"""Request ids, W3C / B3 trace propagation, and header set/add/remove."""

from __future__ import annotations

import random
import uuid

from tollway.proxy.core.exchange import join_flags
from tollway.proxy.core.headerops import apply, authority_from
from tollway.proxy.core.trace import HEADER_NAMES, HEADER_NAMES_BYTES, prepare
from tollway.snapshot import types

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_request_id_kept_or_created_as_uuid4() -> None:
    ctx = prepare({"x-request-id": "abc"}, random.Random(1))
    assert ctx.request_id == "abc" and not ctx.request_id_created
    new = prepare({}, random.Random(1))
    assert uuid.UUID(new.request_id).version == 4 and new.request_id_created
    assert prepare({}, random.Random(1)).request_id == new.request_id  # injected randomness
    rng = random.Random(9)
    for _ in range(300):
        u = uuid.UUID(prepare({}, rng).request_id)
        assert u.version == 4 and u.variant == uuid.RFC_4122


def test_trace_header_names_cover_what_is_set() -> None:
    ctx = prepare({"traceparent": TP}, random.Random(1))
    assert {n for n, _ in ctx.headers_to_set()} <= HEADER_NAMES
    assert {n.encode() for n in HEADER_NAMES} == HEADER_NAMES_BYTES


def test_traceparent_propagated_with_new_span() -> None:
    ctx = prepare({"traceparent": TP}, random.Random(2))
    assert ctx.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert ctx.parent_span_id == "00f067aa0ba902b7"
    assert ctx.span_id != "00f067aa0ba902b7" and ctx.sampled
    headers = dict(ctx.headers_to_set())
    assert headers["traceparent"] == f"00-{ctx.trace_id}-{ctx.span_id}-01"
    assert headers["x-b3-traceid"] == ctx.trace_id
    assert headers["x-b3-parentspanid"] == "00f067aa0ba902b7"


def test_invalid_traceparent_starts_a_new_trace() -> None:
    bad_values = ("garbage", "00-" + "0" * 32 + "-00f067aa0ba902b7-01", "ff-" + TP[3:],
                  TP + "-extra", TP.replace("-01", "-0g"), TP[:-1], TP.replace("-", "_"))
    for bad in bad_values:
        ctx = prepare({"traceparent": bad}, random.Random(3))
        assert ctx.parent_span_id is None and len(ctx.trace_id) == 32


def test_future_traceparent_version_may_carry_more_fields() -> None:
    ctx = prepare({"traceparent": "01" + TP[2:] + "-what-ever"}, random.Random(2))
    assert ctx.parent_span_id == "00f067aa0ba902b7"


def test_b3_propagated_and_64_bit_ids_widened() -> None:
    ctx = prepare({"x-b3-traceid": "a3ce929d0e0e4736", "x-b3-spanid": "00f067aa0ba902b7",
                   "x-b3-sampled": "0"}, random.Random(4))
    assert ctx.trace_id == "0000000000000000a3ce929d0e0e4736"
    assert ctx.parent_span_id == "00f067aa0ba902b7" and not ctx.sampled
    assert dict(ctx.headers_to_set())["x-b3-sampled"] == "0"


def test_created_trace_samples_by_rate() -> None:
    rng = random.Random(5)
    sampled = sum(prepare({}, rng, sample_rate=0.25).sampled for _ in range(4000))
    assert 800 < sampled < 1200
    assert not any(prepare({}, rng, sample_rate=0.0).sampled for _ in range(100))


def test_headerops_remove_set_add_case_insensitive() -> None:
    ops = types.HeaderOps(set={"X-Set": "new", "host": "ignored"}, add={"x-add": "2"},
                          remove=("X-Gone",))
    headers = [("X-Set", "old"), ("x-gone", "1"), ("x-add", "1"), ("keep", "k"), ("Host", "h")]
    out = apply(headers, ops)
    assert ("x-set", "new") in out and ("X-Set", "old") not in out
    assert not any(k.lower() == "x-gone" for k, _ in out)
    assert [v for k, v in out if k == "x-add"] == ["1", "2"]
    assert ("Host", "h") in out and ("keep", "k") in out
    assert headers[0] == ("X-Set", "old")  # input untouched
    assert apply(headers, None) is headers
    assert authority_from(ops) == "ignored"


def test_headerops_percent_escape() -> None:
    out = apply([], types.HeaderOps(set={"x": "100%%"}))
    assert out == [("x", "100%")]


def test_join_flags() -> None:
    assert join_flags([]) == "-"
    assert join_flags(["UO", "URX"]) == "UO,URX"
