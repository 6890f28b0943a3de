"""The judge: sequential canary-vs-stable test with bounded false alarms and evidence."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from tollway.rollout.analysis import judge

CFG = judge.JudgeConfig()


def _run(p_canary: float, seed: int, p_stable: float = 0.005, windows: int = 120,
         cfg: judge.JudgeConfig = CFG) -> judge.Evidence:
    rng = random.Random(seed)
    state = judge.JudgeState()
    ev = judge.verdict(state, cfg)
    for _ in range(windows):
        kc = sum(rng.random() < p_canary for _ in range(50))
        ks = sum(rng.random() < p_stable for _ in range(450))
        state = judge.observe(state, judge.Window(50, kc, 450, ks), cfg)
        ev = judge.verdict(state, cfg)
        if ev.verdict != "inconclusive":
            return ev
    return ev


def test_judge_fails_a_ten_times_worse_canary_quickly_with_evidence() -> None:
    ev = _run(0.05, seed=3)
    assert ev.verdict == "fail"
    errors = ev.signals[0]
    assert errors.canary_total <= 1000
    assert errors.canary_rate > errors.stable_rate
    assert errors.log_likelihood_ratio >= ev.fail_bound == math.log(1 / CFG.alpha)
    assert "likelihood ratio" in ev.reason


def test_judge_passes_a_healthy_canary_only_after_min_requests() -> None:
    state = judge.observe(judge.JudgeState(), judge.Window(10, 0, 90, 0), CFG)
    ev = judge.verdict(state, CFG)
    assert ev.verdict == "inconclusive" and ev.requests_needed > 0
    assert "more canary requests needed" in ev.reason
    assert _run(0.005, seed=1).verdict == "pass"


def test_judge_no_traffic_is_inconclusive_not_pass() -> None:
    ev = judge.verdict(judge.JudgeState(), CFG)
    assert ev.verdict == "inconclusive"
    assert ev.requests_needed >= CFG.min_requests


def test_judge_quiet_canary_passes_by_absolute_bound() -> None:
    state = judge.JudgeState()
    for _ in range(40):
        state = judge.observe(state, judge.Window(100, 0, 900, 0), CFG)
    assert judge.verdict(state, CFG).verdict == "pass"


def test_judge_slow_canary_fails_on_latency_signal() -> None:
    state = judge.JudgeState()
    for _ in range(10):
        state = judge.observe(state, judge.Window(50, 0, 450, 2, canary_slow=25,
                                                  stable_slow=45), CFG)
    ev = judge.verdict(state, CFG)
    assert ev.verdict == "fail" and ev.signals[1].verdict == "fail"


def test_judge_false_alarm_rate_is_bounded_for_equal_canaries() -> None:
    fails = sum(_run(0.01, seed=s, p_stable=0.01, windows=60).verdict == "fail"
                for s in range(150))
    assert fails <= 3  # alpha = 0.5%; 3 of 150 is ~4x headroom against noise


def test_judge_state_round_trips() -> None:
    state = judge.observe(judge.JudgeState(), judge.Window(50, 3, 450, 2), CFG)
    assert judge.JudgeState.from_dict(state.to_dict()) == state


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(0, 500), st.integers(0, 500), st.integers(0, 500),
                          st.integers(0, 500)), max_size=20))
def test_judge_never_crashes_and_counts_add_up(windows: list[tuple[int, int, int, int]]) -> None:
    state = judge.JudgeState()
    for nc, kc, ns, ks in windows:
        state = judge.observe(state, judge.Window(nc, min(kc, nc), ns, min(ks, ns)), CFG)
    ev = judge.verdict(state, CFG)
    assert ev.verdict in ("pass", "fail", "inconclusive")
    assert state.errors.canary_total == sum(w[0] for w in windows)


def test_judge_latency_threshold_from_stable_histogram() -> None:
    buckets = {5.0: 10.0, 10.0: 50.0, 25.0: 95.0, 50.0: 100.0, math.inf: 100.0}
    assert judge.pick_threshold(buckets, 0.9) == 25.0
    assert judge.slow_count(buckets, 25.0) == 5
    assert judge.diff_buckets({5.0: 12.0}, {5.0: 10.0}) == {5.0: 2.0}
    state = judge.fix_threshold(judge.JudgeState(), CFG, buckets)
    assert state.latency_threshold_ms == 25.0
