"""Print the issue's speed targets from one bench run (results.json of bench/run.sh).

Every ratio compares figures measured in the same run, so the host's drift cancels out:
  per-core throughput (sat): 1 / CPU seconds per request, T vs nginx (B) and HAProxy (C)
  at ~1000 req/s over 16 connections (paced): CPU per request and added p50/p90 (minus A)
  peak RSS of T-100 (100 routes, 20 clusters, a regex route, an authorization policy)
  mirroring: per-core throughput of T-mir vs T
  compiled vs pure Python: T vs T-py (the same proxy with TOLLWAY_PURE=1), when run
Targets are issue 17's (a compiled hot path).
"""

from __future__ import annotations

import json
import statistics
import sys
from typing import Any


def med(rows: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return float(statistics.median(vals)) if vals else None


def main(path: str) -> None:
    with open(path) as f:
        data = json.load(f)
    res = data["results"]

    def m(tid: str, mode: str, key: str) -> float | None:
        return med([r for r in res if r["id"] == tid and r["mode"] == mode], key)

    def rss_max(tid: str) -> float | None:
        vals = [r["rss_mb"] for r in res if r["id"] == tid]
        return max(vals) if vals else None

    rows: list[tuple[str, str, str, str, str]] = []

    def row(name: str, value: float | None, ref: str, target: str, ok: bool | None) -> None:
        v = "-" if value is None else f"{value:.2f}"
        rows.append((name, v, ref, target, "-" if ok is None else ("met" if ok else "MISSED")))

    cpu = {t: m(t, "sat", "cpu_us_per_req")
           for t in ("B", "C", "D", "T", "T-mir", "T-100", "T-py")}
    for ref, name in (("B", "nginx"), ("C", "HAProxy")):
        if cpu["T"] and cpu[ref]:
            ratio = cpu[ref] / cpu["T"]
            row(f"per-core throughput vs {name} (sat)", ratio,
                f"T {cpu['T']:.1f} us/req, {name} {cpu[ref]:.1f}", ">= 0.7x", ratio >= 0.7)
    if cpu["T"] and cpu["T-py"]:
        row("compiled T vs pure-Python T-py: CPU per request (sat)", cpu["T"] / cpu["T-py"],
            f"T {cpu['T']:.1f} us/req, T-py {cpu['T-py']:.1f}", "(info)", None)
    for mode, label in (("paced", "@~1000 rps"), ("paced-spin", "@~1000 rps, vCPUs awake")):
        pc = {t: m(t, mode, "cpu_us_per_req") for t in ("C", "T")}
        if pc["T"] and pc["C"]:
            ratio = pc["T"] / pc["C"]
            row(f"CPU per request {label} vs HAProxy", ratio,
                f"T {pc['T']:.1f} us, HAProxy {pc['C']:.1f} us", "<= 1.2x", ratio <= 1.2)
        for key, pname in (("p50_us", "p50"), ("p90_us", "p90")):
            a, c, t = m("A", mode, key), m("C", mode, key), m("T", mode, key)
            if a is None or c is None or t is None:
                continue
            added_t, added_c = t - a, c - a
            ratio_l = added_t / added_c if added_c > 0 else None
            row(f"added latency {pname} {label} vs HAProxy", ratio_l,
                f"T +{added_t:.0f} us, HAProxy +{added_c:.0f} us", "<= 1.2x",
                None if ratio_l is None else ratio_l <= 1.2)
    if cpu["D"] and cpu["B"]:
        row("reference: lean probe D vs nginx (sat, not Tollway)", cpu["B"] / cpu["D"],
            f"D {cpu['D']:.1f} us/req", "(info)", None)
    rss = rss_max("T-100")
    row("peak RSS, 100 routes / 20 clusters / regex / authz (MB)", rss,
        f"T {rss_max('T') or 0:.1f} MB, nginx {rss_max('B') or 0:.1f}, HAProxy "
        f"{rss_max('C') or 0:.1f}", "<= 30 MB", None if rss is None else rss <= 30)
    if cpu["T"] and cpu["T-mir"]:
        cost = 1 - cpu["T"] / cpu["T-mir"]
        row("mirroring 100%: per-core throughput lost", cost * 100,
            f"T {cpu['T']:.1f} us/req, T-mir {cpu['T-mir']:.1f}", "<= 10 %", cost <= 0.10)
        rps_t, rps_m = m("T", "sat", "rps"), m("T-mir", "sat", "rps")
        if rps_t and rps_m:
            row("mirroring 100%: req/s lost at saturation (%)", (1 - rps_m / rps_t) * 100,
                f"T {rps_t:.0f} req/s, T-mir {rps_m:.0f}", "(info)", None)
    steal = [r["proxy_core_steal_pct"] for r in res]
    print()
    print("| metric | value | measured (same run) | target | |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    if steal:
        print(f"\nproxy-core steal: median {statistics.median(steal):.0f}%, max {max(steal):.0f}% "
              f"over {len(steal)} runs (runs above the limit were redone)")


if __name__ == "__main__":
    main(sys.argv[1])
