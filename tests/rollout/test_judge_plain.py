"""The judge in plain words: the line the dashboard and `tollway rollout status` lead with.

Built from real verdicts (observe + verdict + to_dict, the dict the status stores), so the
words cannot drift from what the judge decided; the statistics stay in `reason`.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tollway.rollout.analysis import judge

CFG = judge.JudgeConfig(min_requests=200)


def _evidence(window: judge.Window, times: int, cfg: judge.JudgeConfig = CFG,
              threshold: float | None = 120.0) -> dict[str, Any]:
    state = judge.JudgeState(latency_threshold_ms=threshold)
    for _ in range(times):
        state = judge.observe(state, window, cfg)
    return judge.verdict(state, cfg).to_dict()


def test_a_failing_canary_reads_as_rates_and_the_limit() -> None:
    ev = _evidence(judge.Window(100, 27, 480, 0), 5)
    assert ev["verdict"] == "fail"
    assert ev["summary"] == "canary errors 27% vs stable 0%: failed (limit: no worse than stable)"
    assert "e-value" in ev["reason"]  # the statistics are still there, behind the words
    assert ev["signals"][0]["summary"] == ev["summary"]
    assert ev["signals"][1]["summary"] == ("canary slow requests (> 120 ms) 0% vs stable 0%: "
                                           "passed (under the 1.0% allowed outright)")


def test_a_tolerance_is_said_as_a_multiple_of_stable() -> None:
    cfg = judge.JudgeConfig(min_requests=200, tolerance=0.5, detect_ratio=3.0)
    ev = _evidence(judge.Window(100, 30, 480, 2), 5, cfg)
    assert ev["verdict"] == "fail"
    assert ev["summary"].endswith("failed (limit: at most 1.5x stable's rate)")


def test_slow_requests_fail_with_their_threshold_named() -> None:
    ev = _evidence(judge.Window(100, 0, 480, 0, canary_slow=40, stable_slow=10), 5)
    assert ev["verdict"] == "fail"
    assert ev["summary"] == ("canary slow requests (> 120 ms) 40% vs stable 2.1%: failed "
                             "(limit: no worse than stable)")


def test_too_few_requests_says_how_many_are_seen_and_needed() -> None:
    ev = _evidence(judge.Window(40, 0, 300, 1), 1)
    assert ev["verdict"] == "inconclusive"
    need = 40 + ev["requests_needed"]
    assert ev["summary"] == ("canary errors 0% vs stable 0.33%, canary slow requests "
                             f"(> 120 ms) 0% vs stable 0% so far: not enough requests yet "
                             f"(40 of ~{need} needed)")


def test_no_canary_traffic_yet() -> None:
    ev = _evidence(judge.Window(0, 0, 300, 0), 1)
    assert ev["summary"].startswith("no canary requests yet (~")


def test_a_pass_names_every_judged_signal_and_skips_the_unjudged() -> None:
    ev = _evidence(judge.Window(500, 0, 5000, 3), 20, threshold=None)
    assert ev["verdict"] == "pass"
    assert ev["summary"] == "canary errors 0% vs stable 0.06%: passed (under 2x stable's rate)"
    assert "not judged" in ev["signals"][1]["summary"]


def test_a_pass_by_the_absolute_floor_says_so_and_two_signals_each_say_theirs() -> None:
    cfg = judge.JudgeConfig(min_requests=30, quiet_rate=0.05, quiet_slow_rate=0.2)
    ev = _evidence(judge.Window(100, 0, 400, 0, canary_slow=3, stable_slow=10), 3, cfg)
    assert ev["verdict"] == "pass"
    assert ev["summary"] == ("canary errors 0% vs stable 0%: passed (under the 5.0% allowed "
                             "outright); canary slow requests (> 120 ms) 3.0% vs stable 2.5%: "
                             "passed (under the 20% allowed outright)")


def test_an_older_stored_evidence_without_summary_still_reads() -> None:
    ev = _evidence(judge.Window(100, 27, 480, 0), 5)
    old = {k: v for k, v in ev.items() if k not in ("summary", "tolerance", "min_requests")}
    assert judge.plain(old) == ev["summary"]


@pytest.mark.parametrize(("rate", "text"), [(0.0, "0%"), (0.27, "27%"), (1.0, "100%"),
                                             (0.0326, "3.3%"), (0.01, "1.0%"),
                                             (0.00025, "0.025%"), (0.0999, "10%")])
def test_percent(rate: float, text: str) -> None:
    assert judge.percent(rate) == text


@settings(deadline=None)  # the host is shared: timing belongs in bench/
@given(st.integers(0, 400), st.integers(0, 400), st.integers(1, 3000), st.integers(0, 400),
       st.integers(1, 6))
def test_every_verdict_has_one_plain_line(n_c: int, k_c: int, n_s: int, k_s: int,
                                         times: int) -> None:
    window = judge.Window(n_c, min(k_c, n_c), n_s, min(k_s, n_s))
    ev = _evidence(window, times)
    line = ev["summary"]
    assert line and "\n" not in line and "e-value" not in line and "log" not in line
    word = {"fail": "failed", "pass": "passed", "inconclusive": "no"}[ev["verdict"]]
    assert word in line


def test_an_overwhelming_window_is_said_without_overflowing() -> None:
    """One window can push the fail e-value past float range (log > 709): no crash."""
    cfg = judge.JudgeConfig(min_requests=0)
    state = judge.observe(judge.JudgeState(), judge.Window(5000, 5000, 5000, 0), cfg)
    state = judge.observe(state, judge.Window(5000, 5000, 5000, 0), cfg)
    ev = judge.verdict(state, cfg)
    assert ev.verdict == "fail"
    assert ev.to_dict()["summary"].startswith("canary errors 100% vs stable 0%: failed")


def test_the_reason_leads_with_the_plain_line_and_keeps_the_statistics() -> None:
    """`reason` is what a measurement's message, `rollout status` and the demo print."""
    cfg = CFG
    state = judge.JudgeState(latency_threshold_ms=120.0)
    for _ in range(5):
        state = judge.observe(state, judge.Window(100, 27, 480, 0), cfg)
    ev = judge.verdict(state, cfg)
    line = ev.to_dict()["summary"]
    assert ev.reason == f"{line} (evidence: {ev.statistics})"
    assert "e-value" in ev.statistics and "e-value" not in line
