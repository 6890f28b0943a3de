"""Where a dev cluster keeps its files, and the fixed network facts every part agrees on.

One dev cluster per host: kube-proxy's iptables chains and the Service range are host-global,
so the addresses below are constants rather than options (see /work/notes/k8s-interface.md).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

NODE_NAME = "tollway-dev"
BRIDGE = "tollway0"
BRIDGE_MAC = "02:74:77:00:00:01"  # fixed: see hostnet.setup
CLUSTER_CIDR = ipaddress.IPv4Network("10.244.0.0/16")
NODE_CIDR_MASK = 24
# kcm hands the first (and only) node the first /24 of the cluster CIDR; its .1 is the gateway.
NODE_POD_CIDR = ipaddress.IPv4Network("10.244.0.0/24")
BRIDGE_IP = ipaddress.IPv4Address("10.244.0.1")
SERVICE_CIDR = ipaddress.IPv4Network("10.96.0.0/12")
KUBERNETES_SERVICE_IP = ipaddress.IPv4Address("10.96.0.1")
DNS_SERVICE_IP = ipaddress.IPv4Address("10.96.0.10")
APISERVER_PORT = 6443
KUBELET_PORT = 10250
CLUSTER_DOMAIN = "cluster.local"
# Names the node agent gives what it creates, so `down` can sweep them after a crash.
POD_NETNS_PREFIX = "twp-"  # devnode ipam.NETNS_PREFIX
RULE_COMMENT = "tollway-dev-cluster"
# Which state dir owns the host-global pieces (bridge, rules) right now.
OWNER_FILE = Path("/run/tollway/dev-cluster.owner")


@dataclass(frozen=True)
class Layout:
    """Paths inside one cluster's state dir (always absolute)."""

    root: Path

    @classmethod
    def at(cls, state_dir: Path | str) -> Layout:
        return cls(Path(state_dir).expanduser().resolve())

    @property
    def lock(self) -> Path:
        return self.root / "lock"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def node(self) -> Path:
        """The node agent's own folder (netns records, pod logs, its pid files)."""
        return self.root / "node"

    @property
    def plan(self) -> Path:
        return self.root / "plan.json"

    @property
    def status(self) -> Path:
        return self.root / "status.json"

    @property
    def hostnet(self) -> Path:
        """What hostnet.py changed on the host, so teardown can undo exactly that."""
        return self.root / "hostnet.json"

    @property
    def corefile(self) -> Path:
        return self.root / "Corefile"

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def pidfile(self, component: str) -> Path:
        return self.pids / f"{component}.pid"

    def component_kubeconfig(self, component: str) -> Path:
        return self.pki / f"{component}.kubeconfig"
