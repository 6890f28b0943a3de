"""Hot-path cost of the proxy's pure decisions, in ns per call, next to a trivial baseline.

Everything is measured in the same run, so the ratios hold on any machine:
  baseline      a dict lookup (the floor of any Python per-request work)
  select/*      RouteTableMatcher.select on a 100-route table:
                  worst    one virtual host, 100 prefix routes, the last one matches
                  headers  one virtual host, 100 routes each with a header condition
                  vhosts   20 virtual hosts x 5 routes, exact Host, 3rd route matches
                  miss     Host matching no virtual host (404 NR)
  pick_cluster  a 90/10 split from one draw
  balance       LEAST_REQUEST P2C over 5 endpoints; ring hash over 5 with a key
  outlier       OutlierDetector.usable + observe(200)
  retry         RetryPolicy.should_retry(503) for seed 12's retryOn
  trace         trace.prepare + headers_to_set: new trace / propagated traceparent
  trace lines   trace.upstream_lines (the router's form: rendered header lines)
  headerops     headerops.apply(set 1, add 1, remove 1) on 8 headers

Run: python bench/core_micro.py [--rounds 5] [--n 200000]
Cases are interleaved round by round; each line shows the fastest round (the least
disturbed by other load; CPU time of this process, so time spent descheduled does not
count; the load average is printed too) and its ratio to the baseline.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable

from tollway.proxy.core import headerops, trace
from tollway.proxy.core.balance import RingHash, make_balancer
from tollway.proxy.core.exchange import Outcome
from tollway.proxy.core.match import RouteTableMatcher
from tollway.proxy.core.outlier import OutlierDetector
from tollway.proxy.core.retry import RetryPolicy
from tollway.snapshot import types

_V2 = types.HeaderMatch(name="x-version", match=types.StringMatch(kind="exact", value="v2"))


def _route(i: int, header: bool) -> types.Route:
    match = types.RouteMatch(
        uri=types.StringMatch(kind="prefix", value=f"/service-{i:03d}/"),
        headers=(_V2,) if header else (),
    )
    clusters = (
        types.WeightedCluster(cluster=f"outbound|80|v1|s{i}", weight=90),
        types.WeightedCluster(cluster=f"outbound|80|v2|s{i}", weight=10),
    )
    return types.Route(name=f"r{i}", matches=(match,), clusters=clusters)


def _one_vhost(header: bool) -> RouteTableMatcher:
    vh = types.VirtualHost(
        name="big", domains=("big", "big:80"), routes=tuple(_route(i, header) for i in range(100))
    )
    return RouteTableMatcher(types.RouteTable(name="t", virtual_hosts=(vh,)))


def _many_vhosts() -> RouteTableMatcher:
    vhs = tuple(
        types.VirtualHost(
            name=f"s{v}",
            domains=(f"s{v}", f"s{v}.default.svc.cluster.local", f"s{v}:80"),
            routes=tuple(_route(i, False) for i in range(5)),
        )
        for v in range(20)
    )
    return RouteTableMatcher(types.RouteTable(name="t", virtual_hosts=vhs))


def _time(fn: Callable[[], object], n: int) -> float:
    t0 = time.process_time_ns()  # CPU time: robust to other processes sharing the cores
    for _ in range(n):
        fn()
    return (time.process_time_ns() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n", type=int, default=200_000)
    args = ap.parse_args()

    plain, headered, many = _one_vhost(False), _one_vhost(True), _many_vhosts()
    hdrs = {"x-version": "v2", "user-agent": "bench", "accept": "*/*"}
    last_path = "/service-099/items?id=7"
    table = {f"/service-{i:03d}/": i for i in range(100)}
    route = plain.select("big", "GET", last_path, hdrs)
    assert route is not None and route.spec.name == "r99"
    assert headered.select("big", "GET", last_path, hdrs) is not None
    hit = many.select("s17", "GET", "/service-002/x", hdrs)
    assert hit is not None and hit.spec.name == "r2"
    eps = tuple(types.Endpoint(address=f"10.0.0.{i}", port=80) for i in range(5))
    p2c = make_balancer(types.LoadBalancer(), eps)
    ring = RingHash(eps)
    active = [0] * 5
    cands = (0, 1, 2, 3, 4)
    det = OutlierDetector(types.OutlierDetection(), 5)
    ok = Outcome(status=200)
    e503 = Outcome(status=503)
    retry = RetryPolicy(3, ("gateway-error", "connect-failure", "retriable-4xx"))
    rng = random.Random(1)
    tp = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
          "x-request-id": "0d1e-42"}  # fmt: skip
    ops = types.HeaderOps(set={"x-env": "prod"}, add={"x-via": "tollway"}, remove=("x-debug",))
    block = [(f"x-h{i}", "v") for i in range(7)] + [("x-debug", "1")]

    cases: list[tuple[str, Callable[[], object]]] = [
        ("baseline dict lookup", lambda: table.get("/service-099/")),
        ("select worst (100 routes, last)", lambda: plain.select("big", "GET", last_path, hdrs)),
        ("select headers (100 routes, last)",
         lambda: headered.select("big", "GET", last_path, hdrs)),
        ("select vhosts (20x5, 3rd)", lambda: many.select("s17", "GET", "/service-002/x", hdrs)),
        ("select miss (no vhost)", lambda: many.select("nope", "GET", "/", hdrs)),
        ("pick_cluster 90/10", lambda: route.pick_cluster(0.42)),
        ("balance P2C (5)", lambda: p2c.pick(cands, r=0.37, hash_key=None, active=active)),
        ("balance ring hash (5)", lambda: ring.pick(cands, r=0.3, hash_key="user-42",
                                                    active=active)),
        ("outlier usable+observe", lambda: (det.usable(1.0), det.observe(2, ok, 1.0))),
        ("retry should_retry(503)", lambda: retry.should_retry(e503)),
        ("trace new", lambda: trace.prepare(hdrs, rng).headers_to_set()),
        ("trace propagate", lambda: trace.prepare(tp, rng).headers_to_set()),
        ("trace lines new", lambda: trace.upstream_lines(hdrs, rng)),
        ("trace lines propagate", lambda: trace.upstream_lines(tp, rng)),
        ("headerops apply", lambda: headerops.apply(block, ops)),
    ]  # fmt: skip
    results: dict[str, list[float]] = {name: [] for name, _ in cases}
    for _ in range(args.rounds):
        for name, fn in cases:
            results[name].append(_time(fn, args.n))
    base = min(results["baseline dict lookup"])
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"load average {load}; {args.rounds} rounds x {args.n} calls, fastest round")
    print(f"{'case':38} {'ns/call':>9} {'x baseline':>11}")
    for name, _ in cases:
        best = min(results[name])
        print(f"{name:38} {best:9.0f} {best / base:11.1f}")

if __name__ == "__main__":
    main()
