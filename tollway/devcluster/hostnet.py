"""The host side of the pod network: the bridge, a route to Services, forwarding rules.

Everything done here is recorded step by step in STATE/hostnet.json before it is done, so a
crashed `up` is undone exactly by the next `down`, and nothing outside that record is
touched. The node agent attaches pod veths to the bridge; it never creates or deletes it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tollway.devcluster import layout as L


class HostNetError(RuntimeError):
    """A host networking step failed; the message says which command and why."""


def run(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise HostNetError(f"{argv[0]} is not installed; install it "
                           "(apt-get install iproute2 iptables conntrack) and retry") from None
    if check and proc.returncode != 0:
        raise HostNetError(f"`{' '.join(argv)}` failed: {proc.stderr.strip() or proc.stdout}")
    return proc


def link_exists(name: str) -> bool:
    return run(["ip", "link", "show", "dev", name], check=False).returncode == 0


def owner() -> Path | None:
    """The state dir whose cluster holds the host-global pieces, if any."""
    try:
        return Path(L.OWNER_FILE.read_text().strip())
    except OSError:
        return None


def _sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def _rule(chain_dir: str) -> list[str]:
    return ["FORWARD", chain_dir, L.BRIDGE, "-m", "comment", "--comment", L.RULE_COMMENT,
            "-j", "ACCEPT"]


def setup(lay: L.Layout) -> None:
    """Create the bridge with the gateway IP, the Service route and the forwarding rules."""
    record: dict[str, object] = {"steps": []}
    steps: list[str] = record["steps"]  # type: ignore[assignment]

    def save() -> None:
        lay.hostnet.write_text(json.dumps(record, indent=2))

    L.OWNER_FILE.parent.mkdir(parents=True, exist_ok=True)
    L.OWNER_FILE.write_text(f"{lay.root}\n")
    fwd = _sysctl_path("net.ipv4.ip_forward")
    record["ip_forward_before"] = fwd.read_text().strip()
    steps.append("bridge")
    save()
    # a fixed MAC: the kernel's default follows the ports' and changes when pods come and
    # go, which cuts every pod off its gateway (DNS, Services) until neighbour entries expire
    run(["ip", "link", "add", L.BRIDGE, "address", L.BRIDGE_MAC, "type", "bridge"])
    run(["ip", "addr", "add", f"{L.BRIDGE_IP}/{L.NODE_POD_CIDR.prefixlen}", "dev", L.BRIDGE])
    run(["ip", "link", "set", L.BRIDGE, "up"])
    # The apiserver (host netns) dials webhook Services by ClusterIP: route them via the
    # bridge so kube-proxy's OUTPUT DNAT applies with the bridge IP as source. The route
    # goes away with the bridge.
    run(["ip", "route", "add", str(L.SERVICE_CIDR), "dev", L.BRIDGE, "src", str(L.BRIDGE_IP)])
    steps.append("forward-rules")
    save()
    for d in ("-i", "-o"):
        run(["iptables", "-w", "5", "-I", *_rule(d)])
    steps.append("ip_forward")
    save()
    # Pod -> ClusterIP -> other pod is routed through the host netns after the DNAT.
    fwd.write_text("1\n")


def teardown(lay: L.Layout) -> list[str]:
    """Undo what setup recorded (and only that); return what was removed."""
    removed: list[str] = []
    try:
        record = json.loads(lay.hostnet.read_text())
    except (OSError, ValueError):
        record = None
    if record is None and owner() != lay.root:
        return removed
    steps = set(record["steps"]) if record else {"bridge", "forward-rules"}
    if "forward-rules" in steps:
        for d in ("-i", "-o"):
            while run(["iptables", "-w", "5", "-D", *_rule(d)], check=False).returncode == 0:
                removed.append(f"iptables FORWARD {d} {L.BRIDGE}")
    if "bridge" in steps and link_exists(L.BRIDGE):
        run(["ip", "link", "del", L.BRIDGE])
        removed.append(f"bridge {L.BRIDGE}")
    if record and "ip_forward" in steps:
        before = str(record.get("ip_forward_before", "0"))
        _sysctl_path("net.ipv4.ip_forward").write_text(before + "\n")
        removed.append(f"net.ipv4.ip_forward restored to {before}")
    lay.hostnet.unlink(missing_ok=True)
    if owner() == lay.root:
        L.OWNER_FILE.unlink(missing_ok=True)
    return removed


def purge_kube_chains() -> list[str]:
    """Remove every KUBE-* chain and the jumps to it, in both address families.

    `kube-proxy --cleanup` leaves KUBE-FIREWALL (INPUT/OUTPUT jumps) behind in 1.34. Only
    called when this cluster ran kube-proxy; one dev cluster per host, and no kubelet here.
    """
    removed: list[str] = []
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle", "raw"):
            listing = run([tool, "-w", "5", "-t", table, "-S"], check=False).stdout.splitlines()
            chains = [ln.split()[1] for ln in listing if ln.startswith("-N KUBE-")]
            if not chains:
                continue
            for ln in listing:
                parts = ln.split()
                if parts[:1] == ["-A"] and "-j" in parts and \
                        parts[parts.index("-j") + 1].startswith("KUBE-") and \
                        not parts[1].startswith("KUBE-"):
                    run([tool, "-w", "5", "-t", table, "-D", *parts[1:]], check=False)
            for c in chains:
                run([tool, "-w", "5", "-t", table, "-F", c], check=False)
            for c in chains:
                run([tool, "-w", "5", "-t", table, "-X", c], check=False)
            removed.append(f"{tool} -t {table}: {', '.join(chains)}")
    return removed
