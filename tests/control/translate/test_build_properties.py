"""Property: build() never raises on a validated resource set and is deterministic
(the same input in any replica order gives the same version)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tollway.config.load import load_text
from tollway.control import translate
from tollway.control.registry import Replica
from tollway.control.world import World
from tollway.snapshot import codec, types

HOSTS = ["myapp", "api", "myapp.default", "api.other.svc.cluster.local", "x.example.com"]
GW_HOSTS = ["*", "*.example.com", "x.example.com"]
SUBSETS = ["", "v1", "v2", "v3"]
NAMESPACES = ["default", "other"]

string_match = st.sampled_from(["exact", "prefix", "regex"]).flatmap(
    lambda k: st.fixed_dictionaries({k: st.sampled_from(["/", "/a", "v[0-9]+", "x"])}))
match_block = st.fixed_dictionaries({}, optional={
    "uri": string_match,
    "headers": st.dictionaries(st.sampled_from(["x-a", "user-id"]), string_match, max_size=2),
    "withoutHeaders": st.dictionaries(st.sampled_from(["x-b"]), string_match, max_size=1),
    "queryParams": st.dictionaries(st.sampled_from(["q"]), string_match, max_size=1),
    "method": st.fixed_dictionaries({"exact": st.sampled_from(["GET", "POST"])}),
    "port": st.sampled_from([80, 8080, 9090]),
    "ignoreUriCase": st.booleans(),
    "sourceLabels": st.dictionaries(st.sampled_from(["app"]), st.sampled_from(["a", "b"]),
                                    max_size=1),
})
destination = st.fixed_dictionaries({"host": st.sampled_from(HOSTS)}, optional={
    "subset": st.sampled_from(SUBSETS[1:]),
    "port": st.fixed_dictionaries({"number": st.sampled_from([80, 8080])}),
})
route_dest = st.fixed_dictionaries({"destination": destination},
                                   optional={"weight": st.integers(0, 100)})
http_route = st.fixed_dictionaries({"route": st.lists(route_dest, min_size=1, max_size=3)},
                                   optional={
    "match": st.lists(match_block, min_size=1, max_size=2),
    "timeout": st.sampled_from(["1s", "250ms", "5s"]),
    "retries": st.one_of(
        st.just({"attempts": 0}),
        st.fixed_dictionaries({"attempts": st.integers(1, 5)}, optional={
            "perTryTimeout": st.just("1s"),
            "retryOn": st.sampled_from(["5xx", "gateway-error,503", "connect-failure"])})),
    "mirror": destination,
    "mirrorPercentage": st.fixed_dictionaries({"value": st.floats(0, 100)}),
    "fault": st.fixed_dictionaries({"abort": st.fixed_dictionaries(
        {"httpStatus": st.sampled_from([500, 503]),
         "percentage": st.fixed_dictionaries({"value": st.floats(0, 100)})})}),
})
traffic_policy = st.fixed_dictionaries({}, optional={
    "loadBalancer": st.fixed_dictionaries({"simple": st.sampled_from(
        ["ROUND_ROBIN", "LEAST_REQUEST", "RANDOM"])}),
    "connectionPool": st.fixed_dictionaries({"tcp": st.fixed_dictionaries(
        {"maxConnections": st.integers(0, 100)})}),
    "outlierDetection": st.fixed_dictionaries({}, optional={
        "consecutive5xxErrors": st.integers(0, 10),
        "consecutiveGatewayErrors": st.integers(0, 10),
        "interval": st.just("10s")}),
})


def _doc(kind: str, api: str, name: str, ns: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": ns},
            "spec": spec}


@st.composite
def manifests(draw: st.DrawFn) -> str:
    docs = []
    for i in range(draw(st.integers(0, 3))):
        spec: dict[str, Any] = {"hosts": draw(st.lists(st.sampled_from(HOSTS), min_size=1,
                                                       max_size=2, unique=True)),
                                "http": draw(st.lists(http_route, min_size=1, max_size=3))}
        if draw(st.booleans()):
            spec["gateways"] = draw(st.sampled_from([["gw"], ["mesh", "default/gw"]]))
            spec["hosts"] = [draw(st.sampled_from(["x.example.com", "y.example.com"]))]
        docs.append(_doc("VirtualService", "networking.istio.io/v1beta1", f"vs{i}",
                         draw(st.sampled_from(NAMESPACES)), spec))
    for i in range(draw(st.integers(0, 2))):
        subsets = [{"name": s, "labels": {"version": s}, **(
            {"trafficPolicy": draw(traffic_policy)} if draw(st.booleans()) else {})}
            for s in draw(st.lists(st.sampled_from(SUBSETS[1:]), max_size=3, unique=True))]
        dr: dict[str, Any] = {"host": draw(st.sampled_from(HOSTS)), "subsets": subsets}
        if draw(st.booleans()):
            dr["trafficPolicy"] = draw(traffic_policy)
        docs.append(_doc("DestinationRule", "networking.istio.io/v1beta1", f"dr{i}",
                         draw(st.sampled_from(NAMESPACES)), dr))
    if draw(st.booleans()):
        server = {"port": {"number": draw(st.sampled_from([80, 8080])), "name": "http",
                           "protocol": "HTTP"},
                  "hosts": draw(st.lists(st.sampled_from(GW_HOSTS), min_size=1, max_size=2,
                                         unique=True))}
        docs.append(_doc("Gateway", "networking.istio.io/v1beta1", "gw", "default",
                         {"selector": {"istio": "ingress"}, "servers": [server]}))
    if draw(st.booleans()):
        docs.append(_doc("Gateway", "networking.istio.io/v1beta1", "tls", "default", {
            "servers": [{"port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                         "hosts": ["*.example.com"],
                         "tls": {"mode": draw(st.sampled_from(["SIMPLE", "MUTUAL"])),
                                 "credentialName": "certs"}}]}))
    if draw(st.booleans()):
        docs.append({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                     "metadata": {"name": "certs", "namespace": "default"},
                     "data": {"tls.crt": "Qw==", "tls.key": "Sw=="}})
    for i in range(draw(st.integers(0, 2))):
        docs.append(_doc("WorkloadEntry", "networking.istio.io/v1beta1", f"we{i}",
                         draw(st.sampled_from(NAMESPACES)),
                         {"address": "127.0.0.1", "ports": {"http": 9000 + i},
                          "labels": {"app": draw(st.sampled_from(["myapp", "api"])),
                                     "version": draw(st.sampled_from(SUBSETS[1:]))}}))
    if draw(st.booleans()):
        docs.append(_doc("ServiceEntry", "networking.istio.io/v1beta1", "se", "default",
                         {"hosts": ["x.example.com"], "resolution": "STATIC",
                          "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
                          "endpoints": [{"address": "127.0.0.1", "labels": {"version": "v1"}}]}))
    return "\n---\n".join(json.dumps(d) for d in docs)


REPLICAS = [
    Replica("myapp-v1", "Deployment", "default", {"app": "myapp", "version": "v1"}, "default",
            "127.0.0.1", 20001, 30001),
    Replica("myapp-v2", "Deployment", "default", {"app": "myapp", "version": "v2"}, "default",
            "127.0.0.1", 20003, 30003),
    Replica("api-v2", "Deployment", "other", {"app": "api", "version": "v2"}, "default",
            "127.0.0.1", 20002, 30002, healthy=False),
]
NODES = [
    types.Node(name="a", workload="myapp-v1", labels={"app": "a", "version": "v1"}),
    types.Node(name="gw", kind="gateway", labels={"istio": "ingress"}),
]
PORTS = translate.ProxyPorts(inbound=[(8080, "127.0.0.1", 1, "127.0.0.1", 2)],
                             outbound=("127.0.0.1", 3))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(manifests())
def test_build_never_raises_and_is_deterministic(text: str) -> None:
    resources = load_text(text, "gen.yaml").resources
    world = World.build(resources, REPLICAS)
    for node in NODES:
        config = translate.build(world, node, PORTS)
        again = translate.build(World.build(resources, REPLICAS[::-1]), node, PORTS)
        assert config.version == again.version
        assert codec.decode(codec.encode(config)) == config
        tables = {t.name for t in config.route_tables}
        assert all(li.route_table in tables for li in config.listeners)
    standalone = translate.build_standalone(resources, listen_port=5)
    assert standalone.version == translate.build_standalone(resources, listen_port=5).version
