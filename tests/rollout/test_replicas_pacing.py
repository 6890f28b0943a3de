"""maxSurge/maxUnavailable: fenceposts, Argo's weight approximation and the bounded steps
of a basic canary and of a Deployment rolling update, simulated against a cluster whose
replicas become ready at random times."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tollway.control.local.plan import (
    Counts,
    Rolling,
    StrategyError,
    both_zero,
    fenceposts,
    rolling_step,
    scaled,
)
from tollway.rollout import plans
from tollway.rollout.replicas import (
    Bounds,
    approximate,
    at_desired,
    basic_canary,
    bounds,
    settle,
    step_sets,
    traffic_routed,
)

# ---- fenceposts -------------------------------------------------------------------------


@pytest.mark.parametrize(("surge", "unavailable", "replicas", "want"), [
    (None, None, 4, (1, 1)),        # defaults 25% / 25%
    (None, None, 10, (3, 2)),       # surge rounds up (2.5 → 3), unavailable down (2.5 → 2)
    (None, None, 1, (1, 0)),
    ("10%", "10%", 2, (1, 0)),
    (0, "10%", 2, (0, 1)),          # both resolve to 0 → unavailable 1
    ("25", "50", 4, (1, 2)),        # Argo reads a bare string as a percentage
    (2, 9, 4, (2, 4)),              # unavailable never exceeds replicas
    (1, 0, 0, (1, 0)),
])
def test_fenceposts(surge: int | str | None, unavailable: int | str | None, replicas: int,
                    want: tuple[int, int]) -> None:
    assert fenceposts(surge, unavailable, replicas) == want


@pytest.mark.parametrize("bad", ["abc", "-1%", "1.5", -1, True])
def test_scaled_refuses_what_is_not_a_count_or_percentage(bad: object) -> None:
    with pytest.raises(StrategyError):
        scaled(bad, 10, True)  # type: ignore[arg-type]


def test_both_zero_only_when_both_explicitly_zero() -> None:
    assert both_zero(0, "0%") and both_zero("0", 0)
    assert not both_zero(0, None) and not both_zero(None, None) and not both_zero(0, 1)


def test_plan_refuses_both_zero_and_bad_values_in_one_sentence() -> None:
    def spec(**canary: object) -> dict[str, object]:
        return {"replicas": 4, "strategy": {"canary": {"steps": [{"setWeight": 50}], **canary}}}

    with pytest.raises(plans.PlanError, match="both 0") as exc:
        plans.argo_plan("r", "default", spec(maxSurge=0, maxUnavailable="0%"))
    assert "spec.strategy.canary.maxSurge" in str(exc.value) and "set maxSurge: 1" in str(
        exc.value)
    with pytest.raises(plans.PlanError, match="percentage"):
        plans.argo_plan("r", "default", spec(maxSurge="lots"))
    assert plans.argo_plan("r", "default", spec(maxSurge=1, maxUnavailable=0)).steps


def test_bounds_reads_the_rollout_spec() -> None:
    b = bounds({"replicas": 4, "strategy": {"canary": {"maxSurge": 1, "maxUnavailable": 0}}})
    assert (b.max_total, b.min_available) == (5, 4)
    assert bounds({"strategy": {"canary": {}}}) == Bounds(1, 1, 0)


# ---- Argo's approximation of a weight by whole replicas -------------------------------------


@pytest.mark.parametrize(("replicas", "weight", "surge", "want"), [
    (4, 25, 1, (1, 3)),
    (10, 10, 1, (1, 9)),
    (10, 30, 3, (3, 7)),
    (3, 50, 1, (2, 2)),    # 2 of 4 is exactly 50%: surging one replica gets closer
    (3, 50, 0, (2, 1)),    # tie between 1 and 2 of 3: the larger canary
    (10, 5, 1, (1, 10)),   # 1 of 11 (9.1%) is closer to 5% than 1 of 10
    (1, 50, 1, (1, 1)),
    (1, 5, 0, (0, 1)),     # a single replica without surge may leave the canary empty
    (4, 0, 1, (0, 4)),
    (4, 100, 1, (4, 0)),
])
def test_approximate(replicas: int, weight: int, surge: int, want: tuple[int, int]) -> None:
    assert approximate(replicas, weight, surge) == want


@given(st.integers(1, 40), st.integers(0, 100), st.integers(0, 5))
def test_approximate_keeps_both_sets_for_a_split_weight(replicas: int, weight: int,
                                                        surge: int) -> None:
    canary, stable = approximate(replicas, weight, surge)
    assert replicas <= canary + stable <= replicas + (1 if surge else 0)
    if 0 < weight < 100 and (replicas > 1 or surge > 0):
        assert canary >= 1 and stable >= 1
    if weight == 0:
        assert (canary, stable) == (0, replicas)
    if weight == 100:
        assert (canary, stable) == (replicas, 0)
    # no whole split of the same total is closer to the weight
    total = canary + stable
    assert all(abs(c * 100 / total - weight) >= abs(canary * 100 / total - weight) - 1e-9
               for c in range(1 if 0 < weight < 100 and total > 1 else 0, total))


# ---- a simulated cluster ---------------------------------------------------------------------

# how sets become ready: each step, a set's not-ready replicas each become ready or not
Readiness = Callable[[int], int]


def _grow(ready: dict[str, int], spec: dict[str, int], draw: Callable[[int], int]
          ) -> dict[str, int]:
    """After a step: a shrunk set lost its not-ready replicas first; some new ones got ready."""
    out = {}
    for h, n in spec.items():
        have = min(ready.get(h, 0), n)
        out[h] = have + draw(n - have)
    return out


fences = st.tuples(
    st.one_of(st.none(), st.integers(0, 3), st.sampled_from(["0%", "10%", "25%", "50%"])),
    st.one_of(st.none(), st.integers(0, 3), st.sampled_from(["0%", "10%", "25%", "50%"])),
).filter(lambda f: not both_zero(*f))


def _bounds(replicas: int, fence: tuple[object, object]) -> Bounds:
    surge, unavailable = fenceposts(fence[0], fence[1], replicas)  # type: ignore[arg-type]
    return Bounds(replicas, surge, unavailable)


def _drive(b: Bounds, weight: int, canary: str, stable: str, spec: dict[str, int],
           ready: dict[str, int], draw: Callable[[int], int], steps: int = 400
           ) -> tuple[dict[str, int], dict[str, int]]:
    """Step until the counts are reached with every replica ready, checking on every step
    that the total never exceeds replicas + surge (unless it already did, then it never
    grows) and availability never drops below replicas - unavailable (unless it already
    was below, then it never drops)."""
    for _ in range(steps):
        before_total = sum(spec.values())
        before_avail = sum(min(ready.get(h, 0), n) for h, n in spec.items())
        nxt = step_sets(b, weight, canary, stable, spec, ready)
        total = sum(nxt.values())
        assert total <= max(b.max_total, before_total), (spec, ready, nxt)
        if total > b.max_total:
            assert total <= before_total
        after_avail = sum(min(ready.get(h, 0), n) for h, n in nxt.items())
        assert after_avail >= min(before_avail, b.min_available), (spec, ready, nxt)
        if all(ready.get(h, 0) >= n for h, n in spec.items()) and nxt == spec:
            return spec, ready  # settled with everything ready
        spec = {h: n for h, n in nxt.items()}
        ready = _grow(ready, spec, draw)
    raise AssertionError(f"no progress: {spec} {ready}")


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 10), fences, st.lists(st.integers(0, 100), min_size=1, max_size=4),
       st.booleans(), st.data())
def test_basic_canary_stays_within_surge_and_unavailable_and_finishes(
    replicas: int, fence: tuple[object, object], weights: list[int], abort: bool,
    data: st.DataObject,
) -> None:
    b = _bounds(replicas, fence)
    calls = [0]

    def draw(waiting: int) -> int:  # random, but a waiting replica gets ready now and then
        calls[0] += 1
        if not waiting:
            return 0
        return max(data.draw(st.integers(0, waiting)), 1 if calls[0] % 3 == 0 else 0)

    spec, ready = {"A": replicas}, {"A": replicas}
    for weight in sorted(weights):  # the steps of a rollout from A to B
        spec, ready = _drive(b, weight, "B", "A", spec, ready, draw)
        assert at_desired(b, weight, Counts(spec.get("B", 0), ready.get("B", 0)),
                          Counts(spec["A"], ready["A"]))
    if abort:  # back to A: the canary drains as A grows
        spec, ready = _drive(b, 0, "B", "A", spec, ready, draw)
        assert spec == {"B": 0, "A": replicas}
    else:  # promoted: B is the stable one, A an older set that must go
        spec, ready = _drive(b, 100, "B", "B", spec, ready, draw)
        assert spec == {"B": replicas}


@given(st.integers(1, 10), fences)
def test_settle_reaches_the_step_counts_without_readiness(replicas: int,
                                                         fence: tuple[object, object]) -> None:
    b = _bounds(replicas, fence)
    spec = settle(b, 30, "B", "A", {"A": replicas})
    assert (spec["B"], spec["A"]) == approximate(replicas, 30, b.surge)
    assert settle(b, 0, "A", "A", {}) == {"A": replicas}


def test_basic_canary_one_step_examples() -> None:
    ten = Bounds(10, 1, 1)
    assert basic_canary(ten, 10, Counts(0, 0), Counts(10, 10)) == (1, 9)
    assert basic_canary(Bounds(10, 3, 0), 30, Counts(0, 0), Counts(10, 10)) == (3, 10)
    assert basic_canary(Bounds(10, 0, 5), 30, Counts(0, 0), Counts(10, 10)) == (0, 7)
    assert basic_canary(Bounds(1, 1, 0), 5, Counts(0, 0), Counts(1, 1)) == (1, 1)
    # replicas 4, surge 1, unavailable 0: one canary first; the stable waits until it is ready
    four = Bounds(4, 1, 0)
    assert basic_canary(four, 50, Counts(0, 0), Counts(4, 4)) == (1, 4)
    assert basic_canary(four, 50, Counts(1, 0), Counts(4, 4)) == (1, 4)
    assert basic_canary(four, 50, Counts(1, 1), Counts(4, 4)) == (1, 3)
    # an older set must be gone before the canary or the stable shrinks
    assert basic_canary(four, 50, Counts(2, 2), Counts(3, 3), [Counts(1, 1)]) == (2, 3)


# ---- with a traffic router ---------------------------------------------------------------------


def test_traffic_routed_scales_the_canary_by_weight_and_keeps_the_stable_full() -> None:
    assert traffic_routed(10, 25, canary_scale={}) == (3, 10)
    assert traffic_routed(10, 25, canary_scale={"replicas": 1}) == (1, 10)
    assert traffic_routed(10, 25, canary_scale={"weight": 50}) == (5, 10)
    # dynamicStableScale: the stable shrinks only as far as the traffic it still gets
    assert traffic_routed(10, 60, canary_scale={}, dynamic_stable_scale=True,
                          actual_weight=20) == (6, 8)
    assert traffic_routed(10, 60, canary_scale={}, dynamic_stable_scale=True,
                          actual_weight=60) == (6, 4)
    # aborting: the canary keeps what its actual traffic needs until the traffic has left
    assert traffic_routed(10, 0, canary_scale={}, dynamic_stable_scale=True,
                          actual_weight=60, abort=True) == (6, 10)


# ---- a Deployment's rolling update (the local supervisor) ---------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 10), fences, st.integers(0, 10), st.data())
def test_rolling_update_bounds_and_finishes(replicas: int, fence: tuple[object, object],
                                            old_ready_start: int, data: st.DataObject) -> None:
    surge, unavailable = fenceposts(fence[0], fence[1], replicas)  # type: ignore[arg-type]
    rolling = Rolling(replicas, surge, unavailable)
    new, old = Counts(0, 0), Counts(replicas, min(old_ready_start, replicas))
    for i in range(200):
        total, avail = new.spec + old.spec, new.available + old.available
        new_spec, old_spec = rolling_step(rolling, new, old)
        assert new_spec + old_spec <= max(replicas + surge, total)
        after = min(new.available, new_spec) + min(old.available, old_spec)
        assert after >= min(avail, replicas - unavailable)
        if (new_spec, old_spec) == (new.spec, old.spec) and new.available == new.spec:
            assert (new_spec, old_spec) == (replicas, 0)
            return
        grown = min(new.available, new_spec)
        waiting = new_spec - grown
        if waiting:  # random readiness, but one gets ready at least every other step
            grown += max(data.draw(st.integers(0, waiting)), i % 2)
        new = Counts(new_spec, grown)
        old = Counts(old_spec, min(old.available, old_spec))
    raise AssertionError("the rolling update made no progress")


def test_rolling_update_one_step_at_a_time_with_surge_1_unavailable_0() -> None:
    rolling = Rolling(4, 1, 0)
    assert rolling_step(rolling, Counts(0, 0), Counts(4, 4)) == (1, 4)
    assert rolling_step(rolling, Counts(1, 0), Counts(4, 4)) == (1, 4)  # wait for readiness
    assert rolling_step(rolling, Counts(1, 1), Counts(4, 4)) == (1, 3)
    assert rolling_step(rolling, Counts(1, 1), Counts(3, 3)) == (2, 3)
    # within the budget, a not-ready old replica goes although only 3 of 4 are ready:
    # it serves nothing (the caller removes not-ready replicas first)
    assert rolling_step(rolling, Counts(1, 1), Counts(4, 2)) == (1, 3)


# ---- validation and a Deployment's strategy -------------------------------------------------

ROLLOUT = """apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: r}
spec:
  replicas: 4
  selector: {matchLabels: {app: r}}
  template:
    metadata: {labels: {app: r}}
    spec:
      containers: [{name: a, image: x, command: [tollway, demo-app]}]
  strategy:
    canary: {maxSurge: SURGE, maxUnavailable: UNAVAILABLE, steps: [{setWeight: 50}]}
"""
DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec:
  replicas: 4
  strategy: STRATEGY
  selector: {matchLabels: {app: d}}
  template:
    metadata: {labels: {app: d}}
    spec:
      containers: [{name: a, image: x, command: [tollway, demo-app]}]
"""


@pytest.mark.parametrize(("surge", "unavailable", "error"), [
    ("0", '"0%"', "cannot both be 0"),
    ('"many"', "1", "must be a count or a percentage"),
    ("1", "0", None),
    ('"25"', '"10%"', None),
])
def test_rollout_validation_names_the_field_and_the_fix(surge: str, unavailable: str,
                                                        error: str | None) -> None:
    from tollway.config import load

    res = load.load_text(ROLLOUT.replace("SURGE", surge).replace("UNAVAILABLE", unavailable),
                         file="r.yaml")
    if error is None:
        assert res.ok, [f.render() for f in res.findings]
        return
    (finding,) = [f for f in res.findings if f.is_error]
    rendered = finding.render()
    assert error in rendered and "spec.strategy.canary" in rendered and "r.yaml" in rendered


@pytest.mark.parametrize(("strategy", "error", "want"), [
    ("{}", None, Rolling(4, 1, 1)),
    ("{type: Recreate}", None, Rolling(4, 0, 4)),
    ('{rollingUpdate: {maxSurge: 2, maxUnavailable: "50%"}}', None, Rolling(4, 2, 2)),
    ('{rollingUpdate: {maxSurge: 0, maxUnavailable: "0%"}}', "cannot both be 0", None),
    ('{rollingUpdate: {maxSurge: "2"}}', "must be a count or a percentage", None),
])
def test_deployment_strategy(strategy: str, error: str | None, want: Rolling | None) -> None:
    from tollway.config import load
    from tollway.control.local.plan import rolling_of

    res = load.load_text(DEPLOYMENT.replace("STRATEGY", strategy), file="d.yaml")
    if error is not None:
        assert not res.ok and error in res.findings[0].render()
        return
    assert res.ok, [f.render() for f in res.findings]
    (dep,) = res.resources.of_kind("Deployment")
    assert rolling_of(dep) == want


def test_dynamic_stable_scale_sizes_the_stable_by_its_traffic() -> None:
    from tollway.rollout import traffic
    from tollway.rollout.model import Phase, RolloutState

    spec = {"replicas": 10, "strategy": {"canary": {"dynamicStableScale": True,
                                                    "trafficRouting": {"istio": {}}}}}
    state = RolloutState(style="argo-canary", phase=Phase.PROGRESSING, revision="b",
                         stable_revision="a", weight=20, scale_weight=60)
    assert traffic.stable_replicas(spec, state) == 8  # traffic is still 80% on it
    state.weight = 60
    assert traffic.stable_replicas(spec, state) == 4
    state.weight, state.abort = 0, True
    assert traffic.stable_replicas(spec, state) == 10
    plain = {"replicas": 10, "strategy": {"canary": {"trafficRouting": {"istio": {}}}}}
    state.weight, state.abort = 60, False
    assert traffic.stable_replicas(plain, state) == 10
