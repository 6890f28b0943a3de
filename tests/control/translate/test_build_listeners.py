"""build(): sidecar inbound/outbound listeners, only the clusters needed, versions, standalone."""

from __future__ import annotations

from translate_kit import cluster, fqdn, load, replica, split, versions, vhost

from tollway.control import translate
from tollway.control.world import World
from tollway.snapshot import types

MYAPP = fqdn("myapp")
NODE = types.Node(name="myapp-v1-0", workload="myapp-v1", labels={"app": "myapp",
                                                                  "version": "v1"})


def _sidecar(resources_parts: tuple[str, ...] = ("01", "02"), **kw: object) -> types.ProxyConfig:
    reps = [replica("myapp-v1", {"app": "myapp", "version": "v1"}, port=30001),
            replica("myapp-v2", {"app": "myapp", "version": "v2"}, port=30002),
            replica("other", {"app": "other"}, port=30003)]
    world = World.build(load(*resources_parts), reps)
    ports = translate.ProxyPorts(inbound=[(8080, "127.0.0.1", 41000, "127.0.0.1", 42000)],
                                 outbound=("127.0.0.1", 41001))
    return translate.build(world, NODE, ports, auto_mtls=False)


def test_sidecar_inbound_routes_everything_to_local_app() -> None:
    config = _sidecar()
    inbound = next(li for li in config.listeners if li.kind == "inbound")
    assert (inbound.port, inbound.app_port, inbound.service_port) == (41000, 42000, 8080)
    (table,) = [t for t in config.route_tables if t.name == inbound.route_table]
    (v,) = table.virtual_hosts
    assert v.domains == ("*",)
    assert split(v.routes[0]) == {"inbound|8080||": 100}
    local = cluster(config, "inbound|8080||")
    assert [(e.address, e.port) for e in local.endpoints] == [("127.0.0.1", 42000)]
    assert local.service == MYAPP


def test_sidecar_outbound_has_every_host_and_only_referenced_clusters() -> None:
    config = _sidecar()
    outbound = next(li for li in config.listeners if li.kind == "outbound")
    assert (outbound.address, outbound.port) == ("127.0.0.1", 41001)
    assert vhost(config, "other:8080").routes[0].clusters[0].cluster == \
        f"outbound|8080||{fqdn('other')}"
    names = {c.name for c in config.clusters}
    assert names == {"inbound|8080||", f"outbound|8080|v1|{MYAPP}", f"outbound|8080|v2|{MYAPP}",
                     f"outbound|8080||{fqdn('other')}"}


def test_build_is_deterministic_and_version_tracks_content() -> None:
    a, b = _sidecar(), _sidecar()
    assert a.version == b.version and a == b
    c = _sidecar(("01", "02", "05"))
    assert c.version != a.version


def test_auto_mtls_towards_sidecar_endpoints() -> None:
    world = World.build(load("01"), versions("myapp", {"v1": 1}))
    config = translate.build(world, NODE, translate.ProxyPorts(outbound=("127.0.0.1", 1)))
    c = cluster(config, f"outbound|8080||{MYAPP}")
    assert c.tls.mode == "ISTIO_MUTUAL"
    assert c.tls.expected_identities == ("spiffe://cluster.local/ns/default/sa/default",)


WORKLOAD_ENTRIES = """
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: myapp-v1}
spec:
  address: 127.0.0.1
  ports: {http: 31001}
  labels: {app: myapp, version: v1}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: myapp-v2}
spec:
  address: 127.0.0.1
  ports: {http: 31002}
  labels: {app: myapp, version: v2}
"""


def test_standalone_from_manifests_and_workload_entries() -> None:
    config = translate.build_standalone(load("02", WORKLOAD_ENTRIES), listen_port=15999)
    (listener,) = config.listeners
    assert (listener.kind, listener.port) == ("outbound", 15999)
    (route,) = vhost(config, "myapp").routes
    assert split(route) == {f"outbound|8080|v1|{MYAPP}": 90, f"outbound|8080|v2|{MYAPP}": 10}
    v2 = cluster(config, f"outbound|8080|v2|{MYAPP}")
    assert [(e.address, e.port) for e in v2.endpoints] == [("127.0.0.1", 31002)]
    assert v2.tls.mode == "DISABLE"


def test_standalone_short_names_across_namespaces() -> None:
    entry = WORKLOAD_ENTRIES.split("---")[0].replace("myapp", "payment-service").replace(
        "{name: payment-service-v1}", "{name: p1, namespace: payments}")
    config = translate.build_standalone(load("11", entry), listen_port=1)
    host = fqdn("payment-service", "payments")
    (route,) = vhost(config, "payment-service:8080").routes
    assert f"outbound|8080|v1|{host}" in split(route)
    assert cluster(config, f"outbound|8080|v1|{host}").endpoints[0].port == 31001


def test_standalone_gateway_listener_with_file_credentials() -> None:
    gateway = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: ingress}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem}
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: front}
spec:
  hosts: [myapp.example.com]
  gateways: [gw]
  http:
  - route:
    - destination: {host: myapp}
"""
    files = {"/c.pem": "CERT", "/k.pem": "KEY"}
    config = translate.build_standalone(load(gateway, WORKLOAD_ENTRIES), listen_port=1,
                                        gateway_offset=10000, read_file=files.get)
    http, https = sorted((li for li in config.listeners if li.kind == "gateway"),
                         key=lambda li: li.port)
    assert (http.port, https.port) == (10080, 10443)
    assert https.tls is not None and https.tls.credential == types.TlsCredential(
        cert_chain="CERT", private_key="KEY")
    assert http.tls is None
    v = vhost(config, "myapp.example.com:10443")
    assert split(v.routes[0]) == {f"outbound|8080||{MYAPP}": 100}


def test_unhealthy_endpoints_left_out_of_clusters() -> None:
    reps = [replica("myapp-v1", {"app": "myapp", "version": "v1"}, port=30011),
            replica("myapp-v1", {"app": "myapp", "version": "v1"}, port=30012, healthy=False)]
    world = World.build(load("01"), reps)
    config = translate.build(world, NODE, translate.ProxyPorts(outbound=("127.0.0.1", 1)),
                             auto_mtls=False)
    assert [e.port for e in cluster(config, f"outbound|8080||{MYAPP}").endpoints] == [30011]


SELECTIVE_DR = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: only-testers}
spec:
  host: myapp
  workloadSelector: {matchLabels: {app: tester}}
  trafficPolicy: {loadBalancer: {simple: RANDOM}}
"""


def test_destination_rule_workload_selector_applies_to_selected_clients_only() -> None:
    world = World.build(load("01", SELECTIVE_DR), versions("myapp", {"v1": 1}))
    ports = translate.ProxyPorts(outbound=("127.0.0.1", 1))
    tester = types.Node(name="t", labels={"app": "tester"})
    other = types.Node(name="o", labels={"app": "other"})
    name = f"outbound|8080||{MYAPP}"
    assert cluster(translate.build(world, tester, ports), name).load_balancer.simple == "RANDOM"
    assert cluster(translate.build(world, other, ports), name).load_balancer.simple == \
        "LEAST_REQUEST"
