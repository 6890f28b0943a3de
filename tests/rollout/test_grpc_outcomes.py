"""Judged on gRPC status: a call that failed UNAVAILABLE is HTTP 200 with grpc-status 14.

The proxies label gRPC series `request_protocol="grpc"` and `grpc_response_status` (the
code, "-1" for an invalid one, "" for non-gRPC). Tollway's judge and `tollway` provider
count any status but OK as a failed request (Kiali's rule); Flagger's built-in
request-success-rate stays what Flagger's Istio query reads (`response_code!~"5.*"`).
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tollway.rollout import measure
from tollway.rollout.analysis.providers import builtin
from tollway.rollout.analysis.providers.histogram import Counts, parse_istio
from tollway.rollout.analysis.providers.mesh import MeshMetrics

_LABELS = ('reporter="{rep}",destination_workload="{wl}",destination_workload_namespace="default"'
           ',request_protocol="{proto}",response_code="{code}",grpc_response_status="{grpc}"')


def _series(rows: list[tuple[str, str, str, float]], reporter: str = "destination") -> str:
    """rows: (workload, response_code, grpc_response_status, count) -> scrape text."""
    out = ["# TYPE istio_requests_total counter"]
    for wl, code, grpc, n in rows:
        labels = _LABELS.format(rep=reporter, wl=wl, proto="grpc" if grpc else "http",
                                code=code, grpc=grpc)
        out.append(f"istio_requests_total{{{labels}}} {n}")
    return "\n".join(out) + "\n"


def test_a_grpc_status_but_ok_is_a_failed_request_not_a_success() -> None:
    counts = parse_istio(_series([
        ("greeter-v3", "200", "0", 80),  # OK
        ("greeter-v3", "200", "14", 15),  # UNAVAILABLE, answered HTTP 200
        ("greeter-v3", "200", "-1", 1),  # an invalid grpc-status
        ("greeter-v3", "503", "14", 4),  # the sidecar's own 503, mapped: counted once
        ("greeter-v3", "200", "", 10),  # plain HTTP
    ]))[("default", "greeter-v3")]
    assert (counts.total, counts.errors, counts.grpc_errors, counts.failed) == (110, 4, 16, 20)
    assert counts.ok_rate == 90 / 110
    # Flagger's built-in reads non-5xx only, as its Istio query does
    assert builtin.value("request-success-rate", counts) == 100 * 106 / 110


def test_source_side_series_are_not_counted() -> None:
    assert parse_istio(_series([("greeter-v3", "200", "14", 5)], reporter="source")) == {}


@given(st.lists(st.tuples(st.sampled_from(["200", "404", "503", "504"]),
                          st.sampled_from(["", "0", "1", "4", "13", "14", "16", "-1"]),
                          st.integers(0, 1000)), max_size=20, unique_by=lambda r: r[:2]))
def test_failed_is_5xx_or_any_grpc_status_but_ok(rows: list[tuple[str, str, int]]) -> None:
    counts = parse_istio(_series([("w", c, g, n) for c, g, n in rows])).get(("default", "w"),
                                                                           Counts())
    assert counts.total == sum(n for _, _, n in rows)
    assert counts.failed == sum(n for c, g, n in rows if c.startswith("5") or g not in ("", "0"))
    assert counts.errors == sum(n for c, _, n in rows if c.startswith("5"))


def test_a_window_carries_grpc_failures_and_a_reset_restarts_it() -> None:
    m = MeshMetrics()
    key = ("default", "w")
    m.add(0.0, {key: Counts(100, 0, {}, 5)})
    m.add(30.0, {key: Counts(300, 1, {}, 25)})
    w = m.window(key, 30.0, 30.0)
    assert (w.total, w.errors, w.grpc_errors, w.failed) == (200, 1, 20, 21)
    m.add(60.0, {key: Counts(10, 0, {}, 2)})  # a proxy restarted: its counters too
    assert m.window(key, 30.0, 60.0).grpc_errors == 2


def _context(mesh: MeshMetrics) -> measure.Context:
    client: Any = None  # the tollway provider calls nobody
    return measure.Context(client=client, mesh=mesh, prometheus_url=None,
                           canary=("default", "greeter-canary"),
                           stable=("default", "greeter-stable"))


def _scrape(canary_ok: int, canary_unavailable: int, stable_ok: int) -> dict[Any, Counts]:
    return parse_istio(_series([
        ("greeter-canary", "200", "0", canary_ok),
        ("greeter-canary", "200", "14", canary_unavailable),
        ("greeter-stable", "200", "0", stable_ok),
    ]))


def test_the_judge_fails_a_canary_whose_calls_fail_unavailable() -> None:
    """20% of the canary's calls UNAVAILABLE (all HTTP 200), none of stable's: Failed
    within a few windows; with only 5xx counted it would read as a flawless canary."""
    mesh = MeshMetrics()
    ctx = _context(mesh)
    cfg = {"metric": "judge", "min_requests": 100}
    verdicts = []
    for i in range(1, 21):
        mesh.add(float(i), _scrape(40 * i, 10 * i, 200 * i))
        verdicts.append(measure.mesh_value(ctx, "run/judge", cfg, float(i)).verdict)
        if verdicts[-1] != "inconclusive":
            break
    assert verdicts[-1] == "fail", verdicts
    assert measure.mesh_value(ctx, "x/rate", {"metric": "error-rate"}, 20.0) == 0.2
    assert measure.mesh_value(ctx, "x/rate", {"metric": "success-rate"}, 20.0) == 0.8


def test_the_judge_passes_a_canary_as_good_as_stable() -> None:
    mesh = MeshMetrics()
    ctx = _context(mesh)
    cfg = {"metric": "judge", "min_requests": 100, "quiet_rate": 0.02}
    verdict = "inconclusive"
    for i in range(1, 31):
        mesh.add(float(i), _scrape(50 * i, 0, 200 * i))
        verdict = measure.mesh_value(ctx, "run/judge", cfg, float(i)).verdict
        if verdict != "inconclusive":
            break
    assert verdict == "pass"


def test_judge_state_saved_before_grpc_counts_still_loads() -> None:
    """A judge state persisted by an older version has no grpc_errors in its `seen`."""
    mesh = MeshMetrics()
    ctx = _context(mesh)
    ctx.judges["run/judge"] = {"state": {}, "seen": {
        "canary": {"total": 0.0, "errors": 0.0, "buckets": {}},
        "stable": {"total": 0.0, "errors": 0.0, "buckets": {}}}}
    mesh.add(1.0, _scrape(90, 10, 400))
    evidence = measure.mesh_value(ctx, "run/judge", {"metric": "judge"}, 1.0)
    assert evidence.verdict in ("inconclusive", "fail")
    assert ctx.judges["run/judge"]["seen"]["canary"]["grpc_errors"] == 10
    assert not math.isnan(measure.mesh_value(ctx, "x/r", {"metric": "error-rate"}, 1.0))
