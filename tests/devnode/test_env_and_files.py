"""Container env (fieldRef, configMap/secret refs, Service links, $(VAR)), resolv.conf, hosts,
IPAM."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lightkube.models.core_v1 import Container, PodSpec

from tollway.devnode.envvars import (
    EnvError,
    PodFacts,
    ServiceFacts,
    ServicePort,
    container_argv,
    container_env,
    expand,
)
from tollway.devnode.ipam import Ipam, IpamError, netns_name, veth_name
from tollway.devnode.podfiles import DnsError, hosts_file, resolv_conf

POD = PodFacts(
    name="web-1",
    namespace="shop",
    uid="u-1",
    node_name="tollway-dev",
    service_account="default",
    pod_ip="10.244.0.9",
    host_ip="10.244.0.1",
    labels={"app": "web"},
    annotations={},
)


def ctr(**kw: object) -> Container:
    return Container.from_dict({"name": "app", "image": "web:1", **kw})  # type: ignore[return-value]


def test_field_refs_and_expansion() -> None:
    c = ctr(
        command=["sh", "-c", "echo $(GREETING) $$(not)"],
        env=[
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "GREETING", "value": "hi from $(POD_IP)"},
        ],
    )
    env = container_env(c, POD)
    assert env["POD_IP"] == "10.244.0.9" and env["NS"] == "shop" and env["APP"] == "web"
    assert env["GREETING"] == "hi from 10.244.0.9"
    assert container_argv(c, env) == ["sh", "-c", "echo hi from 10.244.0.9 $(not)"]


def test_config_map_and_secret_refs() -> None:
    c = ctr(
        envFrom=[{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
        env=[
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
            {
                "name": "OPT",
                "valueFrom": {"configMapKeyRef": {"name": "x", "key": "k", "optional": True}},
            },
        ],
    )
    env = container_env(c, POD, config_maps={"cfg": {"MODE": "fast"}}, secrets={"s": {"pw": "p4"}})
    assert env["CFG_MODE"] == "fast" and env["PW"] == "p4" and "OPT" not in env


def test_missing_secret_is_one_sentence() -> None:
    c = ctr(env=[{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}}])
    with pytest.raises(EnvError, match=r"container 'app' env 'PW': secret 's' key 'pw' not found"):
        container_env(c, POD)


def test_service_link_variables() -> None:
    svc = ServiceFacts("payment-service", "10.96.3.4", (ServicePort("http", 80, "TCP"),))
    env = container_env(ctr(), POD, services=[svc])
    assert env["PAYMENT_SERVICE_SERVICE_HOST"] == "10.96.3.4"
    assert env["PAYMENT_SERVICE_SERVICE_PORT"] == "80"
    assert env["PAYMENT_SERVICE_SERVICE_PORT_HTTP"] == "80"
    assert env["PAYMENT_SERVICE_PORT"] == "tcp://10.96.3.4:80"
    assert env["PAYMENT_SERVICE_PORT_80_TCP_ADDR"] == "10.96.3.4"
    headless = ServiceFacts("h", "None", (ServicePort("", 80, "TCP"),))
    assert not any(k.startswith("H_") for k in container_env(ctr(), POD, services=[headless]))


def test_no_command_says_images_are_not_pulled() -> None:
    with pytest.raises(EnvError, match=r"does not pull image 'web:1'; set spec.containers"):
        container_argv(ctr(), {})


def test_unsupported_field_path() -> None:
    c = ctr(env=[{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.priority"}}}])
    with pytest.raises(EnvError, match=r"fieldPath 'spec.priority' is not supported"):
        container_env(c, POD)


@given(st.text(alphabet="abc$()XY_", max_size=30), st.text(alphabet="xyz", max_size=5))
def test_expand_is_identity_without_references_and_substitutes_known(text: str, v: str) -> None:
    if "$" not in text:
        assert expand(text, {"X": v}) == text
    assert expand(f"{text} $(X)", {"X": v}).endswith(" " + v)
    assert expand("$$(X)", {"X": v}) == "$(X)"


def spec(**kw: object) -> PodSpec:
    return PodSpec.from_dict({"containers": [{"name": "a"}], **kw})  # type: ignore[return-value]


def test_cluster_first_resolv_conf() -> None:
    text = resolv_conf(
        spec(),
        namespace="payments",
        domain="cluster.local",
        cluster_dns="10.96.0.10",
        host_resolv="nameserver 1.1.1.1\n",
    )
    assert "nameserver 10.96.0.10\n" in text
    assert "search payments.svc.cluster.local svc.cluster.local cluster.local\n" in text
    assert "options ndots:5\n" in text


def test_default_and_none_policies_and_dns_config() -> None:
    host = "nameserver 192.0.2.53\nsearch corp.example\noptions edns0\n"
    t = resolv_conf(
        spec(dnsPolicy="Default"), namespace="n", domain="d", cluster_dns="c", host_resolv=host
    )
    assert "nameserver 192.0.2.53" in t and "search corp.example" in t
    t = resolv_conf(
        spec(
            dnsPolicy="None",
            dnsConfig={"nameservers": ["192.0.2.1"], "options": [{"name": "ndots", "value": "2"}]},
        ),
        namespace="n",
        domain="d",
        cluster_dns="c",
        host_resolv=host,
    )
    assert "nameserver 192.0.2.1" in t and "options ndots:2" in t and "192.0.2.53" not in t
    with pytest.raises(DnsError, match=r"dnsPolicy None needs spec.dnsConfig.nameservers"):
        resolv_conf(
            spec(dnsPolicy="None"), namespace="n", domain="d", cluster_dns="c", host_resolv=""
        )


def test_hosts_file_has_pod_name_and_aliases() -> None:
    t = hosts_file(
        spec(
            hostname="db-0", subdomain="db", hostAliases=[{"ip": "10.1.2.3", "hostnames": ["a.b"]}]
        ),
        pod_name="db-0",
        pod_ip="10.244.0.4",
        namespace="data",
        domain="cluster.local",
    )
    assert "10.244.0.4\tdb-0.db.data.svc.cluster.local\tdb-0" in t
    assert "10.1.2.3\ta.b" in t and "127.0.0.1\tlocalhost" in t


def test_ipam_skips_gateway_reuses_and_exhausts() -> None:
    ipam = Ipam("10.244.0.0/29")
    assert ipam.gateway == "10.244.0.1"
    ips = [ipam.allocate(f"u{i}") for i in range(5)]
    assert ips == [f"10.244.0.{i}" for i in range(2, 7)]
    assert ipam.allocate("u0") == "10.244.0.2"  # idempotent per pod
    with pytest.raises(IpamError, match="no free address left"):
        ipam.allocate("u9")
    ipam.release("u2")
    assert ipam.allocate("u9") == "10.244.0.4"


def test_ipam_does_not_reuse_a_released_address_at_once() -> None:
    ipam = Ipam("10.244.0.0/24")
    first = ipam.allocate("a")
    ipam.release("a")
    assert ipam.allocate("b") != first  # round-robin, like CNI host-local
    again = Ipam.from_json(ipam.to_json(), "10.244.0.0/24")
    assert again.allocate("c") == "10.244.0.4"  # the position survives a restart


def test_ipam_persistence_and_bad_cidr() -> None:
    ipam = Ipam("10.244.0.0/24")
    ipam.allocate("a")
    again = Ipam.from_json(ipam.to_json(), "10.244.0.0/24")
    assert again.leases == {"a": "10.244.0.2"}
    assert Ipam.from_json(ipam.to_json(), "10.244.1.0/24").leases == {}
    with pytest.raises(IpamError, match=r"node.spec.podCIDR 'nope'"):
        Ipam("nope")


@given(st.lists(st.uuids().map(str), unique=True, max_size=40))
def test_ipam_addresses_unique_and_inside(uids: list[str]) -> None:
    ipam = Ipam("10.244.3.0/24")
    ips = [ipam.allocate(u) for u in uids]
    assert len(set(ips)) == len(ips)
    net = ipaddress.ip_network("10.244.3.0/24")
    assert all(
        ipaddress.ip_address(i) in net and i not in ("10.244.3.0", "10.244.3.1") for i in ips
    )
    assert all(len(netns_name(u)) <= 15 and len(veth_name(u)) <= 15 for u in uids)
