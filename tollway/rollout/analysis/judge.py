"""The statistical judge: canary against stable over the same windows, sequentially.

Why this test. Flagger and Argo compare the canary alone to an absolute threshold once
per interval, so a slightly bad canary passes and a healthy one at a noisy moment fails.
We compare canary and stable counts from the same window. Conditioned on the number of
"bad" events (errors, or requests slower than a latency threshold) seen in a window, the
number that came from the canary is binomial with p = r·n_c / (r·n_c + n_s), where r is
the canary/stable rate ratio — the stable rate (a nuisance) drops out. We run Wald's
sequential probability ratio test of r = r0 (no worse than `tolerance` allows) against
r = r1 (`detect_ratio`, the degradation we must catch), summing the log likelihood ratio
over windows. Under r <= r0 the likelihood ratio is a non-negative supermartingale, so by
Ville's inequality the chance it EVER reaches 1/alpha is at most alpha, however often we
look: the false-rollback rate is bounded by `alpha`. It falls below beta when the data
favour r0 (pass). A canary with almost no bad events passes by an absolute bound instead
(`quiet_rate`), since a ratio test learns nothing from zero events. Anything else is
inconclusive, with an estimate of the canary requests still needed.

Latency uses the same test on "slow" requests (slower than a threshold fixed once, by
default the upper bound of the stable's p90 bucket), which compares the distributions'
tails without assuming a shape.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from statistics import NormalDist
from typing import Any, Literal

Verdict = Literal["pass", "fail", "inconclusive"]


@dataclass(frozen=True, slots=True)
class JudgeConfig:
    tolerance: float = 0.0  # H0: canary rate <= stable rate x (1 + tolerance)
    detect_ratio: float = 2.0  # H1: canary rate = stable rate x detect_ratio
    fail_mixture: tuple[float, ...] = (1.0, 2.0, 4.0)  # x detect_ratio, equal weights
    alpha: float = 0.005  # bound on failing a canary that meets H0 (false rollback)
    beta: float = 0.05  # probability of passing a canary at detect_ratio
    quiet_rate: float = 0.001  # errors: canary upper bound below this passes outright
    quiet_slow_rate: float = 0.01  # latency: same for slow requests
    min_requests: int = 200  # never pass on fewer canary requests
    latency_quantile: float = 0.9  # threshold = stable's bucket bound at this quantile
    latency_threshold_ms: float | None = None  # or fixed by the user

    @property
    def fail_bound(self) -> float:
        return math.log(1.0 / self.alpha)

    @property
    def pass_bound(self) -> float:
        return math.log(self.beta / (1.0 - self.alpha))

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> JudgeConfig:
        names = {f for f in cls.__dataclass_fields__}
        kwargs = {k: raw[k] for k in raw if k in names}
        cfg = cls(**kwargs)
        if cfg.detect_ratio <= 1.0 + cfg.tolerance:
            raise ValueError("detect_ratio must be larger than 1 + tolerance")
        if not (0 < cfg.alpha < 1 and 0 < cfg.beta < 1):
            raise ValueError("alpha and beta must be between 0 and 1")
        return cfg


@dataclass(frozen=True, slots=True)
class Window:
    """Requests seen in one window, split by version; `slow` = slower than the threshold."""

    canary_total: int
    canary_errors: int
    stable_total: int
    stable_errors: int
    canary_slow: int = 0
    stable_slow: int = 0


@dataclass(frozen=True, slots=True)
class Signal:
    """Accumulated evidence for one kind of bad event (errors or slow requests).

    `llr` is the log likelihood ratio at detect_ratio (the pass test); `mix` holds one
    log likelihood ratio per alternative of the fail mixture.
    """

    llr: float = 0.0
    mix: tuple[float, ...] = ()
    canary_total: int = 0
    canary_bad: int = 0
    stable_total: int = 0
    stable_bad: int = 0


@dataclass(frozen=True, slots=True)
class JudgeState:
    errors: Signal = field(default_factory=Signal)
    latency: Signal = field(default_factory=Signal)
    windows: int = 0
    latency_threshold_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> JudgeState:
        return cls(
            errors=_signal_from(raw.get("errors", {})),
            latency=_signal_from(raw.get("latency", {})),
            windows=int(raw.get("windows", 0)),
            latency_threshold_ms=raw.get("latency_threshold_ms"),
        )


def _signal_from(raw: Mapping[str, Any]) -> Signal:
    return Signal(**{**raw, "mix": tuple(raw.get("mix", ()))})


@dataclass(frozen=True, slots=True)
class SignalEvidence:
    name: str
    verdict: Verdict
    canary_rate: float
    stable_rate: float
    canary_total: int
    canary_bad: int
    stable_total: int
    stable_bad: int
    log_likelihood_ratio: float
    reason: str


@dataclass(frozen=True, slots=True)
class Evidence:
    """A verdict with everything needed to explain it (shown by `rollout status`)."""

    verdict: Verdict
    reason: str
    signals: tuple[SignalEvidence, ...]
    fail_bound: float
    pass_bound: float
    alpha: float
    beta: float
    requests_needed: int
    latency_threshold_ms: float | None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["signals"] = [asdict(s) for s in self.signals]
        return out


def _pi(ratio: float, n_c: int, n_s: int) -> float:
    return ratio * n_c / (ratio * n_c + n_s)


def _increment(
    cfg: JudgeConfig, ratio: float, n_c: int, k_c: int, n_s: int, k_s: int
) -> float:
    """Log likelihood ratio `ratio` vs r0 of the canary's share of this window's bad events."""
    if n_c <= 0 or n_s <= 0 or k_c + k_s == 0:
        return 0.0
    p0 = _pi(1.0 + cfg.tolerance, n_c, n_s)
    p1 = _pi(ratio, n_c, n_s)
    return k_c * math.log(p1 / p0) + k_s * math.log((1 - p1) / (1 - p0))


def _mixture_llr(sig: Signal) -> float:
    """log of the equally weighted average of the alternatives' likelihood ratios."""
    if not sig.mix:
        return sig.llr
    top = max(sig.mix)
    return top + math.log(sum(math.exp(v - top) for v in sig.mix) / len(sig.mix))


def _add(sig: Signal, cfg: JudgeConfig, n_c: int, k_c: int, n_s: int, k_s: int) -> Signal:
    ratios = [cfg.detect_ratio * m for m in cfg.fail_mixture]
    mix = sig.mix or tuple(0.0 for _ in ratios)
    return Signal(
        llr=sig.llr + _increment(cfg, cfg.detect_ratio, n_c, k_c, n_s, k_s),
        mix=tuple(v + _increment(cfg, r, n_c, k_c, n_s, k_s) for v, r in zip(mix, ratios,
                                                                            strict=True)),
        canary_total=sig.canary_total + n_c,
        canary_bad=sig.canary_bad + k_c,
        stable_total=sig.stable_total + n_s,
        stable_bad=sig.stable_bad + k_s,
    )


def observe(state: JudgeState, window: Window, cfg: JudgeConfig) -> JudgeState:
    """Fold one window into the evidence (windows must not overlap)."""
    w = window
    if min(w.canary_total, w.stable_total, w.canary_errors, w.stable_errors) < 0:
        raise ValueError("counts cannot be negative")
    return replace(
        state,
        errors=_add(state.errors, cfg, w.canary_total, w.canary_errors, w.stable_total,
                    w.stable_errors),
        latency=_add(state.latency, cfg, w.canary_total, w.canary_slow, w.stable_total,
                     w.stable_slow),
        windows=state.windows + 1,
    )


def poisson_upper(k: int, confidence: float) -> float:
    """Upper confidence bound on a Poisson mean after k events (Wilson-Hilferty)."""
    if k == 0:
        return -math.log(1 - confidence)
    z = _z(confidence)
    n = k + 1
    return n * (1 - 1 / (9 * n) + z / (3 * math.sqrt(n))) ** 3


def _z(p: float) -> float:
    return NormalDist().inv_cdf(p)


def _signal_verdict(
    name: str, sig: Signal, cfg: JudgeConfig, quiet: float
) -> tuple[SignalEvidence, int]:
    rate_c = sig.canary_bad / sig.canary_total if sig.canary_total else 0.0
    rate_s = sig.stable_bad / sig.stable_total if sig.stable_total else 0.0
    upper = poisson_upper(sig.canary_bad, 1 - cfg.beta) / max(sig.canary_total, 1)
    needed = 0
    verdict: Verdict
    mixed = _mixture_llr(sig)
    if mixed >= cfg.fail_bound:
        verdict = "fail"
        reason = (f"canary {name} rate {rate_c:.3%} vs stable {rate_s:.3%}: likelihood ratio "
                  f"{math.exp(mixed):.3g} >= {1 / cfg.alpha:.3g} (false alarm <= {cfg.alpha:g})")
    elif sig.llr <= cfg.pass_bound and sig.canary_total >= cfg.min_requests:
        verdict = "pass"
        reason = (f"canary {name} rate {rate_c:.3%} vs stable {rate_s:.3%}: likelihood ratio "
                  f"{math.exp(sig.llr):.3g} <= {math.exp(cfg.pass_bound):.3g}")
    elif upper <= quiet and sig.canary_total >= cfg.min_requests:
        verdict = "pass"
        reason = (f"canary {name} rate at most {upper:.3%} ({sig.canary_bad} of "
                  f"{sig.canary_total}), below {quiet:.2%}")
    else:
        verdict = "inconclusive"
        needed = _still_needed(sig, cfg, quiet)
        reason = (f"canary {name} rate {rate_c:.3%} vs stable {rate_s:.3%} on "
                  f"{sig.canary_total} requests: not enough evidence yet, about {needed} "
                  f"more canary requests needed")
    ev = SignalEvidence(name, verdict, rate_c, rate_s, sig.canary_total, sig.canary_bad,
                        sig.stable_total, sig.stable_bad, max(mixed, sig.llr), reason)
    return ev, needed


def _still_needed(sig: Signal, cfg: JudgeConfig, quiet: float) -> int:
    """Expected canary requests until the pass bound if the canary is as good as stable."""
    floor = max(cfg.min_requests - sig.canary_total, 0)
    events = sig.canary_bad + sig.stable_bad
    if events == 0 or sig.stable_total == 0 or sig.canary_total == 0:
        by_quiet = math.ceil(poisson_upper(0, 1 - cfg.beta) / quiet) - sig.canary_total
        return max(by_quiet, floor, 1)
    p0 = _pi(1.0 + cfg.tolerance, sig.canary_total, sig.stable_total)
    p1 = _pi(cfg.detect_ratio, sig.canary_total, sig.stable_total)
    kl = p0 * math.log(p0 / p1) + (1 - p0) * math.log((1 - p0) / (1 - p1))
    events_needed = max(sig.llr - cfg.pass_bound, 0.0) / max(kl, 1e-12)
    per_request = events / sig.canary_total
    return max(math.ceil(events_needed / per_request), floor, 1)


def verdict(state: JudgeState, cfg: JudgeConfig) -> Evidence:
    """Fail if any signal fails; pass only when every signal passes; else inconclusive."""
    errors, need_e = _signal_verdict("error", state.errors, cfg, cfg.quiet_rate)
    latency, need_l = _signal_verdict("slow-request", state.latency, cfg, cfg.quiet_slow_rate)
    signals = (errors, latency)
    failing = [s for s in signals if s.verdict == "fail"]
    if failing:
        overall: Verdict = "fail"
        reason = failing[0].reason
    elif all(s.verdict == "pass" for s in signals):
        overall, reason = "pass", "; ".join(s.reason for s in signals)
    else:
        overall = "inconclusive"
        reason = "; ".join(s.reason for s in signals if s.verdict == "inconclusive")
    return Evidence(
        verdict=overall,
        reason=reason,
        signals=signals,
        fail_bound=cfg.fail_bound,
        pass_bound=cfg.pass_bound,
        alpha=cfg.alpha,
        beta=cfg.beta,
        requests_needed=max(need_e, need_l) if overall == "inconclusive" else 0,
        latency_threshold_ms=state.latency_threshold_ms,
    )


# ---- latency histograms -----------------------------------------------------------------


def pick_threshold(buckets: Mapping[float, float], quantile: float) -> float | None:
    """Upper bound of the cumulative-histogram bucket holding `quantile` of the requests."""
    finite = sorted((le, c) for le, c in buckets.items() if math.isfinite(le))
    total = buckets.get(math.inf, finite[-1][1] if finite else 0.0)
    if total <= 0:
        return None
    for le, count in finite:
        if count >= quantile * total:
            return le
    return finite[-1][0] if finite else None


def slow_count(buckets: Mapping[float, float], threshold_ms: float) -> int:
    """Requests slower than the threshold, from Prometheus-style cumulative buckets."""
    finite = sorted((le, c) for le, c in buckets.items() if math.isfinite(le))
    total = buckets.get(math.inf, finite[-1][1] if finite else 0.0)
    at_or_below = 0.0
    for le, count in finite:
        if le <= threshold_ms:
            at_or_below = count
    return max(round(total - at_or_below), 0)


def diff_buckets(new: Mapping[float, float], old: Mapping[float, float]) -> dict[float, float]:
    """Window counts from two cumulative scrapes (a counter reset restarts from zero)."""
    out = {le: c - old.get(le, 0.0) for le, c in new.items()}
    if any(v < 0 for v in out.values()):
        return dict(new)
    return out


def fix_threshold(state: JudgeState, cfg: JudgeConfig,
                  stable_buckets: Mapping[float, float]) -> JudgeState:
    """Choose the latency threshold once, before the first window is folded in."""
    if state.latency_threshold_ms is not None:
        return state
    threshold = cfg.latency_threshold_ms or pick_threshold(stable_buckets, cfg.latency_quantile)
    return replace(state, latency_threshold_ms=threshold)
