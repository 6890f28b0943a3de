"""Weighted choice from one uniform draw, and the mirror percentage test.

Weights are compiled into cumulative sums once; a pick is one bisect. Weights are relative
to their sum (Istio does not require 100); zero-weight entries are never chosen; a single
entry gets everything whatever its weight (Istio).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence


class WeightedPicker:
    """Pick an index with probability weight/sum from a draw r in [0, 1)."""

    __slots__ = ("_cumulative", "_last", "_n", "_total")

    def __init__(self, weights: Sequence[int]) -> None:
        if not weights:
            raise ValueError("WeightedPicker needs at least one weight")
        if any(w < 0 for w in weights):
            raise ValueError("weights must be >= 0")
        total = 0
        cumulative: list[int] = []
        for w in weights:
            total += w
            cumulative.append(total)
        self._n = len(weights)
        self._total = total
        # Cumulative shares as floats: a pick is one bisect of the draw itself, and exact
        # integer ratios make the result identical for proportional weights.
        self._cumulative = tuple(c / total for c in cumulative) if total else ()
        # The last index with a non-zero weight: where float rounding at r ~ 1 must land.
        self._last = max((i for i, w in enumerate(weights) if w > 0), default=self._n - 1)

    @property
    def total(self) -> int:
        return self._total

    @property
    def cumulative(self) -> tuple[float, ...]:
        """Cumulative shares (empty when every weight is 0): what `pick` bisects."""
        return self._cumulative

    @property
    def last(self) -> int:
        """The last index with a non-zero weight (where a draw rounding to 1 lands)."""
        return self._last

    def pick(self, r: float) -> int:
        """The chosen index. With all weights zero the choice is uniform (never configured
        by a valid VirtualService with several destinations, but must not crash)."""
        if self._n == 1:
            return 0
        if self._total == 0:
            return min(int(r * self._n), self._n - 1)
        i = bisect_right(self._cumulative, r)
        return i if i <= self._last else self._last


def percent_hit(percent: float, r: float) -> bool:
    """True for a fraction `percent`/100 of uniform draws r in [0, 1) (mirror, fault)."""
    return r * 100.0 < percent
