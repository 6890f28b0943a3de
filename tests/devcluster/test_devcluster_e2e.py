"""`tollway dev cluster up|down` against the real binaries: API, node, kubectl, hygiene."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import DevCluster
from tollway.devcluster import layout as L

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster"), pytest.mark.timeout(1200)]


def host_leftovers(cluster: DevCluster) -> list[str]:
    """Every trace of a cluster on this host: processes, netns, veths, bridge, rules."""
    found = []
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    for line in ps.splitlines():
        args = line.strip().split(None, 1)[-1]
        if str(cluster.state_dir) in line or args.startswith(str(cluster.bin_dir) + "/"):
            found.append(f"process: {line.strip()}")
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [f"netns: {n}" for n in netns.split() if n.startswith(L.POD_NETNS_PREFIX)]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found += [f"link: {ln.split(':')[1].strip()}" for ln in links.splitlines()
              if re.search(rf": ({L.BRIDGE}|twv\w+)[@:]", ln)]
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle", "raw"):
            rules = subprocess.run([tool, "-w", "5", "-t", table, "-S"], capture_output=True,
                                   text=True).stdout
            found += [f"{tool} -t {table}: {r}" for r in rules.splitlines()
                      if "KUBE-" in r or L.RULE_COMMENT in r]
    return found


def test_up_serves_the_api_and_a_ready_node(dev_cluster: DevCluster) -> None:
    out = dev_cluster.up_output
    assert f"KUBECONFIG={dev_cluster.kubeconfig}" in out.splitlines()
    assert any("ready" in ln for ln in out.splitlines())
    env = dev_cluster.cli("env", timeout=60)
    assert env.returncode == 0, env.stderr
    assert f"export KUBECONFIG={dev_cluster.kubeconfig}" in env.stdout.splitlines()
    assert f"export PATH={dev_cluster.bin_dir}:" in env.stdout
    nodes = dev_cluster.kubectl("get", "nodes", "-o", "wide").stdout
    assert re.search(rf"^{L.NODE_NAME}\s+Ready\s", nodes, re.M), nodes
    version = dev_cluster.kubectl("version", "-o", "json").stdout
    assert '"gitVersion": "v1.34.4"' in version  # the ldflags stamp reached the binaries
    podcidr = dev_cluster.kubectl("get", "node", L.NODE_NAME, "-o",
                                  "jsonpath={.spec.podCIDR}").stdout
    assert podcidr == str(L.NODE_POD_CIDR)
    # The `kubernetes` Service points at the bridge IP, so pods can reach the API.
    ep = dev_cluster.kubectl("get", "endpointslices", "-n", "default", "-l",
                             "kubernetes.io/service-name=kubernetes", "-o",
                             "jsonpath={.items[0].endpoints[0].addresses[0]}").stdout
    assert ep == str(L.BRIDGE_IP)
    dns = dev_cluster.kubectl("get", "svc", "-n", "kube-system", "kube-dns", "-o",
                              "jsonpath={.spec.clusterIP}").stdout
    assert dns == str(L.DNS_SERVICE_IP)


def test_dns_answers_for_services_from_the_host(dev_cluster: DevCluster) -> None:
    import socket
    import struct

    # A raw DNS query for kubernetes.default.svc.cluster.local A, sent to CoreDNS on the bridge.
    qname = b"".join(bytes([len(p)]) + p.encode()
                     for p in ["kubernetes", "default", "svc", "cluster", "local"]) + b"\0"
    query = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(query, (str(L.BRIDGE_IP), 53))
        reply = s.recv(512)
    assert reply[:2] == b"\x12\x34" and struct.unpack(">H", reply[6:8])[0] >= 1
    assert socket.inet_aton(str(L.KUBERNETES_SERVICE_IP)) in reply


def test_second_up_on_the_same_state_dir_is_refused(dev_cluster: DevCluster) -> None:
    proc = dev_cluster.cli("up", timeout=120)
    assert proc.returncode == 1
    assert "already running" in proc.stderr and "down" in proc.stderr
    assert "Traceback" not in proc.stderr
    # Another state dir is refused too: the bridge and Service range are host-global.
    other = subprocess.run([sys.executable, "-m", "tollway", "dev", "cluster", "up", "--state-dir",
                            str(dev_cluster.state_dir.parent / "other")], capture_output=True,
                           text=True, timeout=120)
    assert other.returncode == 1
    assert f"another dev cluster (state dir {dev_cluster.state_dir})" in other.stderr
    assert "Traceback" not in other.stderr
    # ... and `down` there (a stale or wrong state dir) leaves the live cluster alone.
    stale = subprocess.run([sys.executable, "-m", "tollway", "dev", "cluster", "down",
                            "--state-dir", str(dev_cluster.state_dir.parent / "other")],
                           capture_output=True, text=True, timeout=120)
    assert stale.returncode == 0, stale.stderr
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f": {L.BRIDGE}:" in links
    # The running cluster was not disturbed.
    dev_cluster.kubectl("get", "nodes")


def test_down_leaves_nothing_and_up_again_works(dev_cluster: DevCluster) -> None:
    assert host_leftovers(dev_cluster), "a running cluster should be visible"
    proc = dev_cluster.down()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert host_leftovers(dev_cluster) == []
    again = dev_cluster.down()  # idempotent
    assert again.returncode == 0
    env = dev_cluster.cli("env", timeout=60)
    assert env.returncode == 1 and "no dev cluster is running" in env.stderr
    dev_cluster.up()  # and the cluster comes back for the tests after this one
    dev_cluster.kubectl("get", "nodes")


def test_down_cleans_up_after_a_crashed_run(dev_cluster: DevCluster) -> None:
    """SIGKILL the supervisor: its components (own sessions) and pods outlive it; down finds all."""
    import os
    import signal

    from tollway.devcluster import procs

    manifest = dev_cluster.state_dir.parent / "crashy.yaml"
    manifest.write_text("""
apiVersion: apps/v1
kind: Deployment
metadata: {name: crashy, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: crashy}}
  template:
    metadata: {labels: {app: crashy}}
    spec:
      automountServiceAccountToken: false
      containers:
      - {name: sleeper, image: busybox, command: [sleep, "3600"]}
""")
    dev_cluster.kubectl("apply", "-f", str(manifest))
    dev_cluster.kubectl("rollout", "status", "deployment/crashy", "--timeout=150s", timeout=180)
    sup = procs.read_pidfile(L.Layout.at(dev_cluster.state_dir).pidfile("supervisor"))
    assert sup is not None
    os.kill(sup, signal.SIGKILL)
    assert [x for x in host_leftovers(dev_cluster) if x.startswith("netns")]
    proc = dev_cluster.down()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert host_leftovers(dev_cluster) == []
    dev_cluster.up()
