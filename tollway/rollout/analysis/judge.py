"""The statistical judge: canary against stable over the same windows, sequentially.

Why this test. Flagger and Argo compare the canary alone to an absolute threshold once
per interval, so a slightly bad canary passes and a healthy one at a noisy moment fails.
We compare canary and stable counts from the same window. Conditioned on the number of
"bad" events (errors, or requests slower than a latency threshold fixed once) seen in a
window, the number that came from the canary is binomial with p = r·n_c / (r·n_c + n_s),
where r is the canary/stable rate ratio: the stable rate (a nuisance that moves with load,
time of day or a shared dependency) drops out, so the test holds whatever it is.

Two e-processes per signal, each a product over windows of factors with mean at most 1
under its null hypothesis, so by Ville's inequality each reaches 1/level with probability
at most `level`, however often it is looked at and whenever the caller stops (optional
stopping: the bounds are real, not tuned to a benchmark):

- fail: null "r <= r0" (r0 = 1 + `tolerance`); the factor is a likelihood ratio mixed over
  the alternatives `fail_mixture` x `detect_ratio` with `fail_weights`. It reaches 1/alpha
  with probability <= alpha when the canary is acceptable: the false-rollback bound.
- pass: null "r >= detect_ratio"; the factor is the likelihood ratio of r0 against
  detect_ratio. It reaches 1/beta with probability <= beta when the canary is bad: the
  bound on promoting a canary `detect_ratio` times (or more) worse than stable.

No overshoot. A plain likelihood ratio jumps by a whole factor per event and usually lands
well past 1/alpha, so its real false-alarm rate is well below alpha: bound wasted. When
one window's outcome could cross the bound, we cap the factor at the bound and give the
capped mass back to every other outcome (factor = min(c·LR(k), bound/wealth), c >= 1
chosen so the mean under the null is still exactly 1). The factor stays non-negative,
monotone in the canary's share and of mean 1, so Ville's bound still holds, and it is
spent on evidence instead of overshoot: a 4x-bad canary is caught in close to the fewest
requests the level allows (docs/rollouts.md, "The judge", has the bound and the numbers).

Two signals share alpha: when the latency signal takes part (its threshold is known
before the first window), it gets `latency_alpha_share` of alpha and errors the rest, so
the false-rollback bound across both is alpha. A canary with almost no bad events passes
by an absolute bound instead (`quiet_rate`), since a ratio test learns nothing from zero
events. Anything else is inconclusive, with an estimate of the canary requests still
needed. Pure: no IO, no clock; `observe` folds one window, `verdict` explains the state.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from statistics import NormalDist
from typing import Any, Literal

Verdict = Literal["pass", "fail", "inconclusive"]
Lean = Literal["bad", "healthy", "unclear"]

_MAX_EXACT_EVENTS = 20_000  # more events in one window: plain ratios (no recycling)


@dataclass(frozen=True, slots=True)
class JudgeConfig:
    tolerance: float = 0.0  # fail null: canary rate <= stable rate x (1 + tolerance)
    detect_ratio: float = 2.0  # pass null: canary rate >= stable rate x detect_ratio
    fail_mixture: tuple[float, ...] = (1.0, 2.5)  # fail alternatives, x detect_ratio
    fail_weights: tuple[float, ...] = (0.1, 0.9)  # their prior weights (sum to 1)
    alpha: float = 0.01  # bound on failing a canary that meets the fail null (false rollback)
    beta: float = 0.05  # bound on passing a canary detect_ratio (or more) times worse
    latency_alpha_share: float = 0.2  # share of alpha for slow requests, when measured
    quiet_rate: float = 0.001  # errors: canary upper bound below this passes outright
    quiet_slow_rate: float = 0.01  # latency: same for slow requests
    min_requests: int = 200  # never pass on fewer canary requests
    latency_quantile: float = 0.9  # threshold = stable's bucket bound at this quantile
    latency_threshold_ms: float | None = None  # or fixed by the user

    @property
    def fail_bound(self) -> float:
        """log(1/alpha): the bound on the fail e-value when errors get all of alpha."""
        return math.log(1.0 / self.alpha)

    @property
    def pass_bound(self) -> float:
        """log(beta): the signed statistic (see SignalEvidence) passes at or below it."""
        return math.log(self.beta)

    @property
    def fail_ratios(self) -> tuple[float, ...]:
        return tuple(self.detect_ratio * m for m in self.fail_mixture)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> JudgeConfig:
        """Judge options as written in a template; ValueError names the bad option."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(str(k) for k in raw if k not in known)
        if unknown:
            raise ValueError(f"judge option(s) {', '.join(unknown)} unknown; use "
                             f"{', '.join(sorted(known))}")
        kwargs: dict[str, Any] = {}
        for name, value in raw.items():
            try:
                kwargs[name] = _coerce(name, value)
            except (TypeError, ValueError):
                raise ValueError(f"judge option {name}: {value!r} is not a valid "
                                 f"{_KIND.get(name, 'number')}") from None
        cfg = cls(**kwargs)
        cfg.check()
        return cfg

    def check(self) -> None:
        """One sentence per impossible setting."""
        r0 = 1.0 + self.tolerance
        if self.tolerance < 0:
            raise ValueError("judge option tolerance must be >= 0")
        if self.detect_ratio <= r0:
            raise ValueError("judge option detect_ratio must be larger than 1 + tolerance")
        if not (0 < self.alpha < 1 and 0 < self.beta < 1):
            raise ValueError("judge options alpha and beta must be between 0 and 1")
        if not 0 <= self.latency_alpha_share < 1:
            raise ValueError("judge option latency_alpha_share must be in [0, 1)")
        if (not self.fail_mixture or len(self.fail_mixture) != len(self.fail_weights)
                or any(w <= 0 for w in self.fail_weights)
                or abs(sum(self.fail_weights) - 1.0) > 1e-9):
            raise ValueError("judge options fail_mixture and fail_weights must have the same "
                             "length, with positive weights that sum to 1")
        if any(r <= r0 for r in self.fail_ratios):
            raise ValueError("judge option fail_mixture: every alternative x detect_ratio "
                             "must be larger than 1 + tolerance")
        if self.min_requests < 0:
            raise ValueError("judge option min_requests must be >= 0")


_KIND = {"fail_mixture": "list of numbers", "fail_weights": "list of numbers",
         "min_requests": "whole number"}


def _coerce(name: str, value: Any) -> Any:
    if name in ("fail_mixture", "fail_weights"):
        if isinstance(value, str | bytes) or not isinstance(value, Iterable):
            raise TypeError(name)
        return tuple(float(v) for v in value)
    if name == "min_requests":
        return int(value)
    if name == "latency_threshold_ms" and value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(name)
    return float(value)


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

    `fail_log` holds the log wealth of each fail alternative (prior weight included): the
    fail e-value is the sum of their exponentials. `pass_log` is the log pass e-value.
    """

    fail_log: tuple[float, ...] = ()
    pass_log: float = 0.0
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
    latency_judged: bool | None = None  # decided at the first window, then fixed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> JudgeState:
        """Tolerates states saved by older versions: unknown keys are dropped (a signal
        saved in the old shape restarts its e-values, keeping its counts)."""
        judged = raw.get("latency_judged")
        return cls(
            errors=_signal_from(raw.get("errors") or {}),
            latency=_signal_from(raw.get("latency") or {}),
            windows=int(raw.get("windows", 0)),
            latency_threshold_ms=raw.get("latency_threshold_ms"),
            latency_judged=None if judged is None else bool(judged),
        )


def _signal_from(raw: Mapping[str, Any]) -> Signal:
    known = {f.name for f in fields(Signal)}
    kept = {k: v for k, v in raw.items() if k in known}
    if "fail_log" in kept:
        kept["fail_log"] = tuple(float(v) for v in kept["fail_log"])
    return Signal(**kept)


@dataclass(frozen=True, slots=True)
class SignalEvidence:
    """One signal's verdict and the numbers behind it.

    `log_likelihood_ratio` is the signed statistic that is charted against the bounds: the
    log fail e-value while the data lean bad, minus the log pass e-value while they lean
    healthy; fail at or above `fail_bound`, pass at or below `pass_bound`.
    """

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
    log_fail_evalue: float = 0.0
    log_pass_evalue: float = 0.0
    fail_bound: float = 0.0
    pass_bound: float = 0.0
    alpha: float = 0.0
    ratio_estimate: float | None = None
    judged: bool = True
    quiet_rate: float = 0.0  # passes outright when the canary's rate is surely below it


@dataclass(frozen=True, slots=True)
class Evidence:
    """A verdict with everything needed to explain it (shown by `rollout status`).

    `reason` is the plain line followed by the statistics ("canary errors 27% vs stable
    0%: failed (limit: no worse than stable) (evidence: ... e-value 125 >= 125 ...)");
    `statistics` is the statistical part alone; `to_dict()` adds the plain line alone as
    `summary`.
    """

    verdict: Verdict
    reason: str
    signals: tuple[SignalEvidence, ...]
    fail_bound: float
    pass_bound: float
    alpha: float
    beta: float
    requests_needed: int
    latency_threshold_ms: float | None
    lean: Lean = "unclear"
    tolerance: float = 0.0  # the fail null, kept so the limit can be said in words
    min_requests: int = 0
    statistics: str = ""
    detect_ratio: float = 0.0  # a pass rules out a canary this many times worse

    def to_dict(self) -> dict[str, Any]:
        """The evidence as stored in the status, led by the plain-words `summary`."""
        out = asdict(self)
        out["signals"] = [asdict(s) for s in self.signals]
        out["summary"] = plain(out)
        for raw in out["signals"]:
            raw["summary"] = plain_signal(raw, out)
        return out


# ---- the e-processes ------------------------------------------------------------------------


def _pi(ratio: float, n_c: int, n_s: int) -> float:
    return ratio * n_c / (ratio * n_c + n_s)


def _logsumexp(values: Iterable[float]) -> float:
    vals = list(values)
    top = max(vals)
    if top == -math.inf:
        return top
    return top + math.log(sum(math.exp(v - top) for v in vals))


def _log_binom_pmf(m: int, p: float) -> list[float]:
    lp, lq = math.log(p), math.log1p(-p)
    base = math.lgamma(m + 1)
    return [base - math.lgamma(k + 1) - math.lgamma(m - k + 1) + k * lp + (m - k) * lq
            for k in range(m + 1)]


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _log_hypergeom_pmf(m: int, n_c: int, n_s: int, odds: float) -> list[float]:
    """Fisher's noncentral hypergeometric: the canary's share of m errors when each request
    fails independently (Bernoulli) with canary/stable odds ratio `odds`."""
    lo, hi = max(0, m - n_s), min(m, n_c)
    raw = [_log_comb(n_c, k) + _log_comb(n_s, m - k) + k * math.log(odds)
           if lo <= k <= hi else -math.inf for k in range(m + 1)]
    norm = _logsumexp(raw)
    return [v - norm for v in raw]


def _log_scale(log_pmf: list[float], log_f: list[float], log_cap: float) -> float:
    """log c such that the mean of min(c·f, cap) under `log_pmf` is exactly 1."""
    order = sorted((k for k in range(len(log_f)) if log_pmf[k] > -math.inf),
                   key=lambda k: log_f[k], reverse=True)
    rest = sum(math.exp(log_pmf[k] + log_f[k]) for k in order)  # mean of f, uncapped
    capped = 0.0  # null probability of the outcomes held at the cap
    cap = math.exp(log_cap) if log_cap < 700 else math.inf
    for j in range(len(order) + 1):
        if rest <= 0:
            break
        log_c = math.log(max(1.0 - cap * capped, 1e-300) / rest) if capped else -math.log(rest)
        if j == len(order) or log_c + log_f[order[j]] <= log_cap:
            return log_c
        k = order[j]
        capped += math.exp(log_pmf[k])
        rest -= math.exp(log_pmf[k] + log_f[k])
    return math.log(1.0 / cap) if cap < math.inf else 0.0  # pragma: no cover - all capped


def _bet(logs: tuple[float, ...], ratios: tuple[float, ...], null: float, n_c: int, k_c: int,
         n_s: int, k_s: int, log_bound: float | None) -> tuple[float, ...]:
    """One window's factor for a mixture of likelihood ratios `ratios` against `null`.

    `logs` are the components' log wealths. The mixture's factor is rescaled so that its
    mean is at most 1 under the null both when errors are Poisson events (the canary's
    share is binomial) and when each request fails independently (the share is Fisher's
    hypergeometric, null = odds ratio). With `log_bound` set (the bound would be acted on
    after this window), outcomes that would cross it are capped at it and the capped mass
    is recycled to the other outcomes (no overshoot).
    """
    m = k_c + k_s
    if m == 0 or n_c <= 0 or n_s <= 0:
        return logs
    p0 = _pi(null, n_c, n_s)
    steps = []
    for r in ratios:
        p1 = _pi(r, n_c, n_s)
        steps.append((math.log(p1 / p0), math.log((1 - p1) / (1 - p0))))
    new = tuple(v + k_c * a + k_s * b for v, (a, b) in zip(logs, steps, strict=True))
    log_w = _logsumexp(logs)
    if m > _MAX_EXACT_EVENTS or (log_bound is not None and log_w >= log_bound):
        return new
    # log of the mixture factor for every possible canary share k of the m events
    log_f = [_logsumexp(v - log_w + k * a + (m - k) * b for v, (a, b) in zip(logs, steps,
                                                                            strict=True))
             for k in range(m + 1)]
    log_cap = math.inf if log_bound is None else log_bound - log_w
    laws = [_log_binom_pmf(m, p0)]
    if m <= n_c + n_s:
        laws.append(_log_hypergeom_pmf(m, n_c, n_s, null))
    log_c = min(_log_scale(law, log_f, log_cap) for law in laws)
    shift = min(log_c + log_f[k_c], log_cap) - log_f[k_c]
    return tuple(v + shift for v in new)


def _add(sig: Signal, cfg: JudgeConfig, n_c: int, k_c: int, n_s: int, k_s: int,
         log_alpha_bound: float) -> Signal:
    r0 = 1.0 + cfg.tolerance
    prior = tuple(math.log(w) for w in cfg.fail_weights)
    fail_log = sig.fail_log if len(sig.fail_log) == len(prior) else prior
    canary_after = sig.canary_total + max(n_c, 0)
    pass_cap = math.log(1.0 / cfg.beta) if canary_after >= cfg.min_requests else None
    return Signal(
        fail_log=_bet(fail_log, cfg.fail_ratios, r0, n_c, k_c, n_s, k_s, log_alpha_bound),
        pass_log=_bet((sig.pass_log,), (r0,), cfg.detect_ratio, n_c, k_c, n_s, k_s,
                      pass_cap)[0],
        canary_total=canary_after,
        canary_bad=sig.canary_bad + k_c,
        stable_total=sig.stable_total + n_s,
        stable_bad=sig.stable_bad + k_s,
    )


def _alphas(state: JudgeState, cfg: JudgeConfig) -> tuple[float, float]:
    """(errors' alpha, latency's alpha): latency gets its share only if it is judged."""
    if state.latency_judged:
        share = cfg.latency_alpha_share
        return cfg.alpha * (1 - share), cfg.alpha * share
    return cfg.alpha, 0.0


def observe(state: JudgeState, window: Window, cfg: JudgeConfig) -> JudgeState:
    """Fold one window into the evidence (windows must not overlap)."""
    w = window
    counts = (w.canary_total, w.stable_total, w.canary_errors, w.stable_errors,
              w.canary_slow, w.stable_slow)
    if min(counts) < 0:
        raise ValueError("judge window: counts cannot be negative")
    judged = state.latency_judged
    if judged is None:  # fixed before the first window: alpha's split cannot follow the data
        judged = cfg.latency_alpha_share > 0 and (
            state.latency_threshold_ms is not None or cfg.latency_threshold_ms is not None)
        state = replace(state, latency_judged=judged)
    a_err, a_lat = _alphas(state, cfg)
    latency = state.latency
    if judged:
        latency = _add(latency, cfg, w.canary_total, min(w.canary_slow, w.canary_total),
                       w.stable_total, min(w.stable_slow, w.stable_total), -math.log(a_lat))
    return replace(
        state,
        errors=_add(state.errors, cfg, w.canary_total, w.canary_errors, w.stable_total,
                    w.stable_errors, -math.log(a_err)),
        latency=latency,
        windows=state.windows + 1,
    )


# ---- verdicts -------------------------------------------------------------------------------


def poisson_upper(k: int, confidence: float) -> float:
    """Upper confidence bound on a Poisson mean after k events (Wilson-Hilferty)."""
    if k == 0:
        return -math.log(1 - confidence)
    z = _z(confidence)
    n = k + 1
    return n * (1 - 1 / (9 * n) + z / (3 * math.sqrt(n))) ** 3


def _z(p: float) -> float:
    return NormalDist().inv_cdf(p)


def _evalue(log_value: float) -> str:
    """An e-value for a sentence; past float range (an overwhelming window) as e^N."""
    return f"{math.exp(log_value):.3g}" if log_value < 700 else f"e^{log_value:.0f}"


def _signal_verdict(name: str, sig: Signal, cfg: JudgeConfig, quiet: float,
                    alpha: float) -> tuple[SignalEvidence, int]:
    rate_c = sig.canary_bad / sig.canary_total if sig.canary_total else 0.0
    rate_s = sig.stable_bad / sig.stable_total if sig.stable_total else 0.0
    ratio = rate_c / rate_s if rate_s > 0 else None
    upper = poisson_upper(sig.canary_bad, 1 - cfg.beta) / max(sig.canary_total, 1)
    fail_log = _logsumexp(sig.fail_log) if sig.fail_log else 0.0
    fail_bound = math.log(1.0 / alpha)
    pass_bound = math.log(1.0 / cfg.beta)
    enough = sig.canary_total >= cfg.min_requests
    needed = 0
    verdict: Verdict
    vs = f"canary {name} rate {rate_c:.3%} vs stable {rate_s:.3%}"
    if fail_log >= fail_bound - 1e-9:
        verdict = "fail"
        reason = (f"{vs}: e-value {_evalue(fail_log)} >= {1 / alpha:.3g} against "
                  f"ratio <= {1 + cfg.tolerance:g} (false rollback <= {alpha:.2g})")
    elif sig.pass_log >= pass_bound - 1e-9 and enough:
        verdict = "pass"
        reason = (f"{vs}: e-value {_evalue(sig.pass_log)} >= {1 / cfg.beta:.3g} against "
                  f"ratio >= {cfg.detect_ratio:g} (bad canary passed <= {cfg.beta:.2g})")
    elif upper <= quiet and enough:
        verdict = "pass"
        reason = (f"canary {name} rate at most {upper:.3%} ({sig.canary_bad} of "
                  f"{sig.canary_total}), below {quiet:.2%}")
    else:
        verdict = "inconclusive"
        needed = _still_needed(sig, cfg, quiet)
        reason = (f"{vs} on {sig.canary_total} requests: not enough evidence yet, about "
                  f"{needed} more canary requests needed")
    signed = fail_log if fail_log >= sig.pass_log else -sig.pass_log
    ev = SignalEvidence(name, verdict, rate_c, rate_s, sig.canary_total, sig.canary_bad,
                        sig.stable_total, sig.stable_bad, signed, reason,
                        log_fail_evalue=fail_log, log_pass_evalue=sig.pass_log,
                        fail_bound=fail_bound, pass_bound=-pass_bound, alpha=alpha,
                        ratio_estimate=ratio, quiet_rate=quiet)
    return ev, needed


def _still_needed(sig: Signal, cfg: JudgeConfig, quiet: float) -> int:
    """Expected canary requests until a pass if the canary is exactly as good as allowed."""
    floor = max(cfg.min_requests - sig.canary_total, 0)
    events = sig.canary_bad + sig.stable_bad
    if events == 0 or sig.stable_total == 0 or sig.canary_total == 0:
        by_quiet = math.ceil(poisson_upper(0, 1 - cfg.beta) / quiet) - sig.canary_total
        return max(by_quiet, floor, 1)
    p0 = _pi(1.0 + cfg.tolerance, sig.canary_total, sig.stable_total)
    p1 = _pi(cfg.detect_ratio, sig.canary_total, sig.stable_total)
    kl = p0 * math.log(p0 / p1) + (1 - p0) * math.log((1 - p0) / (1 - p1))
    events_needed = max(math.log(1.0 / cfg.beta) - sig.pass_log, 0.0) / max(kl, 1e-12)
    per_request = events / sig.canary_total
    return max(math.ceil(events_needed / per_request), floor, 1)


def _unjudged(name: str, sig: Signal) -> SignalEvidence:
    return SignalEvidence(name, "pass", 0.0, 0.0, sig.canary_total, 0, sig.stable_total, 0,
                          0.0, f"{name}s not judged: no latency threshold before the first "
                          "window (set latency_threshold_ms, or give the stable a histogram)",
                          judged=False)


def verdict(state: JudgeState, cfg: JudgeConfig) -> Evidence:
    """Fail if any signal fails; pass only when every judged signal passes."""
    a_err, a_lat = _alphas(state, cfg)
    errors, need_e = _signal_verdict("error", state.errors, cfg, cfg.quiet_rate, a_err)
    if state.latency_judged is False:
        latency, need_l = _unjudged("slow-request", state.latency), 0
    else:
        latency, need_l = _signal_verdict("slow-request", state.latency, cfg,
                                          cfg.quiet_slow_rate, a_lat or cfg.alpha)
    signals = (errors, latency)
    failing = [s for s in signals if s.verdict == "fail"]
    if failing:
        overall: Verdict = "fail"
        reason = failing[0].reason
    elif all(s.verdict == "pass" for s in signals):
        overall = "pass"
        reason = "; ".join(s.reason for s in signals if s.judged)
    else:
        overall = "inconclusive"
        reason = "; ".join(s.reason for s in signals if s.verdict == "inconclusive")
    ev = Evidence(
        verdict=overall,
        reason=reason,
        statistics=reason,
        signals=signals,
        fail_bound=errors.fail_bound,
        pass_bound=cfg.pass_bound,
        alpha=cfg.alpha,
        beta=cfg.beta,
        requests_needed=max(need_e, need_l) if overall == "inconclusive" else 0,
        latency_threshold_ms=state.latency_threshold_ms,
        lean=_lean(signals),
        tolerance=cfg.tolerance,
        min_requests=cfg.min_requests,
        detect_ratio=cfg.detect_ratio,
    )
    # The reason (what a measurement's message, `rollout status` and the demo print) leads
    # with the plain words; the statistics follow as the evidence.
    return replace(ev, reason=f"{plain(ev.to_dict())} (evidence: {reason})")


def _lean(signals: tuple[SignalEvidence, ...]) -> Lean:
    """Which way the evidence points so far: bad if any judged signal's fail e-value is
    above 1 (the data favour a worse canary), healthy if every judged signal's pass e-value
    is above 1. A rollout may use it to hold or raise the weight; it decides nothing."""
    judged = [s for s in signals if s.judged]
    if any(s.log_fail_evalue > 0 for s in judged):
        return "bad"
    if judged and all(s.log_pass_evalue > 0 or s.verdict == "pass" for s in judged):
        return "healthy"
    return "unclear"


# ---- in plain words -------------------------------------------------------------------------
# What an Argo user expects to read first ("canary errors 27% vs stable 0%: failed (limit: no
# worse than stable)"); the e-values and bounds stay in the evidence, one click away. These
# read the stored dict (Evidence.to_dict, or a status saved by an older version), so the
# dashboard and `tollway rollout status` can say the same line for any recorded measurement.


def percent(rate: float) -> str:
    """0.27 -> "27%", 0.0326 -> "3.3%", 0.00025 -> "0.025%", 0 -> "0%"."""
    pct = rate * 100
    if pct == 0:
        return "0%"
    if pct >= 9.95:
        return f"{pct:.0f}%"
    if pct >= 0.995:
        return f"{pct:.1f}%"
    return f"{pct:.2g}%"


def _limit(evidence: Mapping[str, Any]) -> str:
    tolerance = float(evidence.get("tolerance") or 0.0)
    if tolerance <= 0:
        return "no worse than stable"
    return f"at most {1 + tolerance:g}x stable's rate"


def _what(sig: Mapping[str, Any], evidence: Mapping[str, Any]) -> str:
    if str(sig.get("name")) == "error":
        return "errors"
    threshold = evidence.get("latency_threshold_ms")
    return (f"slow requests (> {float(threshold):g} ms)" if threshold is not None
            else "slow requests")


def _comparison(sig: Mapping[str, Any], evidence: Mapping[str, Any]) -> str:
    return (f"canary {_what(sig, evidence)} {percent(float(sig.get('canary_rate') or 0.0))} "
            f"vs stable {percent(float(sig.get('stable_rate') or 0.0))}")


def plain_signal(sig: Mapping[str, Any], evidence: Mapping[str, Any]) -> str:
    """One signal in words: "canary errors 27% vs stable 0%: failed (limit: ...)"."""
    if sig.get("judged") is False:
        return "latency not judged (no threshold was known before the first window)"
    verdict = sig.get("verdict")
    head = _comparison(sig, evidence)
    if verdict == "fail":
        return f"{head}: failed (limit: {_limit(evidence)})"
    if verdict == "pass":
        return f"{head}: passed{_outright(sig, evidence)}"
    return f"{head} so far: not decided yet"


def _outright(sig: Mapping[str, Any], evidence: Mapping[str, Any]) -> str:
    """Why it passed: " (under 2x stable's rate)" when the comparison ruled out a canary
    detect_ratio times worse; " (under the 5% allowed outright)" when the absolute bound
    passed it (too few bad events to compare with stable)."""
    quiet = float(sig.get("quiet_rate") or 0.0)
    compared = float(sig.get("log_pass_evalue") or 0.0) >= -float(sig.get("pass_bound") or 0.0)
    if compared:
        ratio = float(evidence.get("detect_ratio") or 0.0)
        return f" (under {ratio:g}x stable's rate)" if ratio > 0 else ""
    return f" (under the {percent(quiet)} allowed outright)" if quiet > 0 else ""


def plain(evidence: Mapping[str, Any]) -> str:
    """The verdict in words, for the dashboard and `tollway rollout status`.

    fail: the failing signal ("canary errors 27% vs stable 0%: failed (limit: no worse
    than stable)"); pass: each judged signal's comparison, then "passed"; inconclusive:
    the comparison so far and how many canary requests it takes ("not enough requests yet
    (40 of ~200 needed)").
    """
    signals = [s for s in evidence.get("signals") or () if isinstance(s, Mapping)]
    judged = [s for s in signals if s.get("judged") is not False]
    verdict = evidence.get("verdict")
    if verdict == "fail":
        failing = [s for s in judged if s.get("verdict") == "fail"]
        return "; ".join(plain_signal(s, evidence) for s in failing) or "failed"
    comparisons = ", ".join(_comparison(s, evidence) for s in judged)
    if verdict == "pass":
        if len(judged) == 1:
            return plain_signal(judged[0], evidence)
        return "; ".join(plain_signal(s, evidence) for s in judged) or "passed"
    seen = max((int(s.get("canary_total") or 0) for s in judged), default=0)
    more = int(evidence.get("requests_needed") or 0)
    if seen == 0:
        return (f"no canary requests yet (~{more} needed)" if more
                else "no canary requests yet")
    enough = f" ({seen} of ~{seen + more} needed)" if more else ""
    return f"{comparisons} so far: not enough requests yet{enough}"


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
    """Choose the latency threshold once, before the first window is folded in.

    After the first window it is too late: alpha's split between errors and latency is
    fixed then, and moving it after seeing data would void the false-rollback bound.
    """
    if state.latency_threshold_ms is not None or state.windows > 0:
        return state
    threshold = cfg.latency_threshold_ms or pick_threshold(stable_buckets, cfg.latency_quantile)
    return replace(state, latency_threshold_ms=threshold)
