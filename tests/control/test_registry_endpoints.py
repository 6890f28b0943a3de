"""Registry: hosts and endpoints from Services, app labels, WorkloadEntries, ServiceEntries."""

from __future__ import annotations

from tollway.config.load import load_text
from tollway.config.resource import ResourceSet
from tollway.control.registry import Replica, build_registry, endpoints_for

KEY = "myapp.default.svc.cluster.local:8080"


def _load(text: str) -> ResourceSet:
    result = load_text(text, "test.yaml")
    assert result.ok, [f.render() for f in result.findings]
    return result.resources


def _replica(labels: dict[str, str], port: int, ns: str = "default", healthy: bool = True,
             workload: str = "myapp-v1", kind: str = "Deployment") -> Replica:
    return Replica(workload=workload, kind=kind, namespace=ns, labels=labels,
                   service_account="sa", address="127.0.0.1", port=port, app_port=port + 1,
                   healthy=healthy, name=f"{workload}-{port}")


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: myapp-v1}
spec:
  selector: {matchLabels: {app: myapp}}
  template:
    metadata: {labels: {app: myapp, version: v1}}
    spec:
      containers:
      - name: app
        image: x
        command: [run]
        ports: [{containerPort: 9000}]
"""


def test_deployment_without_service_provides_app_host_on_container_port() -> None:
    eps = endpoints_for(_load(DEPLOYMENT), [_replica({"app": "myapp"}, 20001)])
    (e,) = eps["myapp.default.svc.cluster.local:9000"]
    assert (e.address, e.port, e.service_account) == ("127.0.0.1", 20001, "sa")
    assert e.labels["security.istio.io/tlsMode"] == "istio"


def test_replica_without_declared_port_defaults_to_8080() -> None:
    eps = endpoints_for(ResourceSet(), [_replica({"app": "myapp"}, 20001)])
    assert [e.port for e in eps[KEY]] == [20001]


SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: myapp}
  ports: [{name: http, port: 80, targetPort: 9000}]
"""


def test_service_selects_replicas_in_its_namespace_only() -> None:
    reps = [_replica({"app": "myapp"}, 20001), _replica({"app": "myapp"}, 20002, ns="other"),
            _replica({"app": "else"}, 20003)]
    eps = endpoints_for(_load(SERVICE), reps)
    assert [e.port for e in eps["web.default.svc.cluster.local:80"]] == [20001]


def test_service_named_like_app_replaces_implicit_host() -> None:
    text = SERVICE.replace("name: web", "name: myapp")
    reg = build_registry(_load(text + "---\n" + DEPLOYMENT), [_replica({"app": "myapp"}, 1)])
    assert reg.services["myapp.default.svc.cluster.local"].origin == "Service"
    assert "myapp.default.svc.cluster.local:9000" not in reg.endpoints


def test_unhealthy_replica_is_listed_as_unhealthy() -> None:
    eps = endpoints_for(ResourceSet(), [_replica({"app": "myapp"}, 1, healthy=False)])
    assert [e.healthy for e in eps[KEY]] == [False]


WORKLOAD_ENTRY = """
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-1}
spec:
  address: 127.0.0.9
  ports: {http: 7000}
  labels: {app: myapp, version: v2}
  serviceAccount: vm
"""


def test_workload_entry_with_app_label_backs_the_host() -> None:
    eps = endpoints_for(_load(WORKLOAD_ENTRY), [])
    (e,) = eps[KEY]
    assert (e.address, e.port, e.labels, e.service_account) == (
        "127.0.0.9", 7000, {"app": "myapp", "version": "v2"}, "vm")


def test_workload_entry_selected_by_service_uses_port_name() -> None:
    eps = endpoints_for(_load(SERVICE + "---\n" + WORKLOAD_ENTRY), [])
    assert [(e.address, e.port) for e in eps["web.default.svc.cluster.local:80"]] == [
        ("127.0.0.9", 7000)]


def test_registered_vm_replaces_its_workload_entry() -> None:
    vm = _replica({"app": "myapp", "version": "v2"}, 30000, workload="vm-1",
                  kind="WorkloadEntry")
    eps = endpoints_for(_load(WORKLOAD_ENTRY), [vm])
    assert [e.port for e in eps[KEY]] == [30000]


SERVICE_ENTRY = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext}
spec:
  hosts: [api.external.test]
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 8081}]
  resolution: STATIC
  endpoints:
  - address: 127.0.0.5
  - address: 127.0.0.6
    ports: {http: 9999}
"""


def test_service_entry_static_endpoints() -> None:
    reg = build_registry(_load(SERVICE_ENTRY), [])
    assert [(e.address, e.port) for e in reg.endpoints["api.external.test:80"]] == [
        ("127.0.0.5", 8081), ("127.0.0.6", 9999)]
    assert not reg.services["api.external.test"].sidecars


def test_service_entry_dns_without_endpoints_uses_the_host() -> None:
    text = SERVICE_ENTRY.split("  endpoints:")[0].replace("STATIC", "DNS")
    eps = endpoints_for(_load(text), [])
    assert [(e.address, e.port) for e in eps["api.external.test:80"]] == [
        ("api.external.test", 8081)]


def test_service_entry_workload_selector_picks_replicas() -> None:
    selector = "  workloadSelector:\n    labels: {app: myapp}\n"
    text = SERVICE_ENTRY.split("  endpoints:")[0] + selector
    eps = endpoints_for(_load(text), [_replica({"app": "myapp"}, 4242)])
    assert [e.port for e in eps["api.external.test:80"]] == [4242]


MULTI = """
apiVersion: v1
kind: Service
metadata: {name: multi}
spec:
  selector: {app: multi}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: admin, port: 9000, targetPort: 9090}
"""


def test_multi_port_replica_maps_target_ports_to_its_listeners() -> None:
    r = Replica(workload="multi", kind="Deployment", namespace="default",
                labels={"app": "multi"}, service_account="sa", address="127.0.0.1",
                port=41000, app_port=8080, ports={9090: 41001})
    eps = endpoints_for(_load(MULTI), [r])
    assert [e.port for e in eps["multi.default.svc.cluster.local:80"]] == [41000]
    assert [e.port for e in eps["multi.default.svc.cluster.local:9000"]] == [41001]
