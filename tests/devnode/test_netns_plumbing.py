"""Real network namespaces as root: two pods on a test bridge reach each other, an iptables
rule installed inside one pod's netns affects that pod only, and teardown/cleanup leave nothing."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tollway.devnode import podnet, runtime
from tollway.plumbing import netns

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2"),
]


def _links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout


def _in_ns(ns: str, code: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


CONNECT = """
import socket, sys
try:
    socket.create_connection(('{ip}', {port}), timeout=3).close()
    print('ok')
except OSError as e:
    print('fail', e)
"""


@pytest.fixture
def net(tmp_path: Path):
    tag = f"{random.randrange(16**4):04x}"
    bridge = f"twt{tag}"
    cidr = f"10.253.{random.randrange(1, 250)}.0/24"
    pn = podnet.PodNet(tmp_path, bridge, cidr, netns_prefix="twx-", veth_prefix="twy")
    loop = asyncio.new_event_loop()
    loop.run_until_complete(pn.ensure_bridge())
    try:
        yield pn, loop, tag
    finally:
        loop.run_until_complete(podnet.cleanup(tmp_path, bridge=bridge))
        loop.close()
    assert bridge not in _links()


@pytest.mark.skipif(shutil.which("iptables") is None, reason="needs iptables on PATH")
def test_two_pods_reach_each_other_and_iptables_is_per_pod(net, tmp_path: Path) -> None:
    pn, loop, tag = net
    uid_a, uid_b = f"aaaa{tag}-1", f"bbbb{tag}-2"
    ip_a, ns_a = loop.run_until_complete(pn.attach(uid_a))
    ip_b, ns_b = loop.run_until_complete(pn.attach(uid_b))
    assert ip_a != ip_b and pn.ipam.gateway not in (ip_a, ip_b)
    assert (netns.NETNS_DIR / ns_a).exists() and (netns.NETNS_DIR / ns_b).exists()

    # A server in pod B, started the way containers are (own mount + uts namespace).
    (tmp_path / "resolv.conf").write_text("nameserver 10.96.0.10\nsearch ns1.svc.cluster.local\n")
    (tmp_path / "hosts").write_text(f"127.0.0.1 localhost\n{ip_b} pod-b\n")
    sandbox = runtime.Sandbox(ns_b, tmp_path / "resolv.conf", tmp_path / "hosts", "pod-b")
    server = (
        "import socket,socket as s\n"
        "srv=socket.socket(); srv.setsockopt(s.SOL_SOCKET,s.SO_REUSEADDR,1)\n"
        "srv.bind(('0.0.0.0',8080)); srv.listen()\n"
        "print(open('/etc/resolv.conf').read().split()[1], socket.gethostname(), flush=True)\n"
        "while True: srv.accept()[0].close()\n"
    )
    proc = loop.run_until_complete(
        runtime.spawn(sandbox, [sys.executable, "-c", server], {}, tmp_path / "b.log", None)
    )
    try:
        for _ in range(100):
            if (tmp_path / "b.log").read_text().strip():
                break
            loop.run_until_complete(asyncio.sleep(0.1))
        # The process saw the pod's resolv.conf and hostname, not the host's.
        assert (tmp_path / "b.log").read_text().split()[:2] == ["10.96.0.10", "pod-b"]
        assert _in_ns(ns_a, CONNECT.format(ip=ip_b, port=8080)).stdout.strip() == "ok"
        # The host reaches pods through the bridge too.
        assert (
            "ok"
            in subprocess.run(
                [sys.executable, "-c", CONNECT.format(ip=ip_b, port=8080)],
                capture_output=True,
                text=True,
            ).stdout
        )

        # An init container's rule in pod A's netns drops A's traffic to B, and nobody else's.
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                ns_a,
                "iptables",
                "-A",
                "OUTPUT",
                "-d",
                ip_b,
                "-p",
                "tcp",
                "--dport",
                "8080",
                "-j",
                "REJECT",
            ],
            check=True,
        )
        assert _in_ns(ns_a, CONNECT.format(ip=ip_b, port=8080)).stdout.startswith("fail")
        assert (
            "ok"
            in subprocess.run(
                [sys.executable, "-c", CONNECT.format(ip=ip_b, port=8080)],
                capture_output=True,
                text=True,
            ).stdout
        )
        host_rules = subprocess.run(["iptables", "-S", "OUTPUT"], capture_output=True, text=True)
        assert ip_b not in host_rules.stdout
    finally:
        loop.run_until_complete(runtime.stop(proc, 2))

    loop.run_until_complete(pn.detach(uid_a))
    assert not (netns.NETNS_DIR / ns_a).exists()
    assert f"twy{uid_a[:8]}" not in _links()
    assert uid_a not in pn.ipam.leases


def test_cleanup_kills_orphans_of_a_crashed_agent(net, tmp_path: Path) -> None:
    pn, loop, tag = net
    uid = f"cccc{tag}-3"
    _, ns = loop.run_until_complete(pn.attach(uid))
    # An orphan: started in the pod netns, not tracked by anyone but the ledger's netns name.
    orphan = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "300"])
    try:
        for _ in range(50):
            if loop.run_until_complete(netns.netns_pids(ns)):
                break
            loop.run_until_complete(asyncio.sleep(0.1))
        # A fresh process (the next `down`) only has the state dir to go on.
        removed = loop.run_until_complete(podnet.cleanup(tmp_path))
        assert any(ns in r for r in removed)
        assert orphan.wait(10) == -9
        assert not (netns.NETNS_DIR / ns).exists()
        assert podnet.read_ledger(tmp_path)["pods"] == {}
    finally:
        if orphan.poll() is None:
            orphan.kill()


def test_the_bridge_keeps_its_mac_as_pods_come_and_go(net) -> None:  # type: ignore[no-untyped-def]
    """A bridge takes its lowest port's MAC unless one is set: a pod leaving would then cut
    every other pod off the gateway (DNS, Services) until their neighbour entries expire."""
    pn, _loop, tag = net

    def mac() -> str:
        out = subprocess.run(["ip", "-o", "link", "show", "dev", pn.bridge],
                             capture_output=True, text=True).stdout
        return out.split("link/ether ")[1].split()[0]

    fixed = netns.bridge_mac(pn.bridge)
    assert int(fixed.split(":")[0], 16) & 0b11 == 0b10  # locally administered, unicast
    assert mac() == fixed
    veths = [f"twz{tag}{i}" for i in range(4)]
    try:
        for v in veths:
            subprocess.run(["ip", "link", "add", v, "type", "veth", "peer", "name", f"{v}p"],
                           check=True)
            subprocess.run(["ip", "link", "set", v, "master", pn.bridge, "up"], check=True)
            assert mac() == fixed
        for v in veths:
            subprocess.run(["ip", "link", "del", v], check=True)
            assert mac() == fixed
    finally:
        for v in veths:
            subprocess.run(["ip", "link", "del", v], capture_output=True)
