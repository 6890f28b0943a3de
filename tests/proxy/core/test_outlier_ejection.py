"""Outlier detection: counters, ejection, growing ejection time, max %, panic."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from tollway.proxy.core.exchange import (
    OUTCOME_CONNECT_FAILURE,
    OUTCOME_RESET,
    OUTCOME_TIMEOUT,
    Outcome,
)
from tollway.proxy.core.outlier import OutlierDetector
from tollway.snapshot import types

OK = Outcome(status=200)
E500 = Outcome(status=500)
E502 = Outcome(status=502)


def spec(**kw: object) -> types.OutlierDetection:
    base: dict[str, object] = {"max_ejection_percent": 100}
    base.update(kw)
    return types.OutlierDetection(**base)  # type: ignore[arg-type]


def fail(d: OutlierDetector, i: int, times: int, now: float, o: Outcome = E500) -> bool:
    return any([d.observe(i, o, now) for _ in range(times)])


def test_five_consecutive_5xx_eject_and_success_resets() -> None:
    d = OutlierDetector(spec(), 3)
    assert not fail(d, 0, 4, 0.0)
    d.observe(0, OK, 0.0)
    assert not fail(d, 0, 4, 0.0)
    assert d.observe(0, E500, 0.0)
    assert d.usable(1.0) == (1, 2)
    assert d.statistics()[0].ejected


def test_local_origin_failures_count_as_5xx_unless_split() -> None:
    d = OutlierDetector(spec(), 2)
    for o in (OUTCOME_CONNECT_FAILURE, OUTCOME_RESET, OUTCOME_TIMEOUT, E500):
        assert not d.observe(0, o, 0.0)
    assert d.observe(0, OUTCOME_CONNECT_FAILURE, 0.0)
    split = OutlierDetector(spec(split_external_local_origin_errors=True,
                                 consecutive_local_origin=2), 2)
    assert not fail(split, 0, 4, 0.0)  # 5xx counter only at 4
    assert not split.observe(1, OUTCOME_CONNECT_FAILURE, 0.0)
    assert split.observe(1, OUTCOME_CONNECT_FAILURE, 0.0)
    assert not split.statistics()[0].ejected


def test_consecutive_gateway_errors_count_502_503_504_only() -> None:
    d = OutlierDetector(spec(consecutive_gateway=3, consecutive_5xx=None), 2)
    fail(d, 0, 2, 0.0, E502)
    d.observe(0, E500, 0.0)  # a non-gateway 5xx breaks the streak
    assert not fail(d, 0, 2, 0.0, Outcome(status=504))
    assert d.observe(0, Outcome(status=503), 0.0)


def test_ejection_time_grows_with_times_ejected_and_is_capped() -> None:
    d = OutlierDetector(spec(base_ejection_time=30.0, interval=1000.0), 2)
    now = 0.0
    for k in (1, 2, 3):
        assert fail(d, 0, 5, now)
        assert d.usable(now + 30.0 * k - 0.001) == (1,)
        now += 30.0 * k
        assert d.usable(now) == (0, 1)
        assert d.statistics()[0].times_ejected == k
    big = OutlierDetector(spec(base_ejection_time=200.0, interval=1e9), 1)
    fail(big, 0, 5, 0.0)
    fail(big, 0, 5, 200.0)
    assert big.statistics()[0].ejected_until == 500.0  # 2 x 200 capped at 300


def test_multiplier_decays_while_host_stays_healthy() -> None:
    d = OutlierDetector(spec(base_ejection_time=10.0, interval=5.0), 2)
    fail(d, 0, 5, 0.0)
    fail(d, 0, 5, 10.0)
    assert d.statistics()[0].times_ejected == 2
    for t in range(30, 100, 5):
        d.observe(1, OK, float(t))
    assert d.statistics()[0].times_ejected == 0


def test_max_ejection_percent_caps_but_one_host_can_always_go() -> None:
    d = OutlierDetector(spec(max_ejection_percent=10), 3)
    assert fail(d, 0, 5, 0.0)
    assert not fail(d, 1, 5, 0.0)
    assert d.usable(0.0) == (1, 2)
    none = OutlierDetector(spec(max_ejection_percent=0), 3)
    assert not fail(none, 0, 5, 0.0)


def test_panic_makes_every_host_usable_and_no_panic_leaves_none() -> None:
    d = OutlierDetector(spec(min_health_percent=50), 2)
    fail(d, 0, 5, 0.0)
    assert d.usable(0.0) == (1,) and not d.in_panic(0.0)
    fail(d, 1, 5, 0.0)
    assert d.in_panic(0.0)
    assert d.usable(0.0) == (0, 1)
    no_panic = OutlierDetector(spec(), 2)
    fail(no_panic, 0, 5, 0.0)
    fail(no_panic, 1, 5, 0.0)
    assert no_panic.usable(0.0) == ()  # 503 UH


def test_carry_over_keeps_ejections_of_hosts_that_stay() -> None:
    old = OutlierDetector(spec(), 3)
    fail(old, 1, 5, 0.0)
    fail(old, 2, 3, 0.0)
    new = OutlierDetector(spec(), 3)
    new.carry_over(old, [None, 2, 1])  # endpoint 0 is new; old 1 and 2 swapped places
    assert new.usable(1.0) == (0, 1)
    assert new.statistics()[1].consecutive_5xx == 3
    assert new.observe(1, E500, 1.0) is False and new.observe(1, E500, 1.0) is True
    assert new.usable(30.5) == (0, 2)  # old host 1 still returns at 30 s, new 1 at 31


events = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=9),
        st.sampled_from([OK, E500, E502, OUTCOME_CONNECT_FAILURE, OUTCOME_TIMEOUT]),
        st.floats(min_value=0.0, max_value=20.0),
    ),
    max_size=200,
)


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=1, max_value=10),
    st.integers(min_value=0, max_value=100),
    st.integers(min_value=0, max_value=100),
    st.integers(min_value=1, max_value=5),
    events,
)
def test_invariants_under_random_traffic(n: int, max_pct: int, min_health: int, thr: int,
                                         evs: list[tuple[int, Outcome, float]]) -> None:
    d = OutlierDetector(spec(max_ejection_percent=max_pct, min_health_percent=min_health,
                             consecutive_5xx=thr, base_ejection_time=15.0, interval=7.0), n)
    now = 0.0
    bound = math.ceil(max_pct * n / 100)
    for idx, outcome, dt in evs:
        now += dt
        d.observe(idx % n, outcome, now)
        usable = d.usable(now)
        ejected = [i for i in range(n) if d.is_ejected(i, now)]
        assert len(ejected) <= bound  # never beyond max%, bar the one host that crossed it
        healthy = n - len(ejected)
        if min_health and healthy * 100 < min_health * n:
            assert usable == tuple(range(n))
        else:
            assert usable == tuple(i for i in range(n) if i not in ejected)
        for st_ in d.statistics():
            if st_.ejected_until is not None:
                assert st_.ejected_until - now <= max(300.0, 15.0) + 1e-9
