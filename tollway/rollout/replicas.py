"""How many replicas each of a rollout's replica sets should run next [pure].

Argo Rollouts sizes replica sets in two ways (utils/replicaset/canary.go, read not copied):

- **Basic canary** (no `trafficRouting`): the weight *is* the share of replicas, since the
  Service selects both sets. The controller approximates the weight with whole replicas
  (`approximate`), then moves toward it one bounded step at a time (`basic_canary`):
  never more than `replicas + maxSurge` replicas should run, and a set only shrinks while
  at least `replicas - maxUnavailable` stay available. Defaults 25% / 25%; surge rounds
  up, unavailable rounds down; both resolving to 0 makes unavailable 1; both set to 0 is
  refused by validation. Older sets (a previous stable after promotion, a canary replaced
  mid-rollout) shrink first, their unavailable replicas at once (`scale_down_older`).
- **With a traffic router**: traffic follows the route weights, so the canary is scaled to
  `ceil(replicas × weight / 100)` (or `setCanaryScale`) at once and the stable stays full;
  with `dynamicStableScale` the stable shrinks to the larger of its desired and actual
  traffic share (`traffic_routed`). maxSurge/maxUnavailable do not apply, as in Argo.

A step is taken on every controller sync with the availability then observed, so it is
the observed readiness, not a timer, that paces the rollout.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tollway.control.local.plan import Counts, StrategyError, fenceposts


@dataclass(frozen=True, slots=True)
class Bounds:
    """A rollout's resolved fenceposts: `replicas`, `surge` (extra allowed) and
    `unavailable` (how far below `replicas` availability may go)."""

    replicas: int
    surge: int
    unavailable: int

    @property
    def max_total(self) -> int:
        return self.replicas + self.surge

    @property
    def min_available(self) -> int:
        return self.replicas - self.unavailable


def bounds(spec: Mapping[str, Any]) -> Bounds:
    """The Rollout spec's replicas (default 1) and canary maxSurge/maxUnavailable.

    Raises StrategyError for a value that is neither a count nor a percentage."""
    replicas = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
    canary = (spec.get("strategy") or {}).get("canary") or {}
    surge, unavailable = fenceposts(canary.get("maxSurge"), canary.get("maxUnavailable"),
                                    replicas)
    return Bounds(replicas, surge, unavailable)


def _delta(weight: int, canary: int, total: int) -> float:
    return abs(canary * 100 / total - weight)


def approximate(replicas: int, weight: int, surge: int) -> tuple[int, int]:
    """(canary, stable) replica counts whose ratio is closest to `weight`.

    The canary is `replicas × weight / 100` rounded up or down, over a total of `replicas`
    or, when surge is allowed, `replicas + 1` if that gets closer. For a weight strictly
    between 0 and 100 neither set drops to zero (unless there is one replica and no
    surge). When rounding down and up are equally far, the larger canary is taken."""
    if replicas <= 0:
        return 0, 0
    exact = replicas * weight / 100
    up, down = math.ceil(exact), math.floor(exact)
    zero_ok = weight in (0, 100) or (replicas == 1 and surge == 0)
    totals = (replicas, replicas + 1) if surge > 0 else (replicas,)
    options: list[tuple[int, int]] = []
    for total in totals:
        if up < total or zero_ok or total > replicas:
            options.append((up, total))
        tied = (total * weight / 100) % 1 == 0.5
        if not tied and (down != 0 or zero_ok):
            options.append((down, total))
    if not options:
        return 0, replicas
    best = options[0]
    for option in options[1:]:  # strictly closer only: earlier options win ties
        if _delta(weight, *option) < _delta(weight, *best):
            best = option
    return best[0], best[1] - best[0]


def _counted(rs: Counts | None, ignore_availability: bool) -> int:
    """What a set contributes when deciding how much may be scaled down: its spec if it is
    already shrinking (its extra ready replicas are going) or its availability is ignored
    (it is the set being drained, not-ready replicas go first), else its ready replicas."""
    if rs is None:
        return 0
    if rs.spec < rs.available or ignore_availability:
        return rs.spec
    return rs.available


def basic_canary(b: Bounds, weight: int, canary: Counts | None, stable: Counts | None,
                 older: Sequence[Counts] = ()) -> tuple[int, int]:
    """The next (canary, stable) counts of a basic canary moving toward `weight`.

    `stable` is None when there is no separate stable set (the canary is the stable one,
    e.g. just after promotion): the canary then grows to `replicas`. The stable set grows
    before the canary (so an abort gets capacity back before the canary shrinks); older
    sets must be gone before the canary or stable shrinks."""
    c = canary.spec if canary else 0
    s = stable.spec if stable else 0
    if stable is None:
        want_c, want_s = b.replicas, 0
    else:
        want_c, want_s = approximate(b.replicas, weight, b.surge)
    room = b.max_total - (c + s + sum(o.spec for o in older))
    if stable is not None and s < want_s and room > 0:
        grow = min(want_s - s, room)
        s, room = s + grow, room - grow
    if c < want_c and room > 0:
        c += min(want_c - c, room)
    if any(o.spec > 0 for o in older):
        return c, s
    increasing = canary is None or want_c >= canary.spec
    counted = _counted(canary, not increasing) + _counted(stable, increasing)
    budget = counted - b.min_available
    if budget <= 0:
        return c, s
    if increasing and stable is not None and s > want_s:
        s = max(want_s, s - budget)
    elif not increasing and c > want_c:
        c = max(want_c, c - budget)
    return c, s


def scale_down_older(b: Bounds, available: int, older: Sequence[Counts]) -> list[int]:
    """Next counts of the older sets, in the order given (oldest first).

    Their not-ready replicas go at once (they serve nothing); ready ones only while the
    `available` total (every set's ready replicas) stays at least `replicas -
    maxUnavailable`."""
    budget = available - b.min_available
    out = []
    for rs in older:
        spec = rs.spec - max(0, rs.spec - rs.available)
        cut = max(0, min(budget, spec))
        budget -= cut
        out.append(spec - cut)
    return out


def at_desired(b: Bounds, weight: int, canary: Counts | None, stable: Counts | None,
               older: Sequence[Counts] = ()) -> bool:
    """Argo's "the step's replica counts are reached": both sets at their approximated
    counts with every replica available, and no older set left."""
    want_c, want_s = (approximate(b.replicas, weight, b.surge) if stable is not None
                      else (b.replicas, 0))
    c = canary or Counts(0, 0)
    s = stable or Counts(0, 0)
    return (c.spec == want_c == c.available and s.spec == want_s == s.available
            and all(o.spec == 0 for o in older))


def step_sets(b: Bounds, weight: int, canary: str, stable: str, spec: Mapping[str, int],
              ready: Mapping[str, int]) -> dict[str, int]:
    """One step for every replica set of a basic canary, by revision: the canary and the
    stable move toward `weight` (`basic_canary`), every other set shrinks
    (`scale_down_older`, in the order of `spec`). `canary == stable` means no rollout is
    in progress: that set grows to `replicas`. Sets that reach zero are dropped, except
    the canary and the stable."""
    separate = canary != stable
    older = [h for h, n in spec.items() if h not in (canary, stable) and n > 0]

    def counts(h: str) -> Counts:
        return Counts(spec.get(h, 0), ready.get(h, 0))

    older_counts = [counts(h) for h in older]
    c, s = basic_canary(b, weight, counts(canary), counts(stable) if separate else None,
                        older_counts)
    available = sum(min(ready.get(h, 0), n) for h, n in spec.items())
    out = {canary: c}
    if separate:
        out[stable] = s
    for h, n in zip(older, scale_down_older(b, available, older_counts), strict=True):
        if n > 0:
            out[h] = n
    return out


def settle(b: Bounds, weight: int, canary: str, stable: str,
           spec: Mapping[str, int]) -> dict[str, int]:
    """The counts `step_sets` reaches when every replica is ready as soon as it should run
    (nothing to observe readiness with): step until nothing changes."""
    now = dict(spec)
    for _ in range(4 * (b.replicas + b.surge) + 8):
        nxt = step_sets(b, weight, canary, stable, now, now)
        if nxt == now:
            break
        now = nxt
    return now


def traffic_routed(replicas: int, weight: int, *, canary_scale: Mapping[str, Any],
                   dynamic_stable_scale: bool = False, actual_weight: int | None = None,
                   abort: bool = False) -> tuple[int, int]:
    """(canary, stable) with a traffic router: the canary sized to `weight` (or as
    setCanaryScale says), the stable full; with dynamicStableScale the stable is sized to
    the larger of its desired and its actual traffic share, so it shrinks only after
    traffic has left it (and an aborting canary only after traffic has left the canary)."""
    if canary_scale.get("replicas") is not None:
        canary = int(canary_scale["replicas"])
    else:
        share = (float(canary_scale["weight"]) if canary_scale.get("weight") is not None
                 else weight)
        canary = math.ceil(replicas * share / 100)
    if not dynamic_stable_scale:
        return canary, replicas
    actual = weight if actual_weight is None else actual_weight
    stable = max(math.ceil(replicas * (100 - weight) / 100),
                 math.ceil(replicas * (100 - actual) / 100))
    if abort:
        canary = max(canary, math.ceil(replicas * actual / 100))
    return canary, stable


__all__ = ["Bounds", "Counts", "StrategyError", "approximate", "at_desired", "basic_canary",
           "bounds", "scale_down_older", "settle", "step_sets", "traffic_routed"]
