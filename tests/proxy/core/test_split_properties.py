"""The weighted split: frequencies follow weights/sum; zero weights are never chosen."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.proxy.core.core_builders import route, table
from tollway.proxy.core.match import RouteTableMatcher
from tollway.proxy.core.split import WeightedPicker, percent_hit
from tollway.snapshot import types

weights_st = st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=8).filter(
    lambda ws: sum(ws) > 0
)
draw_st = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


@settings(max_examples=100, deadline=None)
@given(weights_st)
def test_evenly_spaced_draws_give_counts_proportional_to_weights(weights: list[int]) -> None:
    picker = WeightedPicker(weights)
    n = 4 * sum(weights)
    counts = [0] * len(weights)
    for k in range(n):
        counts[picker.pick((k + 0.5) / n)] += 1
    total = sum(weights)
    for w, c in zip(weights, counts, strict=True):
        assert abs(c - n * w / total) <= 1


@settings(max_examples=300, deadline=None)
@given(weights_st, draw_st)
def test_zero_weight_is_never_chosen(weights: list[int], r: float) -> None:
    i = WeightedPicker(weights).pick(r)
    assert 0 <= i < len(weights)
    assert weights[i] > 0 or len(weights) == 1


@settings(max_examples=200, deadline=None)
@given(weights_st, st.integers(min_value=2, max_value=50), draw_st)
def test_weights_are_relative_to_their_sum(weights: list[int], k: int, r: float) -> None:
    scaled = WeightedPicker([w * k for w in weights])
    n = 97
    grid = [(j + 0.5) / n for j in range(n)]
    base = WeightedPicker(weights)
    assert [base.pick(x) for x in grid] == [scaled.pick(x) for x in grid]


def test_single_destination_gets_everything_whatever_its_weight() -> None:
    for w in (0, 1, 100):
        assert WeightedPicker([w]).pick(0.999) == 0


def test_route_split_converges_to_90_10_with_seeded_draws() -> None:
    clusters = (types.WeightedCluster(cluster="v1", weight=90),
                types.WeightedCluster(cluster="v2", weight=10))
    r = RouteTableMatcher(table(route("s", clusters=clusters))).select("svc", "GET", "/", {})
    assert r is not None
    rng = random.Random(7)
    n = 20000
    v2 = 0
    for _ in range(n):
        picked = r.pick_cluster(rng.random())
        assert picked is not None
        v2 += picked.cluster == "v2"
    assert abs(v2 / n - 0.10) < 0.01


def test_percent_hit_fraction() -> None:
    n = 1000
    assert sum(percent_hit(25.0, (k + 0.5) / n) for k in range(n)) == 250
    assert not any(percent_hit(0.0, (k + 0.5) / n) for k in range(n))
    assert all(percent_hit(100.0, (k + 0.5) / n) for k in range(n))
