"""Pod IP allocation from the node's podCIDR, and the names of each pod's network objects.

The first host address is the bridge's (the pods' gateway); the rest go to pods round-robin
from the last one handed out (as CNI host-local does), so a deleted pod's address is not
reused at once while EndpointSlices, kube-proxy and DNS caches may still point at it. The
table is plain data the caller persists (state dir `network.json`), so a
restarted agent and `cleanup` know what was handed out.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

NETNS_PREFIX = "twp-"
VETH_PREFIX = "twv"


class IpamError(ValueError):
    """The pod CIDR is unusable or exhausted; the message says which and what to do."""


def netns_name(uid: str, prefix: str = NETNS_PREFIX) -> str:
    """Linux interface names are at most 15 bytes; eight hex digits of the uid are plenty here."""
    return prefix + uid.replace("-", "")[:8]


def veth_name(uid: str, prefix: str = VETH_PREFIX) -> str:
    return prefix + uid.replace("-", "")[:8]


@dataclass
class Ipam:
    cidr: str
    leases: dict[str, str] = field(default_factory=dict)  # pod uid -> ip
    last: str = ""  # the address handed out most recently

    def __post_init__(self) -> None:
        try:
            self.net = ipaddress.IPv4Network(self.cidr)
        except ValueError as e:
            raise IpamError(f"node.spec.podCIDR {self.cidr!r} is not an IPv4 CIDR: {e}") from e
        if self.net.num_addresses < 4:
            raise IpamError(f"node.spec.podCIDR {self.cidr} is too small; use a /30 or larger")

    @property
    def gateway(self) -> str:
        return str(self.net.network_address + 1)

    @property
    def prefixlen(self) -> int:
        return self.net.prefixlen

    def allocate(self, uid: str) -> str:
        if uid in self.leases:
            return self.leases[uid]
        taken = set(self.leases.values()) | {self.gateway}
        hosts = [str(h) for h in self.net.hosts()]
        start = hosts.index(self.last) + 1 if self.last in hosts else 0
        for ip in hosts[start:] + hosts[:start]:
            if ip not in taken:
                self.leases[uid] = self.last = ip
                return ip
        raise IpamError(f"node podCIDR {self.cidr} has no free address left for pod {uid}")

    def release(self, uid: str) -> None:
        self.leases.pop(uid, None)

    def to_json(self) -> dict[str, object]:
        return {"cidr": self.cidr, "leases": dict(self.leases), "last": self.last}

    @classmethod
    def from_json(cls, data: dict[str, object], cidr: str) -> Ipam:
        """Reload persisted leases; a different CIDR (a new cluster) starts empty."""
        leases = data.get("leases")
        if data.get("cidr") != cidr or not isinstance(leases, dict):
            return cls(cidr)
        return cls(cidr, {str(k): str(v) for k, v in leases.items()}, str(data.get("last", "")))
