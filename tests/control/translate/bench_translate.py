"""Time World.build + translate.build for N proxies (not a test; run it as a script).

    python tests/control/translate/bench_translate.py [N]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from translate_kit import load, versions

from tollway.control import translate
from tollway.control.world import World
from tollway.snapshot import types


def main(n: int) -> None:
    resources = load("01", "02", "07", "11", "12", "13")
    replicas = []
    for i in range(max(1, n // 10)):
        replicas += versions(f"svc{i}", {"v1": 5, "v2": 5})
    replicas += versions("myapp", {"v1": 3, "v2": 1}) + versions("api", {"v1": 3, "v2": 1})
    ports = translate.ProxyPorts(inbound=[(8080, "127.0.0.1", 1, "127.0.0.1", 2)],
                                 outbound=("127.0.0.1", 3))
    runs = []
    for _ in range(20):
        start = time.perf_counter()
        world = World.build(resources, replicas)
        for r in replicas[:n]:
            node = types.Node(name=r.name, workload=r.workload, labels=dict(r.labels),
                              namespace=r.namespace)
            translate.build(world, node, ports)
        runs.append((time.perf_counter() - start) * 1000)
    print(f"{n} proxies, {len(world.services)} services, {len(replicas)} endpoints: "
          f"median {statistics.median(runs):.1f} ms, max {max(runs):.1f} ms per full recompute")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
