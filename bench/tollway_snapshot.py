"""Write the snapshot the bench runs Tollway's proxy with (standard library + tollway only).

Default: one VirtualService-like route with a 90/10 split over two clusters (both the
same upstream), outlier detection on each cluster, Istio metrics on, access log off -
the issue's benchmark shape. `--routes 100 --clusters 20` builds the peak-RSS shape;
`--mirror` adds a 100% mirror to a third cluster.

  python bench/tollway_snapshot.py --upstream 127.0.0.1:18080 --port 18089 [--routes N]
         [--clusters N] [--mirror] > snap.json
"""

from __future__ import annotations

import argparse
import sys

from tollway.snapshot import codec, types


def build(upstream: str, port: int, routes: int, clusters: int, mirror: bool) -> types.ProxyConfig:
    host, uport = upstream.rsplit(":", 1)
    ep = types.Endpoint(address=host, port=int(uport), labels={"app": "backend", "version": "v1"},
                        workload="backend")
    od = types.OutlierDetection(consecutive_5xx=5, interval=10.0, base_ejection_time=30.0)
    cl = [
        types.Cluster(name=f"outbound|80|v{i}|backend.default.svc.cluster.local",
                      service="backend.default.svc.cluster.local", port=80, subset=f"v{i}",
                      endpoints=(ep,), outlier=od, service_name="backend",
                      service_namespace="default")
        for i in range(max(2, clusters))
    ]
    shadow = types.Cluster(name="outbound|80|shadow|backend.default.svc.cluster.local",
                           service="backend.default.svc.cluster.local", port=80, endpoints=(ep,))
    mirrors = (types.Mirror(cluster=shadow.name),) if mirror else ()
    rts = []
    for r in range(routes - 1):  # routes that do not match the bench's path, checked first
        a, b = cl[(2 * r) % len(cl)], cl[(2 * r + 1) % len(cl)]
        rts.append(types.Route(
            name=f"r{r}",
            matches=(types.RouteMatch(uri=types.StringMatch(kind="prefix", value=f"/api/r{r}/")),),
            clusters=(types.WeightedCluster(cluster=a.name, weight=90),
                      types.WeightedCluster(cluster=b.name, weight=10)),
        ))
    rts.append(types.Route(
        name="default",
        matches=(types.RouteMatch(uri=types.StringMatch(kind="prefix", value="/")),),
        clusters=(types.WeightedCluster(cluster=cl[0].name, weight=90),
                  types.WeightedCluster(cluster=cl[1].name, weight=10)),
        mirrors=mirrors,
    ))
    table = types.RouteTable(name="bench", virtual_hosts=(
        types.VirtualHost(name="backend", domains=("*",), routes=tuple(rts)),))
    listener = types.Listener(name="outbound", kind="outbound", address="127.0.0.1", port=port,
                              route_table="bench")
    return types.ProxyConfig(
        version="bench", node=types.Node(name="bench", workload="bench", labels={"app": "bench"}),
        listeners=(listener,), route_tables=(table,),
        clusters=(*cl, shadow) if mirror else tuple(cl),
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--routes", type=int, default=1)
    ap.add_argument("--clusters", type=int, default=2)
    ap.add_argument("--mirror", action="store_true")
    a = ap.parse_args()
    sys.stdout.buffer.write(codec.encode(build(a.upstream, a.port, a.routes, a.clusters, a.mirror)))


if __name__ == "__main__":
    main()
