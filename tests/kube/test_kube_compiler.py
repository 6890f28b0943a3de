"""A sidecar in a pod gets its snapshot from its pod as the API server has it.

The pod's labels and workload (not what the sidecar says), a captured inbound listener
on 0.0.0.0:15006 with a chain per container port, outbound on 15001; endpoints as
EndpointSlices list them (pod IP at the targetPort), mTLS only to pods with a sidecar.
"""

from __future__ import annotations

import copy
from typing import Any

from tests.kube.test_kube_mirror import KINDS, pod, seed, service
from tollway.control.plane import ControlPlane
from tollway.control.proxies import ProxyEntry
from tollway.control.registry import TLS_MODE_LABEL
from tollway.control.store import ConfigStore
from tollway.kube import objects
from tollway.kube.compiler import KubeCompiler
from tollway.kube.informer import Event
from tollway.kube.mirror import Mirror
from tollway.snapshot import types


def _plain(name: str, ip: str) -> dict[str, Any]:
    p = pod(name, ip=ip, sidecar=False)
    p["metadata"]["labels"] = {"app": "legacy"}
    p["metadata"]["ownerReferences"] = []
    return p


def _plane() -> tuple[ControlPlane, Mirror]:
    store = ConfigStore()
    infos: dict[str, objects.PodInfo] = {}
    plane = ControlPlane(store, compiler=KubeCompiler(infos))
    mirror = Mirror(store, plane, infos=infos)
    docs = seed("02-canary-split-90-10.yaml")
    legacy = copy.deepcopy(service("legacy"))
    mirror.handle(KINDS["Service"], [Event("ADDED", service()), Event("ADDED", legacy)])
    mirror.handle(KINDS["DestinationRule"], [Event("ADDED", docs["DestinationRule"])])
    mirror.handle(KINDS["VirtualService"], [Event("ADDED", docs["VirtualService"])])
    v2 = pod("myapp-v2-1", ip="10.244.0.9")
    v2["metadata"]["labels"]["version"] = "v2"
    v2["metadata"]["ownerReferences"] = [{"kind": "ReplicaSet", "name": "myapp-v2-5d9c7"}]
    mirror.handle(KINDS["Pod"], [Event("ADDED", pod("myapp-v1-1")), Event("ADDED", v2),
                                 Event("ADDED", _plain("legacy-1", "10.244.0.20"))])
    return plane, mirror


def _register(plane: ControlPlane, name: str) -> types.ProxyConfig:
    node = types.Node(name=f"{name}.shop", workload=name, namespace="shop",
                      service_account="myapp", labels={"claimed": "by-the-sidecar"})
    plane.register(ProxyEntry(node, admin="127.0.0.1:15090", origin="vm",
                              ports={"outbound": 15001, "capture": 15006}))
    plane.recompute()
    return plane.configs[f"{name}.shop"]


def test_the_pods_sidecar_gets_capture_listeners_and_the_pods_labels() -> None:
    plane, _ = _plane()
    cfg = _register(plane, "myapp-v1-1")
    assert cfg.node.labels == {"app": "myapp", "version": "v1", "pod-template-hash": "5d9c7"}
    assert cfg.node.workload == "myapp-v1"
    by_name = {lst.name: lst for lst in cfg.listeners}
    inbound, outbound = by_name["virtualInbound"], by_name["outbound"]
    assert (inbound.kind, inbound.address, inbound.port, inbound.capture) == \
        ("inbound", "0.0.0.0", 15006, True)
    assert [(c.port, c.route_table) for c in inbound.chains] == [(8080, "inbound|8080")]
    assert (outbound.address, outbound.port) == ("127.0.0.1", 15001)
    app = next(c for c in cfg.clusters if c.name == "inbound|8080||")
    assert [(e.address, e.port) for e in app.endpoints] == [("127.0.0.1", 8080)]


def test_endpoints_are_pod_ips_at_target_ports_mtls_only_with_a_sidecar() -> None:
    plane, _ = _plane()
    cfg = _register(plane, "myapp-v1-1")
    clusters = {c.name: c for c in cfg.clusters}
    v1 = clusters["outbound|80|v1|myapp.shop.svc.cluster.local"]
    v2 = clusters["outbound|80|v2|myapp.shop.svc.cluster.local"]
    assert [(e.address, e.port) for e in v1.endpoints] == [("10.244.0.7", 8080)]
    assert [(e.address, e.port) for e in v2.endpoints] == [("10.244.0.9", 8080)]
    assert v1.tls.mode == "ISTIO_MUTUAL" and v1.endpoints[0].labels[TLS_MODE_LABEL] == "istio"
    eps = plane.compiler.endpoints(plane.world)["legacy.shop.svc.cluster.local:80"]
    assert [(e.address, e.port) for e in eps] == [("10.244.0.20", 8080)]
    assert TLS_MODE_LABEL not in eps[0].labels  # no sidecar: plaintext
    route = next(v for t in cfg.route_tables for v in t.virtual_hosts
                 if v.name == "legacy.shop.svc.cluster.local:80").routes[0]
    legacy = clusters[route.clusters[0].cluster]
    assert legacy.tls.mode == "DISABLE"


def test_a_relabelled_pod_changes_its_sidecars_snapshot() -> None:
    plane, mirror = _plane()
    before = _register(plane, "myapp-v1-1")
    moved = pod("myapp-v1-1")
    moved["metadata"]["labels"]["version"] = "v2"
    mirror.handle(KINDS["Pod"], [Event("MODIFIED", moved)])
    plane.recompute()
    after = plane.configs["myapp-v1-1.shop"]
    assert after.node.labels["version"] == "v2" and after.version != before.version


def test_a_proxy_without_a_pod_keeps_what_it_registered() -> None:
    plane, _ = _plane()
    cfg = _register(plane, "vm-1")
    assert cfg.node.labels == {"claimed": "by-the-sidecar"}
    [inbound] = [lst for lst in cfg.listeners if lst.capture]
    assert inbound.chains == ()  # every port passed through to the app as it comes


def test_prometheus_discovers_a_pod_sidecar_at_its_status_port_with_the_pods_labels() -> None:
    from tollway.control.serve import prometheus_targets

    plane, _ = _plane()
    node = types.Node(name="myapp-v1-1.shop", workload="myapp-v1-1", namespace="shop",
                      service_account="myapp")
    plane.register(ProxyEntry(node, admin="127.0.0.1:15090", address="10.244.0.7", origin="vm",
                              ports={"outbound": 15001, "capture": 15006, "status": 15020}))
    plane.recompute()
    [group] = prometheus_targets(plane)
    assert group["targets"] == ["10.244.0.7:15020"]  # the admin is on the pod's loopback
    assert group["labels"]["workload"] == "myapp-v1" and group["labels"]["version"] == "v1"
    assert group["labels"]["__metrics_path__"] == "/stats/prometheus"


def test_a_deleted_pods_sidecar_is_forgotten() -> None:
    plane, mirror = _plane()
    _register(plane, "myapp-v1-1")
    assert plane.book.get("myapp-v1-1.shop") is not None
    mirror.handle(KINDS["Pod"], [Event("DELETED", pod("myapp-v1-1"))])
    plane.recompute()
    assert plane.book.get("myapp-v1-1.shop") is None
    assert "myapp-v1-1.shop" not in plane.configs and "myapp-v1-1.shop" not in plane.replicas


def test_a_service_half_injected_gets_mtls_only_to_the_pods_with_a_sidecar() -> None:
    import asyncio
    import ssl

    from tollway.proxy.upstream.cluster import LiveCluster

    plane, mirror = _plane()
    plain_v1 = pod("myapp-v1-2", ip="10.244.0.30", sidecar=False)  # not restarted yet
    mirror.handle(KINDS["Pod"], [Event("ADDED", plain_v1)])
    cfg = _register(plane, "client-1")
    v1 = next(c for c in cfg.clusters if c.name == "outbound|80|v1|myapp.shop.svc.cluster.local")
    assert sorted(e.address for e in v1.endpoints) == ["10.244.0.30", "10.244.0.7"]
    assert (v1.tls.mode, v1.tls.per_endpoint) == ("ISTIO_MUTUAL", True)
    v2 = next(c for c in cfg.clusters if c.name == "outbound|80|v2|myapp.shop.svc.cluster.local")
    assert (v2.tls.mode, v2.tls.per_endpoint) == ("ISTIO_MUTUAL", False)  # all meshed

    async def pools() -> dict[str, bool]:
        live = LiveCluster(v1, asyncio.get_running_loop(), ssl.create_default_context())
        try:
            return {p.address: p.ssl_context is not None for p in live.pools}
        finally:
            live.close()

    assert asyncio.run(pools()) == {"10.244.0.7": True, "10.244.0.30": False}
