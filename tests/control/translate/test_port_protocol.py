"""Port protocol and upstream protocol by Istio's rules: Service port appProtocol or name
prefix, ServiceEntry protocol, DestinationRule h2UpgradePolicy / useClientProtocol, the
mesh's h2UpgradePolicy; down to the snapshot's `Cluster.protocol`."""

from __future__ import annotations

import pytest
from translate_kit import CLIENT, client_config, load, replica, versions

from tollway.config.meshconfig import MeshConfig
from tollway.control import protocol, translate
from tollway.control.world import World
from tollway.snapshot import types


@pytest.mark.parametrize(("number", "name", "app", "want"), [
    (80, "http", None, "HTTP"),
    (80, "http-web", None, "HTTP"),
    (80, "HTTP2-api", None, "HTTP2"),
    (50051, "grpc", None, "GRPC"),
    (50051, "grpc-payments", None, "GRPC"),
    (8080, "grpc-web-ui", None, "GRPC-Web"),
    (5432, "tcp-db", None, "TCP"),
    (8080, "web", None, ""),  # says nothing: sniffed
    (8080, None, None, ""),
    (3306, None, None, "TCP"),  # a well-known port defaults to TCP
    (8080, "http", "grpc", "GRPC"),  # appProtocol wins over the name
    (8080, "web", "kubernetes.io/h2c", "HTTP2"),
    (8080, "web", "kubernetes.io/ws", "HTTP"),
    (8080, "web", "kubernetes.io/wss", "HTTPS"),
])
def test_port_protocol_follows_istio(number: int, name: str | None, app: str | None,
                                     want: str) -> None:
    assert protocol.port_protocol(number, name, app) == want


def test_udp_is_udp_whatever_the_name() -> None:
    assert protocol.port_protocol(53, "http", None, "UDP") == "UDP"


@pytest.mark.parametrize(("proto", "http", "mesh", "want"), [
    ("GRPC", None, False, "http2"),
    ("HTTP2", {"h2UpgradePolicy": "DO_NOT_UPGRADE"}, False, "http2"),  # the port decides
    ("HTTP", None, False, "http1"),
    ("HTTP", None, True, "http2"),  # the mesh upgrades HTTP ports
    ("HTTP", {"h2UpgradePolicy": "DO_NOT_UPGRADE"}, True, "http1"),
    ("HTTP", {"h2UpgradePolicy": "DEFAULT"}, True, "http2"),
    ("HTTP", {"h2UpgradePolicy": "UPGRADE"}, False, "http2"),
    ("TCP", None, True, "http1"),  # the mesh never upgrades a non-HTTP port
    ("", {"h2UpgradePolicy": "UPGRADE"}, False, "http2"),  # the user vouches for it
    ("", None, True, "downstream"),  # sniffed: the client's protocol
    ("HTTP", {"useClientProtocol": True}, True, "downstream"),
])
def test_upstream_protocol_follows_istio(proto: str, http: dict[str, object] | None,
                                         mesh: bool, want: str) -> None:
    assert protocol.upstream(proto, http, mesh) == want


def test_an_upgrade_by_policy_needs_a_sidecar_at_the_other_end() -> None:
    assert protocol.upstream("HTTP", {"h2UpgradePolicy": "UPGRADE"}, False,
                             to_sidecar=False) == "http1"
    assert protocol.upstream("HTTP", None, True, to_sidecar=False) == "http1"
    assert protocol.upstream("GRPC", None, False, to_sidecar=False) == "http2"  # declared


def test_a_gateway_never_uses_the_client_protocol_for_a_sniffed_port() -> None:
    assert protocol.upstream("", None, False, sidecar=False) == "http1"


SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: pay, namespace: default}
spec:
  selector: {app: pay}
  ports:
  - {name: grpc-api, port: 50051}
  - {name: http, port: 8080}
  - {name: web, port: 9090}
  - {name: admin, port: 9091, appProtocol: kubernetes.io/h2c}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: default}
spec:
  hosts: [api.example.com]
  location: MESH_EXTERNAL
  ports: [{number: 443, name: main, protocol: GRPC}]
  resolution: DNS
"""


def _clusters(text: str, mesh: MeshConfig | None = None) -> dict[str, str]:
    resources = load(text)
    reps = versions("pay", {"v1": 1})
    if mesh is None:
        cfg = client_config(resources, reps)
    else:
        cfg = translate.build(World.build(resources, reps), CLIENT,
                              translate.ProxyPorts(outbound=("127.0.0.1", 15001)),
                              auto_mtls=False, mesh_config=mesh)
    return {c.name: c.protocol for c in cfg.clusters}


def test_clusters_carry_the_port_protocol() -> None:
    found = _clusters(SERVICES)
    host = "pay.default.svc.cluster.local"
    assert found[f"outbound|50051||{host}"] == "http2"
    assert found[f"outbound|8080||{host}"] == "http1"
    assert found[f"outbound|9090||{host}"] == "downstream"
    assert found[f"outbound|9091||{host}"] == "http2"
    assert found["outbound|443||api.example.com"] == "http2"


def test_destination_rule_and_mesh_h2_upgrade_policy() -> None:
    host = "pay.default.svc.cluster.local"
    dr = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: pay, namespace: default}
spec:
  host: pay
  trafficPolicy:
    tls: {mode: ISTIO_MUTUAL}
    connectionPool: {http: {h2UpgradePolicy: UPGRADE, maxConcurrentStreams: 50}}
    portLevelSettings:
    - port: {number: 9090}
      connectionPool: {http: {useClientProtocol: true}}
"""
    found = _clusters(SERVICES + "\n---\n" + dr)
    assert found[f"outbound|8080||{host}"] == "http2"
    assert found[f"outbound|9090||{host}"] == "downstream"
    mtls = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: pay, namespace: default}
spec: {host: pay, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}
"""
    upgraded = _clusters(SERVICES + "\n---\n" + mtls,
                         MeshConfig.model_validate({"h2UpgradePolicy": "UPGRADE"}))
    assert upgraded[f"outbound|8080||{host}"] == "http2"
    assert upgraded[f"outbound|9090||{host}"] == "downstream"  # not an HTTP port: sniffed


def test_max_concurrent_streams_reaches_the_snapshot() -> None:
    dr = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: pay, namespace: default}
spec:
  host: pay
  trafficPolicy: {connectionPool: {http: {maxConcurrentStreams: 50, http2MaxRequests: 7}}}
"""
    cfg = client_config(load(SERVICES + "\n---\n" + dr), versions("pay", {"v1": 1}))
    pool = next(c for c in cfg.clusters if c.name.startswith("outbound|50051|")).connection_pool
    assert (pool.max_concurrent_streams, pool.http2_max_requests) == (50, 7)


def test_inbound_cluster_speaks_the_port_protocol_to_the_app() -> None:
    world = World.build(load(SERVICES), [replica("pay-v1", {"app": "pay", "version": "v1"})])
    me = types.Node(name="pay-v1-0", workload="pay-v1", namespace="default",
                    labels={"app": "pay", "version": "v1"})
    cfg = translate.build(world, me, translate.ProxyPorts(inbound=(
        (50051, "127.0.0.1", 0, "127.0.0.1", 40001), (8080, "127.0.0.1", 0, "127.0.0.1", 40002),
    )), auto_mtls=False)
    found = {c.name: c.protocol for c in cfg.clusters if c.name.startswith("inbound")}
    assert found == {"inbound|50051||": "http2", "inbound|8080||": "http1"}


def test_fault_abort_grpc_status_reaches_the_snapshot() -> None:
    vs = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: pay, namespace: default}
spec:
  hosts: [pay]
  http:
  - fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 50}}}
    route: [{destination: {host: pay}}]
"""
    cfg = client_config(load(SERVICES + "\n---\n" + vs), versions("pay", {"v1": 1}))
    faults = [r.fault for t in cfg.route_tables for v in t.virtual_hosts for r in v.routes
              if r.fault is not None]
    assert faults and all(
        (f.abort_status, f.abort_grpc_status, f.abort_percent) == (200, 14, 50.0)
        for f in faults)
