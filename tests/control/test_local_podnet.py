"""--intercept's plan for each replica: names, addresses, hosts file, environment [pure]."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollway.control.local import plan, podnet


def test_names_fit_linux_limits_and_map_back_to_their_slot() -> None:
    for slot in (0, 7, 254):
        for index in (1, 99999):
            for name in (podnet.netns_name(slot, index), podnet.veth_name(slot, index),
                         podnet.bridge(slot)):
                assert len(name) <= 15  # IFNAMSIZ - 1
                assert podnet.slot_of(name) == slot
    assert podnet.slot_of("twp-abc") is None  # the dev cluster's pods are not ours
    assert podnet.slot_of("twtdev") is None
    assert podnet.slot_of("twu999-1") is None


def test_each_slot_has_its_own_subnet_apart_from_the_service_address() -> None:
    nets = [podnet.subnet(s) for s in range(podnet.SLOTS)]
    assert len(set(nets)) == podnet.SLOTS
    assert all(podnet.SERVICE_VIP not in n for n in nets)
    assert all(n.subnet_of(podnet.POD_SUPERNET) for n in nets)
    assert podnet.gateway(3) == ipaddress.IPv4Address("10.250.3.1")
    assert podnet.free_slot([0, 1, 3]) == 2
    with pytest.raises(podnet.PodNetError, match="stop one"):
        podnet.free_slot(range(podnet.SLOTS))


def test_addresses_are_stable_per_name_and_reused_after_release() -> None:
    a = podnet.Addresses(5)
    one, two = a.assign("x-1.default"), a.assign("x-2.default")
    assert str(one.ip) == "10.250.5.2" and str(two.ip) == "10.250.5.3"
    assert a.assign("x-1.default") == one
    a.release("x-1.default")
    three = a.assign("x-3.default")
    assert three.ip == one.ip and three.netns != one.netns  # a fresh netns, never reused


@given(st.lists(st.text("abc", min_size=1, max_size=3), min_size=1, max_size=300))
def test_no_two_live_replicas_share_an_address_or_netns(names: list[str]) -> None:
    a = podnet.Addresses(0)
    for i, name in enumerate(names):
        if i % 3 == 2:
            a.release(name)
        else:
            a.assign(name)
    live = a.all()
    assert len({s.ip for s in live}) == len(live) == len({s.netns for s in live})
    assert all(s.ip in podnet.subnet(0) and s.ip != podnet.gateway(0) for s in live)


def test_hosts_file_names_every_form_and_the_short_name_only_in_its_namespace() -> None:
    services = [("myapp", "default", "myapp.default.svc.cluster.local"),
                ("payments", "pay", "payments.pay.svc.cluster.local"),
                ("", "default", "api.example.com"),  # a ServiceEntry host
                ("", "default", "*.wild.example.com")]
    names = podnet.host_names(services, "default")
    assert names == ["api.example.com", "myapp.default.svc.cluster.local", "myapp.default.svc",
                     "myapp.default", "myapp", "payments.pay.svc.cluster.local",
                     "payments.pay.svc", "payments.pay"]
    assert "payments" in podnet.host_names(services, "pay")
    text = podnet.hosts_file(names, hostname="caller-1", pod_ip="10.250.0.4")
    assert "10.250.255.1\tmyapp\n" in text
    assert text.startswith("127.0.0.1\tlocalhost\n")
    assert "10.250.0.4\tcaller-1\n" in text
    assert "search pay.svc.cluster.local" in podnet.resolv_conf("pay")


def _replica(make_resource: Any, env: list[dict[str, str]]) -> plan.ReplicaPlan:
    r = make_resource("Deployment", "app", spec={
        "template": {"metadata": {"labels": {"app": "a"}},
                     "spec": {"containers": [{"name": "a", "command": ["run"], "env": env}]}}})
    return plan.plan_workload(r)[0][0]


def test_intercepted_app_gets_no_proxy_setting_not_even_the_shells(make_resource: Any) -> None:
    replica = _replica(make_resource, [{"name": "HTTPS_PROXY", "value": "http://mine:3128"}])
    base = {"PATH": "/usr/bin", "HTTP_PROXY": "http://corp:3128", "no_proxy": "x",
            "ALL_PROXY": "socks5://corp"}
    env = plan.process_env(replica, base=base, app_port=8080, outbound_port=15001,
                           exe_dir="/venv/bin", intercept=True)
    assert {k for k in env if "proxy" in k.lower()} == {"HTTPS_PROXY"}  # the manifest's own
    assert env["PORT"] == "8080" and env["PATH"] == "/venv/bin:/usr/bin"
    plain = plan.process_env(replica, base=base, app_port=8080, outbound_port=2000,
                             exe_dir="/venv/bin")
    assert plain["HTTP_PROXY"] == plain["http_proxy"] == "http://127.0.0.1:2000"
    assert "HTTPS_PROXY" not in plain and plain["ALL_PROXY"] == "socks5://corp"  # as before
