"""DestinationRule inheritance: subset blocks replace top-level blocks; port-level settings
replace all four blocks with defaults for what they omit; several DRs merge subsets."""

from __future__ import annotations

from translate_kit import client_config, cluster, fqdn, load, versions

from tollway.control.translate import policy
from tollway.snapshot import types

TOP = {
    "connectionPool": {"tcp": {"maxConnections": 10}, "http": {"http1MaxPendingRequests": 7}},
    "loadBalancer": {"simple": "ROUND_ROBIN"},
    "outlierDetection": {"consecutive5xxErrors": 3},
}


def test_merge_subset_replaces_whole_block_not_fields() -> None:
    merged = policy.merge(TOP, {"connectionPool": {"tcp": {"maxConnections": 99}}}, 8080)
    pool = policy.connection_pool(merged["connectionPool"])
    assert pool.max_connections == 99
    assert pool.http1_max_pending_requests == types.ConnectionPool().http1_max_pending_requests
    assert policy.load_balancer(merged["loadBalancer"]).simple == "ROUND_ROBIN"
    assert merged["outlierDetection"] == {"consecutive5xxErrors": 3}


def test_merge_port_level_replaces_all_blocks_with_defaults() -> None:
    top = {**TOP, "portLevelSettings": [{"port": {"number": 9090},
                                         "loadBalancer": {"simple": "RANDOM"}}]}
    at_9090 = policy.merge(top, None, 9090)
    assert policy.load_balancer(at_9090["loadBalancer"]).simple == "RANDOM"
    assert at_9090["connectionPool"] is None and at_9090["outlierDetection"] is None
    at_8080 = policy.merge(top, None, 8080)
    assert policy.load_balancer(at_8080["loadBalancer"]).simple == "ROUND_ROBIN"


def test_merge_subset_port_level_wins_over_everything() -> None:
    subset = {"loadBalancer": {"simple": "RANDOM"},
              "portLevelSettings": [{"port": {"number": 8080},
                                     "connectionPool": {"tcp": {"maxConnections": 5}}}]}
    merged = policy.merge(TOP, subset, 8080)
    assert merged["loadBalancer"] is None
    assert policy.connection_pool(merged["connectionPool"]).max_connections == 5


def test_outlier_defaults_when_block_present() -> None:
    assert policy.outlier({}) == types.OutlierDetection(consecutive_5xx=5)
    assert policy.outlier({"consecutive5xxErrors": 0}).consecutive_5xx is None  # type: ignore[union-attr]
    assert policy.outlier(None) is None


def test_load_balancer_default_least_request_and_consistent_hash() -> None:
    assert policy.load_balancer(None).simple == "LEAST_REQUEST"
    assert policy.load_balancer({"simple": "LEAST_CONN"}).simple == "LEAST_REQUEST"
    lb = policy.load_balancer({"consistentHash": {"httpCookie": {"name": "u", "ttl": "10s"}}})
    assert lb.consistent_hash == types.ConsistentHash(kind="cookie", name="u", cookie_ttl=10.0)
    lb = policy.load_balancer({"consistentHash": {"httpHeaderName": "X-User"}})
    assert lb.consistent_hash == types.ConsistentHash(kind="header", name="x-user")


def test_zero_pool_values_mean_default() -> None:
    pool = policy.connection_pool({"tcp": {"maxConnections": 0, "connectTimeout": "2s"}})
    assert pool.max_connections == types.ConnectionPool().max_connections
    assert pool.connect_timeout == 2.0


DR_SUBSET_POLICY = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: myapp}
spec:
  host: myapp
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool: {tcp: {maxConnections: 10}, http: {http1MaxPendingRequests: 3}}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      connectionPool: {tcp: {maxConnections: 1}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: myapp}
spec:
  hosts: [myapp]
  http:
  - route:
    - destination: {host: myapp, subset: v1}
      weight: 50
    - destination: {host: myapp, subset: v2}
      weight: 50
"""


def test_translated_subset_policy_overrides_top_level_block() -> None:
    config = client_config(load("01", DR_SUBSET_POLICY), versions("myapp", {"v1": 1, "v2": 1}))
    host = fqdn("myapp")
    v1 = cluster(config, f"outbound|8080|v1|{host}")
    v2 = cluster(config, f"outbound|8080|v2|{host}")
    assert (v1.connection_pool.max_connections, v1.connection_pool.http1_max_pending_requests) \
        == (10, 3)
    assert v2.connection_pool.max_connections == 1
    assert v2.connection_pool.http1_max_pending_requests == 4294967295
    assert v1.load_balancer.simple == v2.load_balancer.simple == "ROUND_ROBIN"


SECOND_DR = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: myapp-extra}
spec:
  host: myapp.default.svc.cluster.local
  trafficPolicy:
    loadBalancer: {simple: RANDOM}
  subsets:
  - name: v1
    labels: {version: v2}
  - name: v3
    labels: {version: v3}
"""


def test_two_drs_merge_subsets_first_top_level_wins() -> None:
    reps = versions("myapp", {"v1": 1, "v2": 1, "v3": 1})
    vs = DR_SUBSET_POLICY.split("---")[1].replace("subset: v2", "subset: v3")
    config = client_config(load("01", DR_SUBSET_POLICY.split("---")[0], SECOND_DR, vs), reps)
    host = fqdn("myapp")
    v1 = cluster(config, f"outbound|8080|v1|{host}")
    assert {e.labels["version"] for e in v1.endpoints} == {"v1"}
    assert v1.load_balancer.simple == "ROUND_ROBIN"
    v3 = cluster(config, f"outbound|8080|v3|{host}")
    assert {e.labels["version"] for e in v3.endpoints} == {"v3"}
