"""A captured request to a Service's ClusterIP routes as that Service (Istio lists the VIP
among the virtual host's domains): `Host: VIP:port`, or the original destination of a
Host-less request, picks the service, its VirtualService and its port."""

from __future__ import annotations

from translate_kit import client_config, fqdn, load, split, versions, vhost

SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: payments, namespace: default}
spec:
  clusterIP: 10.96.0.50
  clusterIPs: [10.96.0.50]
  selector: {app: payments}
  ports: [{name: http, port: 8080, targetPort: 9000}, {name: http-admin, port: 9090}]
"""
SPLIT = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: payments, namespace: default}
spec:
  hosts: [payments]
  http:
  - route:
    - {destination: {host: payments, subset: v1}, weight: 90}
    - {destination: {host: payments, subset: v2}, weight: 10}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: payments, namespace: default}
spec:
  host: payments
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""


def test_the_cluster_ip_and_port_route_as_the_service() -> None:
    config = client_config(load(SERVICE, SPLIT), versions("payments", {"v1": 1, "v2": 1}))
    by_name = vhost(config, "payments.default.svc.cluster.local:8080")
    assert vhost(config, "10.96.0.50:8080") is by_name
    assert vhost(config, "10.96.0.50") is by_name  # 8080 is the default (first) port
    assert split(vhost(config, "10.96.0.50:8080").routes[0]) == {
        f"outbound|8080|v1|{fqdn('payments')}": 90, f"outbound|8080|v2|{fqdn('payments')}": 10}
    admin = vhost(config, "10.96.0.50:9090")
    assert admin is not by_name and admin.name == f"{fqdn('payments')}:9090"


def test_a_headless_service_has_no_address_domain() -> None:
    headless = SERVICE.replace("clusterIP: 10.96.0.50", "clusterIP: None").replace(
        "clusterIPs: [10.96.0.50]", "clusterIPs: [None]")
    config = client_config(load(headless), versions("payments", {"v1": 1}))
    domains = {d for t in config.route_tables for v in t.virtual_hosts for d in v.domains}
    assert not any(d.startswith("10.96.0.50") for d in domains)
    assert "None:8080" not in domains
