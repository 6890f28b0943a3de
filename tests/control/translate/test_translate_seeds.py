"""Seeds 01-07, 11-13 and 16 translated with fake replicas: the route tables and clusters."""

from __future__ import annotations

import base64

from translate_kit import (
    client_config,
    cluster,
    fqdn,
    load,
    replica,
    split,
    versions,
    vhost,
)

from tollway.control import translate
from tollway.control.world import World
from tollway.snapshot import types

MYAPP = fqdn("myapp")


def test_seed_01_implicit_host_from_app_label() -> None:
    reps = versions("myapp", {"v1": 3, "v2": 1})
    config = client_config(load("01"), reps)
    v = vhost(config, "myapp:8080")
    assert {"myapp", "myapp.default", f"{MYAPP}:8080"} <= set(v.domains)
    (route,) = v.routes
    assert split(route) == {f"outbound|8080||{MYAPP}": 100}
    assert len(cluster(config, f"outbound|8080||{MYAPP}").endpoints) == 4


def test_seed_02_split_90_10_by_version_label() -> None:
    reps = versions("myapp", {"v1": 3, "v2": 1})
    config = client_config(load("01", "02"), reps)
    (route,) = vhost(config, "myapp:8080").routes
    assert split(route) == {f"outbound|8080|v1|{MYAPP}": 90, f"outbound|8080|v2|{MYAPP}": 10}
    v1 = cluster(config, f"outbound|8080|v1|{MYAPP}")
    v2 = cluster(config, f"outbound|8080|v2|{MYAPP}")
    assert {e.port for e in v1.endpoints} == {r.port for r in reps[:3]}
    assert [e.port for e in v2.endpoints] == [reps[3].port]
    assert v1.connection_pool.max_connections == 100
    assert v1.connection_pool.http1_max_pending_requests == 100
    assert v1.connection_pool.http2_max_requests == 1000
    assert v1.load_balancer.simple == "LEAST_REQUEST"
    assert v1.outlier is None


def test_seed_03_then_04_switches_blue_to_green() -> None:
    reps = versions("myapp", {"blue": 3, "green": 3}, key="color")
    blue = client_config(load("03"), reps)
    (route,) = vhost(blue, "myapp:8080").routes
    assert split(route) == {f"outbound|8080|blue|{MYAPP}": 100}
    green = client_config(load("03", "04"), reps)
    (route,) = vhost(green, "myapp:8080").routes
    assert split(route) == {f"outbound|8080|green|{MYAPP}": 100}
    assert {e.labels["color"] for e in cluster(green, f"outbound|8080|green|{MYAPP}").endpoints} \
        == {"green"}
    assert blue.version != green.version


def test_seed_05_mirror_to_v2_at_100_percent() -> None:
    reps = versions("myapp", {"v1": 1, "v2": 1})
    config = client_config(load("01", "02", "05"), reps)
    (route,) = vhost(config, "myapp:8080").routes
    assert split(route) == {f"outbound|8080|v1|{MYAPP}": 100}
    assert route.mirrors == (types.Mirror(cluster=f"outbound|8080|v2|{MYAPP}", host=MYAPP,
                                          percent=100.0),)
    assert cluster(config, f"outbound|8080|v2|{MYAPP}").endpoints


def test_seed_06_regex_header_then_catch_all() -> None:
    config = client_config(load("01", "02", "06"), versions("myapp", {"v1": 1, "v2": 1}))
    first, second = vhost(config, "myapp:8080").routes
    (m,) = first.matches
    assert m.headers == (types.HeaderMatch(name="user-id", match=types.StringMatch(
        kind="regex", value="^(user-[0-9]{3}|user-[0-9]{4})$")),)
    assert split(first) == {f"outbound|8080|v2|{MYAPP}": 100}
    assert second.matches == ()
    assert split(second) == {f"outbound|8080|v1|{MYAPP}": 100}


def test_seed_07_outlier_detection_on_both_subsets() -> None:
    reps = versions("api", {"v1": 2, "v2": 1})
    config = client_config(load("07"), reps)
    (route,) = vhost(config, "api:8080").routes
    assert split(route) == {f"outbound|8080|v1|{fqdn('api')}": 90,
                            f"outbound|8080|v2|{fqdn('api')}": 10}
    for subset in ("v1", "v2"):
        c = cluster(config, f"outbound|8080|{subset}|{fqdn('api')}")
        assert c.outlier == types.OutlierDetection(consecutive_5xx=5, interval=30.0,
                                                   base_ejection_time=30.0)
        assert c.connection_pool.http1_max_pending_requests == 50


def test_seed_11_gateway_errors_keep_5xx_default() -> None:
    reps = versions("payment-service", {"v1": 2, "v2": 2}, namespace="payments")
    config = client_config(load("11"), reps)
    host = fqdn("payment-service", "payments")
    (route,) = vhost(config, "payment-service.payments:8080").routes
    assert split(route) == {f"outbound|8080|v1|{host}": 90, f"outbound|8080|v2|{host}": 10}
    c = cluster(config, f"outbound|8080|v2|{host}")
    assert c.outlier is not None
    assert (c.outlier.consecutive_gateway, c.outlier.consecutive_5xx) == (5, 5)
    assert c.outlier.max_ejection_percent == 50
    assert c.connection_pool.http1_max_pending_requests == 64
    assert c.service_namespace == "payments"


def test_seed_11_short_name_only_in_own_namespace() -> None:
    reps = versions("payment-service", {"v1": 1}, namespace="payments")
    config = client_config(load("11"), reps)
    domains = {d for t in config.route_tables for v in t.virtual_hosts for d in v.domains}
    assert "payment-service:8080" not in domains
    assert "payment-service.payments.svc.cluster.local:8080" in domains


def test_seed_12_retries_and_timeout() -> None:
    config = client_config(load("12"), [replica("order-service", {"app": "order-service"})])
    (route,) = vhost(config, "order-service:8080").routes
    assert route.timeout == 5.0
    assert route.retries == types.Retry(
        attempts=3, per_try_timeout=2.0,
        retry_on=("gateway-error", "connect-failure", "retriable-4xx"),
        retriable_status_codes=())


def test_seed_13_two_header_rules_then_v1() -> None:
    config = client_config(load("13"), versions("frontend", {"v1": 1, "v2": 1}))
    canary, beta, rest = vhost(config, "frontend:8080").routes
    assert canary.matches[0].headers == (
        types.HeaderMatch(name="x-canary-user", match=types.StringMatch(kind="exact",
                                                                        value="true")),)
    assert beta.matches[0].headers[0].name == "x-user-segment"
    assert rest.matches == ()
    # no DestinationRule defines the subsets: Istio answers 503 NC, so no cluster exists
    assert split(rest) == {f"outbound|8080|v1|{fqdn('frontend')}": 100}
    assert config.clusters == ()


SECRET = """
apiVersion: v1
kind: Secret
metadata: {{name: wildcard-tls, namespace: istio-ingress}}
type: kubernetes.io/tls
data:
  tls.crt: {crt}
  tls.key: {key}
"""


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_seed_16_gateway_listener_8443_with_tls_from_secret() -> None:
    secret = SECRET.format(crt=_b64("CERT PEM"), key=_b64("KEY PEM"))
    reps = [replica("payment-service", {"app": "payment-service"}, namespace="payments"),
            replica("order-service", {"app": "order-service"}, namespace="orders")]
    world = World.build(load("16", secret), reps)
    node = types.Node(name="gw", workload="ingress", namespace="istio-ingress",
                      labels={"istio": "ingress"}, kind="gateway")
    config = translate.build(world, node, translate.ProxyPorts(gateway_offset=8000),
                             auto_mtls=False)
    (listener,) = config.listeners
    assert (listener.kind, listener.port) == ("gateway", 8443)
    assert listener.tls is not None and listener.tls.mode == "SIMPLE"
    assert listener.tls.credential == types.TlsCredential(cert_chain="CERT PEM",
                                                          private_key="KEY PEM")
    v = vhost(config, "api.example.com")
    assert {"api.example.com:443", "api.example.com:8443"} <= set(v.domains)
    payments, orders = v.routes
    assert payments.matches[0].uri == types.StringMatch(kind="prefix", value="/api/payments")
    pay = fqdn("payment-service", "payments")
    assert split(payments) == {f"outbound|8080||{pay}": 100}
    assert split(orders) == {f"outbound|8080||{fqdn('order-service', 'orders')}": 100}
    assert [e.port for e in cluster(config, f"outbound|8080||{pay}").endpoints] == [reps[0].port]


def test_seed_16_gateway_without_secret_has_no_listener() -> None:
    world = World.build(load("16"), [])
    node = types.Node(name="gw", namespace="istio-ingress", labels={"istio": "ingress"},
                      kind="gateway")
    config = translate.build(world, node, translate.ProxyPorts(), auto_mtls=False)
    assert config.listeners == ()


def test_seed_16_gateway_not_selected_by_other_labels() -> None:
    secret = SECRET.format(crt=_b64("C"), key=_b64("K"))
    world = World.build(load("16", secret), [])
    node = types.Node(name="gw", namespace="istio-ingress", labels={"istio": "other"},
                      kind="gateway")
    assert translate.build(world, node, translate.ProxyPorts()).listeners == ()
