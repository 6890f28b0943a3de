"""How many requests does a bad canary serve before it is rolled back?

Replays the same traffic model through three policies and prints one table:
  flagger  Flagger's default analysis as in seed 08 / the Istio tutorial: interval 1m,
           threshold 5 (failed checks counted over the run), request-success-rate >= 99%
           on the canary's last minute, stepWeight 10 up to maxWeight 50; a failed check
           holds the weight. Tick semantics from Flagger's scheduler (first tick routes).
  argo     seed 14's steps (5% for 5m, 20% for 10m, 50% for 10m, then 100%) with seed 15's
           success-rate metric as written: measured every minute, service-wide
           (destination_service covers stable AND canary), rate over [5m], >= 0.99,
           abort when failures exceed failureLimit 3 (the 4th failure). The manual gate
           before 100% is taken as approved at once.
  tollway  Flagger's weight schedule, but the judge (tollway.rollout.analysis.judge) reads
           canary-vs-stable counts every 5 s: fail -> roll back at once, pass -> promote
           at once (early promotion), weight steps every minute otherwise.
Traffic: 50 rps, stable 0.5% errors, canaries at 0.5% (healthy), 1%, 2%, 5%, 20%.
Errors per 10-second window are binomial draws; the split follows the weight exactly.

Run: python bench/rollout_safety.py [--trials 200] [--seed 1]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tollway.rollout.analysis import judge

RPS = 50
WINDOW = 5  # seconds per simulated window
STABLE_RATE = 0.005
CANARY_RATES = (0.005, 0.01, 0.02, 0.05, 0.20)
HORIZON = 60 * 60  # give up after an hour (counted as "no decision")


def binomial(rng: random.Random, n: int, p: float) -> int:
    """Exact inversion for small means, normal approximation for large ones."""
    if n <= 0 or p <= 0:
        return 0
    mean = n * p
    if mean * (1 - p) > 50:
        return max(0, min(n, round(rng.gauss(mean, math.sqrt(mean * (1 - p))))))
    u = rng.random()
    q = (1 - p) ** n
    cdf, k = q, 0
    odds = p / (1 - p)
    while u > cdf and k < n:
        q *= (n - k) / (k + 1) * odds
        k += 1
        cdf += q
    return k


@dataclass(slots=True)
class Outcome:
    decision: str  # "rollback", "promote", "none"
    at: float  # seconds from start
    canary_requests: int


class Traffic:
    """One trial's traffic: ask for a window at a weight, get canary/stable counts."""

    def __init__(self, p_canary: float, seed: int) -> None:
        self.rng = random.Random(seed)
        self.p_canary = p_canary
        self.canary_requests = 0

    def window(self, weight: float) -> tuple[int, int, int, int]:
        total = RPS * WINDOW
        nc = round(total * weight / 100)
        ns = total - nc
        kc = binomial(self.rng, nc, self.p_canary)
        ks = binomial(self.rng, ns, STABLE_RATE)
        self.canary_requests += nc
        return nc, kc, ns, ks


def flagger(traffic: Traffic) -> Outcome:
    weight, failed, t = 10.0, 0, 0
    per_tick = 60 // WINDOW
    while t < HORIZON:
        nc = kc = 0
        for _ in range(per_tick):
            c, e, _, _ = traffic.window(weight)
            nc, kc = nc + c, kc + e
        t += 60
        if failed >= 5:  # checked at the start of the tick, before the analysis
            return Outcome("rollback", t, traffic.canary_requests)
        ok = nc > 0 and 100.0 * (nc - kc) / nc >= 99.0
        if not ok:
            failed += 1
        elif weight < 50:
            weight += 10
        else:
            return Outcome("promote", t, traffic.canary_requests)
    return Outcome("none", t, traffic.canary_requests)


ARGO_STEPS = ((5.0, 300), (20.0, 600), (50.0, 600))


def argo(traffic: Traffic) -> Outcome:
    history: list[tuple[int, int]] = []  # per minute: service requests, service errors
    failures, t = 0, 0
    for weight, duration in ARGO_STEPS:
        end = t + duration
        while t < end:
            total = errors = 0
            for _ in range(60 // WINDOW):
                nc, kc, ns, ks = traffic.window(weight)
                total, errors = total + nc + ns, errors + kc + ks
            t += 60
            history.append((total, errors))
            last5 = history[-5:]
            n = sum(h[0] for h in last5)
            rate = (n - sum(h[1] for h in last5)) / n
            if rate < 0.99:
                failures += 1
                if failures > 3:
                    return Outcome("rollback", t, traffic.canary_requests)
    return Outcome("promote", t, traffic.canary_requests)


def tollway(traffic: Traffic, cfg: judge.JudgeConfig = judge.JudgeConfig()) -> Outcome:
    weight, t = 10.0, 0
    state = judge.JudgeState()
    while t < HORIZON:
        nc, kc, ns, ks = traffic.window(weight)
        t += WINDOW
        state = judge.observe(state, judge.Window(nc, kc, ns, ks), cfg)
        verdict = judge.verdict(state, cfg).verdict
        if verdict == "fail":
            return Outcome("rollback", t, traffic.canary_requests)
        if verdict == "pass":
            return Outcome("promote", t, traffic.canary_requests)
        if t % 60 == 0 and weight < 50:
            weight += 10
    return Outcome("none", t, traffic.canary_requests)


POLICIES: dict[str, Callable[[Traffic], Outcome]] = {
    "flagger": flagger, "argo": argo, "tollway": tollway}


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile; inf when that rank is a canary that was never rolled back."""
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[idx]


def run(trials: int, seed: int) -> dict[str, dict[float, list[Outcome]]]:
    results: dict[str, dict[float, list[Outcome]]] = {p: {} for p in POLICIES}
    for level, rate in enumerate(CANARY_RATES):
        for name, policy in POLICIES.items():
            results[name][rate] = [
                policy(Traffic(rate, seed * 1_000_003 + level * 10_007 + i))
                for i in range(trials)
            ]
    return results


def exposure(outcomes: list[Outcome]) -> list[float]:
    """Requests a bad canary served before rollback; never rolled back = inf."""
    return [o.canary_requests if o.decision == "rollback" else math.inf for o in outcomes]


def mean_caught(outcomes: list[Outcome]) -> float:
    caught = [o.canary_requests for o in outcomes if o.decision == "rollback"]
    return statistics.fmean(caught) if caught else math.inf


def fmt(v: float) -> str:
    return "never" if math.isinf(v) else f"{v:,.0f}"


def report(results: dict[str, dict[float, list[Outcome]]], trials: int) -> str:
    lines = [
        f"rollout safety: {RPS} rps, stable {STABLE_RATE:.1%} errors, {trials} trials each",
        "",
        "| canary errors | policy | rolled back | requests before rollback: median | p95 | mean"
        " (rolled back only) |",
        "|---|---|---|---|---|---|",
    ]
    for rate in CANARY_RATES[1:]:
        for name in POLICIES:
            outs = results[name][rate]
            caught = sum(o.decision == "rollback" for o in outs)
            exp = exposure(outs)
            lines.append(f"| {rate:.1%} | {name} | {caught}/{len(outs)} | "
                         f"{fmt(pct(exp, 0.5))} | {fmt(pct(exp, 0.95))} | "
                         f"{fmt(mean_caught(outs))} |")
    lines += ["", "| healthy canary (0.5%) | false rollbacks | promoted | "
                  "minutes to promote: median | p95 |", "|---|---|---|---|---|"]
    for name in POLICIES:
        outs = results[name][CANARY_RATES[0]]
        false_rb = sum(o.decision == "rollback" for o in outs)
        promoted = [o.at / 60 for o in outs if o.decision == "promote"]
        med = statistics.median(promoted) if promoted else math.inf
        p95 = pct(promoted, 0.95) if promoted else math.inf
        lines.append(f"| {name} | {false_rb}/{len(outs)} ({false_rb / len(outs):.1%}) | "
                     f"{len(promoted)}/{len(outs)} | {med:.1f} | {p95:.1f} |")
    lines += ["", "Targets (tollway vs flagger): " + "; ".join(targets(results))]
    return "\n".join(lines)


def targets(results: dict[str, dict[float, list[Outcome]]]) -> list[str]:
    out = []
    for rate in CANARY_RATES[1:]:
        f = pct(exposure(results["flagger"][rate]), 0.5)
        t = pct(exposure(results["tollway"][rate]), 0.5)
        ok = t <= f / 5
        out.append(f"{rate:.0%}: median {fmt(t)} vs {fmt(f)} {'OK' if ok else 'MISSED'}")
    healthy = results["tollway"][CANARY_RATES[0]]
    false_rate = sum(o.decision == "rollback" for o in healthy) / len(healthy)
    out.append(f"false rollbacks {false_rate:.1%} {'OK' if false_rate <= 0.01 else 'MISSED'}")
    speed = [statistics.median([o.at for o in results[p][CANARY_RATES[0]]
                                if o.decision == "promote"] or [math.inf])
             for p in ("tollway", "flagger")]
    out.append(f"promote {speed[0] / 60:.1f} vs {speed[1] / 60:.1f} min "
               f"{'OK' if speed[0] <= speed[1] else 'MISSED'}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results = run(args.trials, args.seed)
    print(report(results, args.trials))
    print(f"\n({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
