"""Watch events -> the ConfigStore / replicas, and the Reconciled conditions to write."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from tollway.control.registry import Replica
from tollway.control.store import ConfigStore
from tollway.kube import kinds, objects
from tollway.kube.informer import Event
from tollway.kube.mirror import Mirror, StatusWrite

SEED = Path(__file__).resolve().parent.parent / "data" / "seed"
KINDS = {w.kind: w for w in kinds.watched()}


class Sink:
    def __init__(self) -> None:
        self.replicas: dict[str, Replica] = {}
        self.touched = 0
        self.unregistered: list[str] = []

    def touch(self) -> None:
        self.touched += 1

    def unregister(self, name: str) -> None:
        self.unregistered.append(name)
        self.replicas.pop(name, None)

    def set_replica(self, replica: Replica) -> None:
        self.replicas[replica.name] = replica

    def remove_replica(self, name: str) -> None:
        self.replicas.pop(name, None)


def seed(name: str) -> dict[str, dict[str, Any]]:
    docs = yaml.safe_load_all((SEED / name).read_text())
    out = {}
    for i, d in enumerate(docs):
        d = copy.deepcopy(d)
        d["metadata"].update(namespace="shop", generation=1, resourceVersion=str(i + 1))
        out[d["kind"]] = d
    return out


def service(name: str = "myapp") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "shop", "resourceVersion": "1",
                         "uid": "u1", "managedFields": []},
            "spec": {"selector": {"app": name}, "clusterIP": "10.96.3.4",
                     "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]},
            "status": {"loadBalancer": {}}}


def pod(name: str, ip: str | None = "10.244.0.7", *, sidecar: bool = True,
        ready: bool = True) -> dict[str, Any]:
    containers = [{"name": "app", "ports": [{"name": "web", "containerPort": 8080}]}]
    if sidecar:
        containers.append({"name": objects.SIDECAR_CONTAINER,
                           "ports": [{"name": "tollway-in", "containerPort": 15006}]})
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "shop",
                         "labels": {"app": "myapp", "version": "v1",
                                    "pod-template-hash": "5d9c7"},
                         "ownerReferences": [{"kind": "ReplicaSet", "name": "myapp-v1-5d9c7"}]},
            "spec": {"containers": containers, "serviceAccountName": "myapp"},
            "status": {"phase": "Running", "podIP": ip,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def reconciled(writes: list[StatusWrite], kind: str) -> dict[str, Any]:
    [w] = [w for w in writes if w.watched.kind == kind]
    [c] = [c for c in w.conditions if c["type"] == "Reconciled"]
    return c


def test_a_virtual_service_before_its_destination_rule_gets_in_when_the_rule_arrives() -> None:
    store, docs = ConfigStore(), seed("02-canary-split-90-10.yaml")
    mirror = Mirror(store, Sink(), now=lambda: "2026-01-01T00:00:00Z")
    assert mirror.handle(KINDS["Service"], [Event("ADDED", service())]) == []  # not ours
    writes = mirror.handle(KINDS["VirtualService"], [Event("ADDED", docs["VirtualService"])])
    refused = reconciled(writes, "VirtualService")
    assert refused["status"] == "False" and refused["reason"] == "Refused"
    assert "spec.http[0].route[0].destination.subset" in refused["message"]
    assert store.get(("VirtualService", "shop", "myapp")) is None
    writes = mirror.handle(KINDS["DestinationRule"], [Event("ADDED", docs["DestinationRule"])])
    assert reconciled(writes, "DestinationRule")["status"] == "True"
    assert reconciled(writes, "VirtualService")["status"] == "True"  # retried after the commit
    assert store.get(("VirtualService", "shop", "myapp")) is not None
    assert store.meta(("VirtualService", "shop", "myapp")).source == "kubernetes"  # type: ignore[union-attr]


def test_a_bad_field_is_refused_with_its_path_and_the_last_good_version_stays() -> None:
    store, docs = ConfigStore(), seed("02-canary-split-90-10.yaml")
    mirror = Mirror(store, Sink())
    mirror.handle(KINDS["Service"], [Event("ADDED", service())])
    mirror.handle(KINDS["DestinationRule"], [Event("ADDED", docs["DestinationRule"])])
    mirror.handle(KINDS["VirtualService"], [Event("ADDED", docs["VirtualService"])])
    bad = copy.deepcopy(docs["VirtualService"])
    bad["metadata"].update(generation=2, resourceVersion="9")
    bad["spec"]["http"][0]["route"][0]["weight"] = -5
    writes = mirror.handle(KINDS["VirtualService"], [Event("MODIFIED", bad)])
    cond = reconciled(writes, "VirtualService")
    assert cond["status"] == "False" and cond["observedGeneration"] == 2
    assert cond["message"].startswith("spec.http[0].route[0].weight: must be >= 0")
    kept = store.get(("VirtualService", "shop", "myapp"))
    assert kept is not None and kept.spec["http"][0]["route"][0]["weight"] == 90


def test_our_own_status_update_coming_back_writes_nothing_more() -> None:
    store, docs = ConfigStore(), seed("02-canary-split-90-10.yaml")
    mirror = Mirror(store, Sink())
    mirror.handle(KINDS["Service"], [Event("ADDED", service())])
    [w] = mirror.handle(KINDS["DestinationRule"], [Event("ADDED", docs["DestinationRule"])])
    echoed = {**w.obj, "status": {"conditions": w.conditions}}
    assert mirror.handle(KINDS["DestinationRule"], [Event("MODIFIED", echoed)]) == []


def test_deleting_in_kubernetes_deletes_from_the_store() -> None:
    store, docs = ConfigStore(), seed("02-canary-split-90-10.yaml")
    mirror = Mirror(store, Sink())
    mirror.handle(KINDS["Service"], [Event("ADDED", service())])
    mirror.handle(KINDS["DestinationRule"], [Event("ADDED", docs["DestinationRule"])])
    mirror.handle(KINDS["DestinationRule"], [Event("DELETED", docs["DestinationRule"])])
    assert store.get(("DestinationRule", "shop", "myapp")) is None


def test_ready_pods_are_endpoints_at_their_pod_ip_mtls_only_with_a_sidecar() -> None:
    sink = Sink()
    mirror = Mirror(ConfigStore(), sink)
    mirror.handle(KINDS["Pod"], [Event("ADDED", pod("a")),
                                 Event("ADDED", pod("b", ip="10.244.0.8", sidecar=False)),
                                 Event("ADDED", pod("c", ip=None))])
    assert set(sink.replicas) == {"a.shop", "b.shop"}
    a, b = sink.replicas["a.shop"], sink.replicas["b.shop"]
    assert (a.address, a.app_port, a.workload, a.kind, a.service_account, a.sidecar) == \
        ("10.244.0.7", 8080, "myapp-v1", "Deployment", "myapp", True)
    assert (b.address, b.sidecar) == ("10.244.0.8", False)
    # as an EndpointSlice: the Service's targetPort at the pod IP, a named one resolved
    assert (a.port_for(8080), a.port_for("web"), a.port_for(9000)) == (8080, 8080, 9000)
    mirror.handle(KINDS["Pod"], [Event("MODIFIED", pod("a", ready=False))])
    assert set(sink.replicas) == {"b.shop"}


def test_a_sidecar_pods_info_is_kept_for_its_snapshot_and_changes_touch_the_plane() -> None:
    sink = Sink()
    mirror = Mirror(ConfigStore(), sink)
    mirror.handle(KINDS["Pod"], [Event("ADDED", pod("a", ready=False)),
                                 Event("ADDED", pod("b", sidecar=False))])
    assert set(mirror.infos) == {"a.shop"}  # known before Ready: its sidecar needs config
    info = mirror.infos["a.shop"]
    assert (info.workload, info.app_ports, info.labels["version"]) == ("myapp-v1", (8080,), "v1")
    touched = sink.touched
    mirror.handle(KINDS["Pod"], [Event("MODIFIED", pod("a", ready=False))])
    assert sink.touched == touched  # nothing the snapshot reads changed
    relabelled = pod("a")
    relabelled["metadata"]["labels"]["version"] = "v2"
    mirror.handle(KINDS["Pod"], [Event("MODIFIED", relabelled)])
    assert sink.touched == touched + 1 and mirror.infos["a.shop"].labels["version"] == "v2"
    mirror.handle(KINDS["Pod"], [Event("DELETED", relabelled)])
    assert mirror.infos == {} and sink.replicas == {"b.shop": sink.replicas["b.shop"]}
    assert sink.unregistered == ["a.shop"]  # its sidecar gets no more snapshots


def test_server_fields_of_a_service_do_not_count_against_it() -> None:
    resource, findings = objects.to_resource(service())
    assert resource is not None and not [f for f in findings if f.is_error]


def test_kind_paths() -> None:
    assert KINDS["AuthorizationPolicy"].path("ns", "x", "status") == \
        "/apis/security.istio.io/v1/namespaces/ns/authorizationpolicies/x/status"
    assert KINDS["Pod"].path() == "/api/v1/pods"
    assert KINDS["Canary"].plural == "canaries"
    assert KINDS["ClusterAnalysisTemplate"].path("ns", "t") == \
        "/apis/argoproj.io/v1alpha1/clusteranalysistemplates/t"


def test_a_generation_bumped_by_our_own_status_write_writes_nothing_more() -> None:
    """Without a status subresource the API server bumps generation on our status patch."""
    store, docs = ConfigStore(), seed("02-canary-split-90-10.yaml")
    mirror = Mirror(store, Sink())
    mirror.handle(KINDS["Service"], [Event("ADDED", service())])
    [w] = mirror.handle(KINDS["DestinationRule"], [Event("ADDED", docs["DestinationRule"])])
    echoed = copy.deepcopy({**w.obj, "status": {"conditions": w.conditions}})
    echoed["metadata"]["generation"] = 2
    assert mirror.handle(KINDS["DestinationRule"], [Event("MODIFIED", echoed)]) == []
    edited = copy.deepcopy(echoed)
    edited["metadata"]["generation"] = 3
    edited["spec"]["subsets"].append({"name": "v3", "labels": {"version": "v3"}})
    [w] = mirror.handle(KINDS["DestinationRule"], [Event("MODIFIED", edited)])
    assert reconciled([w], "DestinationRule")["observedGeneration"] == 3
