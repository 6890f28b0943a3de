"""Passive outlier detection for one cluster's endpoints (Envoy semantics, Istio defaults).

Fed one `Outcome` per upstream attempt; answers which endpoint indices are usable now.

- consecutive 5xx counts 5xx responses and, unless split_external_local_origin_errors,
  locally originated failures (connect failure, reset, timeout: Envoy maps them to
  503/504); consecutive gateway errors count 502/503/504 the same way; any non-5xx
  response resets both. With the split, local failures feed their own counter
  (consecutive_local_origin, Envoy's default 5) and any response resets it.
- A counter reaching its threshold asks for an ejection and restarts (Envoy); the ask is
  granted only while the ejected share is below max_ejection_percent (so one host can be
  ejected whenever the percentage is above 0).
- An ejection lasts base_ejection_time x times ejected, capped at max(300 s, base); the
  multiplier decays by one per base_ejection_time a host stays healthy (checked at the
  `interval` sweeps, which run lazily when time is passed in).
- Panic: when the healthy share falls below min_health_percent (0 disables), every host
  is usable. With panic off and every host ejected, `usable` is empty: 503 UH.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, NamedTuple

from tollway.proxy.core.exchange import TIMEOUT, Outcome
from tollway.snapshot import types

_INF: Final = float("inf")
MAX_EJECTION_TIME: Final = 300.0
DEFAULT_LOCAL_ORIGIN: Final = 5


class HostStats(NamedTuple):
    ejected: bool
    times_ejected: int
    consecutive_5xx: int
    consecutive_gateway: int
    consecutive_local_origin: int
    ejected_until: float | None


class OutlierDetector:
    """State for n endpoints, indexed like the cluster's endpoint tuple."""

    __slots__ = ("_all", "_base", "_c5", "_cg", "_cl", "_ejected", "_gw", "_interval",
                 "_last_change", "_local", "_max_pct", "_min_health", "_n", "_next_return",
                 "_next_sweep", "_split", "_t5", "_tg", "_times", "_tl", "_until",
                 "_usable")  # fmt: skip

    def __init__(self, spec: types.OutlierDetection, n: int) -> None:
        self._n = n
        self._t5 = spec.consecutive_5xx or 0  # 0: off
        self._tg = spec.consecutive_gateway or 0
        self._split = spec.split_external_local_origin_errors
        self._tl = (spec.consecutive_local_origin or DEFAULT_LOCAL_ORIGIN) if self._split else 0
        self._interval = spec.interval if spec.interval > 0 else 10.0
        self._base = spec.base_ejection_time
        self._max_pct = spec.max_ejection_percent
        self._min_health = spec.min_health_percent
        self._c5 = [0] * n
        self._cg = [0] * n
        self._cl = [0] * n
        self._times = [0] * n
        self._until = [0.0] * n  # 0.0: not ejected
        self._last_change = [0.0] * n
        self._ejected = 0
        self._all = tuple(range(n))
        self._usable: tuple[int, ...] = self._all
        self._next_return = _INF
        self._next_sweep: float | None = None
        self._gw = self._tg > 0
        self._local = self._tl > 0

    # ------------------------------------------------------------ observations

    def observe(self, index: int, outcome: Outcome, now: float) -> bool:
        """Record one attempt's outcome; True if this observation ejected the host."""
        self._tick(now)
        local = outcome.local_failure
        if local is not None:
            if self._split:
                self._cl[index] += 1
                if self._local and self._cl[index] >= self._tl:
                    self._cl[index] = 0
                    return self._eject(index, now)
                return False
            status = 504 if local == TIMEOUT else 503
        else:
            status = outcome.status or 0
            if self._split:
                self._cl[index] = 0
        if status < 500 or status > 599:
            self._c5[index] = 0
            self._cg[index] = 0
            return False
        ejected = False
        if 502 <= status <= 504:
            self._cg[index] += 1
            if self._gw and self._cg[index] >= self._tg:
                self._cg[index] = 0
                ejected = self._eject(index, now)
        else:
            self._cg[index] = 0
        self._c5[index] += 1
        if self._t5 and self._c5[index] >= self._t5:
            self._c5[index] = 0
            ejected = self._eject(index, now) or ejected
        return ejected

    def observe_status(self, index: int, status: int, now: float) -> bool:
        """`observe(index, Outcome(status), now)` for a status the upstream returned,
        without building the Outcome: the per-response path (a non-5xx status only resets
        the host's counters)."""
        if 500 <= status <= 599:
            return self.observe(index, Outcome(status, None), now)
        nxt = self._next_sweep
        if nxt is None or now >= nxt or now >= self._next_return:
            self._tick(now)
        if self._split:
            self._cl[index] = 0
        self._c5[index] = 0
        self._cg[index] = 0
        return False

    def _eject(self, index: int, now: float) -> bool:
        if self._until[index]:
            return False  # already out
        if self._ejected * 100 >= self._max_pct * self._n:
            return False
        self._times[index] += 1
        duration = min(self._base * self._times[index], max(MAX_EJECTION_TIME, self._base))
        until = now + duration
        self._until[index] = until
        self._last_change[index] = now
        self._ejected += 1
        if until < self._next_return:
            self._next_return = until
        self._recompute()
        return True

    def carry_over(self, old: OutlierDetector, mapping: Sequence[int | None]) -> None:
        """Keep per-host state across a config push that changed the endpoint list (Envoy
        keeps a host's outlier state while the host stays). `mapping[new] = old index`,
        or None for an endpoint that is new. Call before the detector is used."""
        for new, prev in enumerate(mapping):
            if prev is None or new >= self._n or prev >= old._n:
                continue
            self._c5[new] = old._c5[prev]
            self._cg[new] = old._cg[prev]
            self._cl[new] = old._cl[prev]
            self._times[new] = old._times[prev]
            self._until[new] = old._until[prev]
            self._last_change[new] = old._last_change[prev]
        self._ejected = sum(1 for u in self._until if u)
        self._next_return = min((u for u in self._until if u), default=_INF)
        self._next_sweep = old._next_sweep
        self._recompute()

    # ------------------------------------------------------------ time

    def _tick(self, now: float) -> None:
        if now >= self._next_return:
            self._return_due(now)
        nxt = self._next_sweep
        if nxt is None:
            self._next_sweep = now + self._interval
        elif now >= nxt:
            self._sweep(now)
            self._next_sweep = now + self._interval

    def _return_due(self, now: float) -> None:
        nxt = _INF
        for i, until in enumerate(self._until):
            if not until:
                continue
            if until <= now:
                self._until[i] = 0.0
                self._last_change[i] = until
                self._ejected -= 1
                self._c5[i] = self._cg[i] = self._cl[i] = 0
            elif until < nxt:
                nxt = until
        self._next_return = nxt
        self._recompute()

    def _sweep(self, now: float) -> None:
        """Decay the ejection multiplier of hosts that stayed healthy for a base time."""
        for i, times in enumerate(self._times):
            if times and not self._until[i] and now - self._last_change[i] >= self._base:
                self._times[i] = times - 1
                self._last_change[i] = now

    def _recompute(self) -> None:
        if not self._ejected:
            self._usable = self._all
        else:
            until = self._until
            self._usable = tuple(i for i in self._all if not until[i])

    # ------------------------------------------------------------ queries

    def usable(self, now: float) -> tuple[int, ...]:
        """Indices the balancer may pick from now (all of them in panic)."""
        if self._ejected:
            self._tick(now)
            if self.in_panic(now):
                return self._all
        return self._usable

    def in_panic(self, now: float) -> bool:
        """Healthy share below min_health_percent (0 disables panic)."""
        if now >= self._next_return:
            self._return_due(now)
        healthy = self._n - self._ejected
        return self._min_health > 0 and healthy * 100 < self._min_health * self._n

    def is_ejected(self, index: int, now: float) -> bool:
        until = self._until[index]
        return bool(until) and until > now

    def statistics(self) -> tuple[HostStats, ...]:
        return tuple(
            HostStats(
                bool(self._until[i]), self._times[i], self._c5[i], self._cg[i], self._cl[i],
                self._until[i] or None,
            )
            for i in range(self._n)
        )
