"""How many requests does a bad canary serve before it is rolled back?

Replays the same traffic model through four policies and prints one table, with every
Tollway number also given as a ratio against Flagger's default measured in the same run:
  flagger        Flagger's default analysis as in seed 08 / the Istio tutorial: interval 1m,
                 threshold 5 (failed checks counted over the run), request-success-rate
                 >= 99% on the canary's last minute, stepWeight 10 up to maxWeight 50; a
                 failed check holds the weight; promoted after a passing check at 50%.
                 Tick semantics from Flagger's scheduler (first tick routes).
  argo           seed 14's steps (5% for 5m, 20% for 10m, 50% for 10m, then 100%) with seed
                 15's success-rate metric as written: measured every minute, service-wide
                 (destination_service covers stable AND canary), rate over [5m], >= 0.99,
                 abort when failures exceed failureLimit 3 (the 4th failure). The manual
                 gate before 100% is taken as approved at once.
  judge-fixed    Flagger's exact weight schedule (10%, +10 every minute, to 50%), with the
                 judge (tollway.rollout.analysis.judge, default config) reading canary-vs-
                 stable counts every second: fail -> roll back at once, pass -> promote at
                 once. Shows what the test alone buys.
  tollway        the judge also paces the weight (what `lean` is for): start at 10% like
                 Flagger; while the evidence leans bad, hold the weight (as Flagger holds it
                 on a failed check); step +10 after --dwell seconds (default 15) at a weight
                 when it leans healthy, or after 60 s (Flagger's interval) when it leans
                 neither way; never above 50% (Flagger's maxWeight). Same verdicts as
                 judge-fixed. The canary never gets more traffic than the evidence allows.
Traffic: 50 rps, stable 0.5% errors, canaries at 0.5% (healthy), 1%, 2%, 5%, 20%. Errors
per 1-second window are binomial draws; the split follows the weight exactly; Flagger and
Argo sum those seconds over their interval, so every policy sees the same kind of traffic.
Each policy gets its own seeded draws, identical across runs (--seed).

Run: python bench/rollout_safety.py [--trials 200] [--seed 1] [--dwell 15] [--h0-trials 1000]
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
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tollway.rollout.analysis import judge

RPS = 50
SECOND = 1  # seconds per simulated window (the judge looks at every one)
STABLE_RATE = 0.005
CANARY_RATES = (0.005, 0.01, 0.02, 0.05, 0.20)
HORIZON = 60 * 60  # give up after an hour (counted as "no decision")
FLAGGER_INTERVAL = 60
MAX_WEIGHT = 50.0
STEP_WEIGHT = 10.0


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
    """One trial's traffic: ask for a second at a weight, get canary/stable counts."""

    def __init__(self, p_canary: float, seed: int) -> None:
        self.rng = random.Random(seed)
        self.p_canary = p_canary
        self.canary_requests = 0

    def window(self, weight: float) -> tuple[int, int, int, int]:
        total = RPS * SECOND
        nc = round(total * weight / 100)
        ns = total - nc
        kc = binomial(self.rng, nc, self.p_canary)
        ks = binomial(self.rng, ns, STABLE_RATE)
        self.canary_requests += nc
        return nc, kc, ns, ks

    def span(self, weight: float, seconds: int) -> tuple[int, int, int, int]:
        """Counts summed over `seconds` one-second windows."""
        nc = kc = ns = ks = 0
        for _ in range(seconds // SECOND):
            c, e, s, f = self.window(weight)
            nc, kc, ns, ks = nc + c, kc + e, ns + s, ks + f
        return nc, kc, ns, ks


def flagger(traffic: Traffic) -> Outcome:
    weight, failed, t = STEP_WEIGHT, 0, 0
    while t < HORIZON:
        nc, kc, _, _ = traffic.span(weight, FLAGGER_INTERVAL)
        t += FLAGGER_INTERVAL
        if failed >= 5:  # checked at the start of the tick, before the analysis
            return Outcome("rollback", t, traffic.canary_requests)
        ok = nc > 0 and 100.0 * (nc - kc) / nc >= 99.0
        if not ok:
            failed += 1
        elif weight < MAX_WEIGHT:
            weight += STEP_WEIGHT
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
            nc, kc, ns, ks = traffic.span(weight, 60)
            t += 60
            history.append((nc + ns, kc + ks))
            last5 = history[-5:]
            n = sum(h[0] for h in last5)
            rate = (n - sum(h[1] for h in last5)) / n
            if rate < 0.99:
                failures += 1
                if failures > 3:
                    return Outcome("rollback", t, traffic.canary_requests)
    return Outcome("promote", t, traffic.canary_requests)


def judged(traffic: Traffic, cfg: judge.JudgeConfig | None = None, paced: bool = True,
           dwell: int = 15, start: float = STEP_WEIGHT) -> Outcome:
    """The judge every second; `paced` lets its lean hold or raise the weight."""
    cfg = cfg or judge.JudgeConfig()
    weight, t, since = start, 0, 0
    state = judge.JudgeState()
    while t < HORIZON:
        nc, kc, ns, ks = traffic.window(weight)
        t += SECOND
        since += SECOND
        state = judge.observe(state, judge.Window(nc, kc, ns, ks), cfg)
        ev = judge.verdict(state, cfg)
        if ev.verdict == "fail":
            return Outcome("rollback", t, traffic.canary_requests)
        if ev.verdict == "pass":
            return Outcome("promote", t, traffic.canary_requests)
        if weight >= MAX_WEIGHT:
            continue
        if not paced:
            step = t % FLAGGER_INTERVAL == 0
        else:
            step = ev.lean != "bad" and (
                since >= FLAGGER_INTERVAL or (ev.lean == "healthy" and since >= dwell))
        if step:
            weight, since = weight + STEP_WEIGHT, 0
    return Outcome("none", t, traffic.canary_requests)


Policy = Callable[[Traffic], Outcome]


def policies(dwell: int = 15) -> dict[str, Policy]:
    return {"flagger": flagger, "argo": argo,
            "judge-fixed": partial(judged, paced=False),
            "tollway": partial(judged, paced=True, dwell=dwell)}


POLICIES = policies()
TOLLWAY = ("judge-fixed", "tollway")


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile; inf when that rank is a canary that was never rolled back."""
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[idx]


def run(trials: int, seed: int, dwell: int = 15) -> dict[str, dict[float, list[Outcome]]]:
    chosen = policies(dwell)
    results: dict[str, dict[float, list[Outcome]]] = {p: {} for p in chosen}
    for level, rate in enumerate(CANARY_RATES):
        for name, policy in chosen.items():
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


def promote_minutes(outcomes: list[Outcome]) -> list[float]:
    """Minutes to promote; a canary that was not promoted counts as never (inf)."""
    return [o.at / 60 if o.decision == "promote" else math.inf for o in outcomes]


def fmt(v: float) -> str:
    return "never" if math.isinf(v) else f"{v:,.0f}"


def ratio(flagger_value: float, ours: float) -> str:
    """How many times fewer (requests) or faster (minutes) than Flagger: flagger / ours."""
    if math.isinf(flagger_value) and math.isinf(ours):
        return "-"
    if math.isinf(flagger_value):
        return "inf"
    if math.isinf(ours) or ours == 0:
        return "0"
    return f"{flagger_value / ours:.2f}x"


def report(results: dict[str, dict[float, list[Outcome]]], trials: int) -> str:
    names = list(results)
    lines = [
        f"rollout safety: {RPS} rps, stable {STABLE_RATE:.1%} errors, {trials} trials each",
        "",
        "| canary errors | policy | rolled back | promoted | requests before rollback: median"
        " | p95 | mean (rolled back only) | flagger / this: median | p95 | mean |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for rate in CANARY_RATES[1:]:
        fl = results["flagger"][rate]
        f_med, f_p95 = pct(exposure(fl), 0.5), pct(exposure(fl), 0.95)
        for name in names:
            outs = results[name][rate]
            caught = sum(o.decision == "rollback" for o in outs)
            promoted = sum(o.decision == "promote" for o in outs)
            exp = exposure(outs)
            med, p95, mean = pct(exp, 0.5), pct(exp, 0.95), mean_caught(outs)
            cmp = (f"{ratio(f_med, med)} | {ratio(f_p95, p95)} | "
                   f"{ratio(mean_caught(fl), mean)}" if name in TOLLWAY else " | | ")
            lines.append(f"| {rate:.1%} | {name} | {caught}/{len(outs)} | {promoted} | "
                         f"{fmt(med)} | {fmt(p95)} | {fmt(mean)} | {cmp} |")
    lines += ["", "| healthy canary (0.5%) | false rollbacks | promoted | "
                  "minutes to promote: median | p95 | flagger / this: median | p95 |",
              "|---|---|---|---|---|---|---|"]
    f_min = promote_minutes(results["flagger"][CANARY_RATES[0]])
    for name in names:
        outs = results[name][CANARY_RATES[0]]
        false_rb = sum(o.decision == "rollback" for o in outs)
        promoted = sum(o.decision == "promote" for o in outs)
        minutes = promote_minutes(outs)
        med, p95 = pct(minutes, 0.5), pct(minutes, 0.95)
        cmp = (f"{ratio(pct(f_min, 0.5), med)} | {ratio(pct(f_min, 0.95), p95)}"
               if name in TOLLWAY else " | ")
        lines.append(f"| {name} | {false_rb}/{len(outs)} ({false_rb / len(outs):.1%}) | "
                     f"{promoted}/{len(outs)} | {med:.1f} | {p95:.1f} | {cmp} |")
    lines += ["", "Targets (tollway vs flagger, same run):"]
    lines += [f"- {t}" for t in targets(results)]
    return "\n".join(lines)


def targets(results: dict[str, dict[float, list[Outcome]]]) -> list[str]:
    out = []
    for rate in CANARY_RATES[1:]:
        flagger_exp = exposure(results["flagger"][rate])
        f, least = pct(flagger_exp, 0.5), min(flagger_exp)
        t = pct(exposure(results["tollway"][rate]), 0.5)
        ok = t <= f / 5
        line = (f"{rate:.0%}: median {fmt(t)} vs flagger's median {fmt(f)}: "
                f"{ratio(f, t)} (target >= 5x) {'OK' if ok else 'MISSED'}")
        if math.isinf(f):
            promoted = {p: sum(o.decision == "promote" for o in results[p][rate])
                        for p in ("flagger", "tollway")}
            line += (f"; bad canaries promoted: flagger {promoted['flagger']}, tollway "
                     f"{promoted['tollway']} of {len(flagger_exp)}")
        else:
            line += (f"; vs the fewest flagger let through in any trial ({fmt(least)}): "
                     f"{ratio(least, t)}")
        out.append(line)
    healthy = results["tollway"][CANARY_RATES[0]]
    false_rb = sum(o.decision == "rollback" for o in healthy)
    low, high = wilson(false_rb, len(healthy))
    out.append(f"false rollbacks {false_rb}/{len(healthy)} = {false_rb / len(healthy):.1%} "
               f"(95% CI {low:.1%}-{high:.1%}; target <= 1%, bound alpha = "
               f"{judge.JudgeConfig().alpha:.1%}) "
               f"{'OK' if false_rb / len(healthy) <= 0.01 else 'MISSED'}")
    for label, q in (("median", 0.5), ("p95", 0.95)):
        ours = pct(promote_minutes(healthy), q)
        theirs = pct(promote_minutes(results["flagger"][CANARY_RATES[0]]), q)
        out.append(f"promote a healthy canary, {label}: {ours:.1f} vs {theirs:.1f} min "
                   f"{'OK' if ours <= theirs else 'MISSED'}")
    return out


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a proportion k/n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def null_check(trials: int, seed: int, weight: float = STEP_WEIGHT,
               minutes: int = 30) -> tuple[int, int]:
    """The worst case for the false-rollback bound: a canary exactly as good as stable,
    judged every second for `minutes` at a fixed weight, never stopped by a pass (so the
    fail side gets every chance to wander to its bound). Returns (failed, trials)."""
    cfg = judge.JudgeConfig()
    failed = 0
    for i in range(trials):
        traffic = Traffic(STABLE_RATE, seed * 7_919 + i)
        state = judge.JudgeState()
        for _ in range(minutes * 60 // SECOND):
            nc, kc, ns, ks = traffic.window(weight)
            state = judge.observe(state, judge.Window(nc, kc, ns, ks), cfg)
            if judge.verdict(state, cfg).signals[0].verdict == "fail":
                failed += 1
                break
    return failed, trials


def promotion_floor(trials: int, seed: int) -> float:
    """p95 minutes for the judge to pass a healthy canary that gets maxWeight (50%) from
    its first second: no ramp can promote faster, since 50/50 is where a canary-vs-stable
    comparison learns most per second. What beta (5% at 2x) costs in time."""
    minutes = []
    for i in range(trials):
        outcome = judged(Traffic(STABLE_RATE, seed * 104_729 + i), paced=False,
                         start=MAX_WEIGHT)
        minutes.append(outcome.at / 60 if outcome.decision == "promote" else math.inf)
    return pct(minutes, 0.95)


def oracle_power(requests: int, weight: float, alpha: float, p_canary: float) -> float:
    """Information bound: the power of the best canary-vs-stable test that looks ONCE, at
    exactly `requests` canary requests (a sequential test cannot catch more canaries by
    then: stopping by then is itself such a test). Conditional on the m errors seen, the
    canary's count is binomial(m, weight) under the null; reject at the smallest count
    whose null tail is <= alpha; average the power over m (Poisson)."""
    n_s = requests * (100 - weight) / weight
    lam = requests * p_canary + n_s * STABLE_RATE
    pi1 = requests * p_canary / lam
    pi0 = weight / 100
    power, m = 0.0, 0
    while m < 10 * lam + 50:
        p_m = math.exp(-lam + m * math.log(lam) - math.lgamma(m + 1))
        tail0 = tail1 = 0.0
        for k in range(m, -1, -1):  # add terms from the top until the null tail passes alpha
            t0 = math.comb(m, k) * pi0**k * (1 - pi0) ** (m - k)
            if tail0 + t0 > alpha:
                break
            tail0 += t0
            tail1 += math.comb(m, k) * pi1**k * (1 - pi1) ** (m - k)
        power += p_m * tail1
        m += 1
    return power


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dwell", type=int, default=15,
                        help="seconds at a weight before the judge may step it up")
    parser.add_argument("--h0-trials", type=int, default=1000,
                        help="trials of the false-rollback worst case (0 skips it)")
    args = parser.parse_args(argv)
    if args.trials < 1 or args.dwell < 1 or args.h0_trials < 0:
        parser.error("--trials and --dwell must be at least 1, --h0-trials at least 0")
    started = time.perf_counter()
    results = run(args.trials, args.seed, args.dwell)
    print(report(results, args.trials))
    floor = promotion_floor(args.trials, args.seed)
    print(f"\npromotion floor: with 50% of the traffic from the first second, the judge "
          f"promotes a healthy canary by {floor:.1f} min at p95 (flagger: "
          f"{pct(promote_minutes(results['flagger'][CANARY_RATES[0]]), 0.95):.1f})")
    cut = round(min(exposure(results["flagger"][0.02])) / 5)
    bounds = ", ".join(f"{oracle_power(cut, w, a, 0.02):.2f} at alpha {a:.1%} / {w:g}% weight"
                       for a in (0.005, 0.01) for w in (STEP_WEIGHT, STEP_WEIGHT / 2))
    print(f"information bound: a test that looks once, at exactly {cut} canary requests (1/5 "
          f"of the fewest flagger let a 2% canary serve), catches it with probability "
          f"{bounds}; the tollway row caught "
          f"{sum(e <= cut for e in exposure(results['tollway'][0.02])) / args.trials:.2f}")
    if args.h0_trials:
        failed, n = null_check(args.h0_trials, args.seed)
        low, high = wilson(failed, n)
        print(f"false-rollback worst case (a canary exactly as good as stable, at 10%, judged "
              f"every second for 30 min, never promoted): {failed}/{n} = {failed / n:.2%} "
              f"(95% CI {low:.2%}-{high:.2%}; bound alpha = {judge.JudgeConfig().alpha:.1%})")
    print(f"\n({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
