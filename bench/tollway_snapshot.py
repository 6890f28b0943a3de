"""Write the snapshot the bench runs Tollway's proxy with (standard library + tollway only).

Default: one VirtualService-like route with a 90/10 split over two clusters (both the
same upstream), outlier detection on each cluster, Istio metrics on, access log off -
the issue's benchmark shape. `--routes 100 --clusters 20 --regex --authz` builds the
peak-RSS shape: `--regex` makes the first route match its uri by an RE2 regex (RE2 is
loaded), `--authz PORT` adds an inbound listener on PORT in front of the upstream with an
AuthorizationPolicy (as a sidecar that enforces one has). `--mirror` adds a 100% mirror
to a third cluster.

  python bench/tollway_snapshot.py --upstream 127.0.0.1:18080 --port 18089 [--routes N]
         [--clusters N] [--mirror] [--regex] [--authz PORT] > snap.json
"""

from __future__ import annotations

import argparse
import sys

from tollway.snapshot import codec, types


def build(upstream: str, port: int, routes: int, clusters: int, mirror: bool,
          regex: bool = False, authz_port: int = 0) -> types.ProxyConfig:
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
        uri = (types.StringMatch(kind="regex", value=r"/api/v[0-9]+/items/[a-z0-9-]{1,64}")
               if regex and r == 0 else types.StringMatch(kind="prefix", value=f"/api/r{r}/"))
        rts.append(types.Route(
            name=f"r{r}",
            matches=(types.RouteMatch(uri=uri),),
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
    listeners = [types.Listener(name="outbound", kind="outbound", address="127.0.0.1",
                                port=port, route_table="bench")]
    authz = types.Authz()
    if authz_port:
        listeners.append(types.Listener(name="inbound", kind="inbound", address="127.0.0.1",
                                        port=authz_port, app_address=host, app_port=int(uport),
                                        service_port=80))
        authz = types.Authz(policies=(types.AuthzPolicy(
            name="default/allow-readers", action="ALLOW",
            rules=(types.AuthzRule(
                operations=(types.AuthzOperation(methods=types.StringSet(values=("GET", "HEAD")),
                                                 paths=types.StringSet(values=("/api/*",))),),
            ),),
        ),))
    return types.ProxyConfig(
        version="bench", node=types.Node(name="bench", workload="bench", labels={"app": "bench"}),
        listeners=tuple(listeners), route_tables=(table,),
        clusters=(*cl, shadow) if mirror else tuple(cl), authz=authz,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--routes", type=int, default=1)
    ap.add_argument("--clusters", type=int, default=2)
    ap.add_argument("--mirror", action="store_true")
    ap.add_argument("--regex", action="store_true")
    ap.add_argument("--authz", type=int, default=0, metavar="PORT")
    a = ap.parse_args()
    sys.stdout.buffer.write(codec.encode(build(a.upstream, a.port, a.routes, a.clusters, a.mirror,
                                               a.regex, a.authz)))


if __name__ == "__main__":
    main()
