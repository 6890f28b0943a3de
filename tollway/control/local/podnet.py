"""What `tollway up --intercept` gives each replica on the network: names, addresses, hosts [pure].

Every run claims one slot N (0..254) on the host: bridge `twuN`, pod subnet 10.250.N.0/24
with the bridge on .1, and names `twuN-I` (netns) / `twuvN-I` (host end of the veth) for
its I-th replica. Slots keep concurrent runs apart (tests run several meshes at once); the
fixed prefixes let the next run find what a SIGKILLed one left behind.

Apps call services by plain names: each replica's netns gets its own /etc/hosts (through
`ip netns exec`'s /etc/netns/NAME/ bind mounts) mapping every name form an app may write
(`NAME` in its own namespace, `NAME.NS`, `NAME.NS.svc`, `NAME.NS.svc.cluster.local`) to
SERVICE_VIP. Nothing listens there: the capture rules redirect the connection to the
sidecar's outbound port before it leaves the namespace, and the sidecar routes by the
Host header, as it does for a ClusterIP in a pod. One address for all names keeps the hosts
file a pure function of the Services, with no second address registry to keep in step.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

SLOTS = 255  # slot N uses 10.250.N.0/24; 10.250.255.0/24 holds the service address
POD_SUPERNET = ipaddress.IPv4Network("10.250.0.0/16")
SERVICE_VIP = ipaddress.IPv4Address("10.250.255.1")
PREFIXLEN = 24
BRIDGE_PREFIX = "twu"
VETH_PREFIX = "twuv"
RULE_COMMENT = "tollway-up-intercept"
# the sidecar's fixed ports inside its netns (Istio's; nothing else listens there)
OUTBOUND_PORT = 15001
INBOUND_PORT = 15006
ADMIN_PORT = 15090
PROXY_GID = 1337


class PodNetError(RuntimeError):
    """No address or slot is left; the message says what to do."""


def subnet(slot: int) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(f"10.250.{slot}.0/{PREFIXLEN}")


def gateway(slot: int) -> ipaddress.IPv4Address:
    return subnet(slot).network_address + 1


def bridge(slot: int) -> str:
    return f"{BRIDGE_PREFIX}{slot}"


def netns_name(slot: int, index: int) -> str:
    return f"{BRIDGE_PREFIX}{slot}-{index}"


def veth_name(slot: int, index: int) -> str:
    return f"{VETH_PREFIX}{slot}-{index}"  # at most 12 characters (IFNAMSIZ is 15)


def slot_of(name: str) -> int | None:
    """The slot a netns/bridge/veth name belongs to, None when it is not ours."""
    for prefix in (VETH_PREFIX, BRIDGE_PREFIX):
        if name.startswith(prefix):
            digits = name[len(prefix):].split("-", 1)[0]
            return int(digits) if digits.isdigit() and int(digits) < SLOTS else None
    return None


def free_slot(taken: Iterable[int]) -> int:
    used = set(taken)
    for slot in range(SLOTS):
        if slot not in used:
            return slot
    raise PodNetError(f"all {SLOTS} intercept slots are held by running `tollway up "
                      "--intercept` runs; stop one and retry")


@dataclass(frozen=True, slots=True)
class Slot:
    """One replica's place on the run's bridge."""

    netns: str
    veth: str
    ip: ipaddress.IPv4Address


class Addresses:
    """Pod addresses of one run: .2 to .254, the lowest free first, reused once released."""

    def __init__(self, slot: int) -> None:
        self.slot = slot
        self._by_name: dict[str, Slot] = {}
        self._index = 0

    def assign(self, name: str) -> Slot:
        if name in self._by_name:
            return self._by_name[name]
        used = {s.ip for s in self._by_name.values()}
        net = subnet(self.slot)
        for ip in list(net.hosts())[1:]:
            if ip not in used:
                break
        else:
            raise PodNetError(f"no address left in {net} for {name}: more than "
                              f"{net.num_addresses - 3} replicas at once")
        self._index += 1
        found = Slot(netns_name(self.slot, self._index), veth_name(self.slot, self._index), ip)
        self._by_name[name] = found
        return found

    def get(self, name: str) -> Slot | None:
        return self._by_name.get(name)

    def release(self, name: str) -> Slot | None:
        return self._by_name.pop(name, None)

    def all(self) -> list[Slot]:
        return list(self._by_name.values())


def host_names(services: Iterable[tuple[str, str, str]], namespace: str) -> list[str]:
    """Every name an app in `namespace` may write for the mesh's services.

    `services`: (name, namespace, host) of Kubernetes-style services, host being the FQDN;
    a bare NAME only for the replica's own namespace (as its DNS search path resolves it).
    """
    out: list[str] = []
    for name, ns, host in sorted(services):
        if host.startswith("*"):
            continue
        forms = [host, f"{name}.{ns}.svc", f"{name}.{ns}"] if name else [host]
        if name and ns == namespace:
            forms.append(name)
        out += [f for f in forms if f not in out]
    return out


def hosts_file(names: Iterable[str], *, hostname: str, pod_ip: str) -> str:
    """/etc/hosts for one replica's netns: itself, localhost, every service name -> the VIP."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             f"{pod_ip}\t{hostname}"]
    lines += [f"{SERVICE_VIP}\t{n}" for n in names]
    return "\n".join(lines) + "\n"


def resolv_conf(namespace: str, domain: str = "cluster.local") -> str:
    """No nameserver: every mesh name is in the hosts file, and the host's resolvers are
    not reachable from the pod network anyway (a lookup fails at once, not after 5 s)."""
    return (f"search {namespace}.svc.{domain} svc.{domain} {domain}\n"
            "nameserver 127.0.0.1\noptions ndots:5 timeout:1 attempts:1\n")
