"""The node's pod network: the bridge, per-pod attach/detach, and the ledger `cleanup` reads.

The ledger (`<state-dir>/network.json`) is written *before* a namespace or veth is created, so
whatever a crash leaves behind is named there; `cleanup` removes exactly what it lists and
nothing else on the machine (another cluster's pods use another state dir).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from tollway.devnode import mountpoints
from tollway.devnode.ipam import NETNS_PREFIX, VETH_PREFIX, Ipam, netns_name, veth_name
from tollway.plumbing import netns


def read_ledger(state_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((state_dir / "network.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_ledger(state_dir: Path, data: dict[str, Any]) -> None:
    path = state_dir / "network.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


class PodNet:
    """attach(uid) -> (ip, netns); detach(uid). Serialised: `ip` calls and the ledger never race."""

    def __init__(
        self,
        state_dir: Path,
        bridge: str,
        cidr: str,
        *,
        netns_prefix: str = NETNS_PREFIX,
        veth_prefix: str = VETH_PREFIX,
    ) -> None:
        self.state_dir = state_dir
        self.bridge = bridge
        self.prefixes = (netns_prefix, veth_prefix)
        self.markers = state_dir / "netns"
        self.lock = asyncio.Lock()
        ledger = read_ledger(state_dir)
        self.ipam = Ipam.from_json(ledger.get("ipam", {}), cidr)
        self.pods: dict[str, dict[str, str]] = dict(ledger.get("pods", {}))
        self.bridge_created = bool(ledger.get("bridge_created", False))

    def _save(self) -> None:
        write_ledger(
            self.state_dir,
            {
                "bridge": self.bridge,
                "bridge_created": self.bridge_created,
                "ipam": self.ipam.to_json(),
                "pods": self.pods,
            },
        )

    async def ensure_bridge(self) -> None:
        async with self.lock:
            self._save()  # name the bridge before making it
            created = await netns.ensure_bridge(self.bridge, self.ipam.gateway, self.ipam.prefixlen)
            self.bridge_created = self.bridge_created or created
            self._save()

    async def attach(self, uid: str) -> tuple[str, str]:
        async with self.lock:
            ip = self.ipam.allocate(uid)
            ns, veth = netns_name(uid, self.prefixes[0]), veth_name(uid, self.prefixes[1])
            self.pods[uid] = {"netns": ns, "veth": veth, "ip": ip}
            self._save()
            self.markers.mkdir(parents=True, exist_ok=True)
            (self.markers / ns).write_text(f"{uid} {veth} {ip}\n")
            await netns.setup_pod(
                netns=ns,
                veth=veth,
                bridge=self.bridge,
                ip=ip,
                prefixlen=self.ipam.prefixlen,
                gateway=self.ipam.gateway,
            )
            return ip, ns

    async def detach(self, uid: str) -> None:
        async with self.lock:
            entry = self.pods.get(uid)
            if entry is not None:
                await netns.teardown_pod(entry["netns"], entry["veth"])
                (self.markers / entry["netns"]).unlink(missing_ok=True)
            self.pods.pop(uid, None)
            self.ipam.release(uid)
            self._save()

    async def detach_all(self) -> None:
        for uid in list(self.pods):
            await self.detach(uid)


async def cleanup(
    state_dir: Path, *, bridge: str | None = None, keep_bridge: bool = False
) -> list[str]:
    """Remove every pod netns/veth the ledger names (killing what runs there), and the bridge if
    asked or if the agent created it (unless keep_bridge: an agent restarting reuses it).
    Returns what was removed, for `down` to print."""
    ledger = read_ledger(state_dir)
    removed: list[str] = []
    for entry in dict(ledger.get("pods", {})).values():
        ns, veth = entry.get("netns", ""), entry.get("veth", "")
        if ns and veth and "/" not in ns:
            killed = await netns.kill_netns_processes(ns)
            await netns.teardown_pod(ns, veth)
            (state_dir / "netns" / ns).unlink(missing_ok=True)
            removed.append(f"netns {ns} ({killed} processes), veth {veth}")
    name = bridge or (ledger.get("bridge") if ledger.get("bridge_created") else None)
    if keep_bridge:
        name = None
    if name and await netns.link_exists(str(name)):
        await netns.delete_link(str(name))
        removed.append(f"bridge {name}")
    removed += mountpoints.cleanup(state_dir)
    if ledger:
        created = bool(ledger.get("bridge_created")) and keep_bridge
        write_ledger(
            state_dir,
            {"bridge": ledger.get("bridge"), "bridge_created": created, "pods": {}, "ipam": {}},
        )
    return removed
