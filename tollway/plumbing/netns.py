"""Network plumbing with iproute2: the bridge, one netns + veth pair per pod, and teardown.

Why `ip` and not netlink bindings: iproute2 is what an operator would type, what `down` and a
human can replay from the recorded names, and Python 3.11 has no os.setns (Dialer below calls
libc's for the one thing `ip` cannot do: a socket inside a netns). Every object
made here carries a fixed prefix (ipam.NETNS_PREFIX / VETH_PREFIX) and is recorded by the caller
before creation, so a crash never leaves an unnamed leftover.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import ipaddress
import os
import signal
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

NETNS_DIR = Path("/run/netns")


class NetError(RuntimeError):
    """An `ip` command failed; the message carries the command and its stderr."""


async def run(*argv: str, check: bool = True) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if check and proc.returncode != 0:
        raise NetError(f"`{' '.join(argv)}` failed ({proc.returncode}): {err.decode().strip()}")
    return out.decode()


async def link_exists(name: str, netns: str | None = None) -> bool:
    prefix = ("ip", "-n", netns) if netns else ("ip",)
    proc = await asyncio.create_subprocess_exec(
        *prefix,
        "link",
        "show",
        "dev",
        name,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await proc.wait() == 0


def bridge_mac(name: str) -> str:
    """A fixed, locally administered MAC for bridge `name`.

    Without one the kernel gives a bridge the lowest MAC among its ports and changes it as
    ports come and go: when the pod whose veth lent its MAC goes, every other pod's
    neighbour entry for the gateway points at a MAC nobody answers for, and pod -> gateway
    traffic (DNS, Service VIPs, a control plane on the host) is lost until the entries
    expire. An address set explicitly is never changed by the kernel.
    """
    digest = hashlib.sha256(name.encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in digest[:5])


async def ensure_bridge(name: str, gateway: str, prefixlen: int) -> bool:
    """Create the bridge if missing (with `bridge_mac`), give it the gateway address,
    bring it up.

    Returns True when this call created the bridge (so its owner knows to delete it). A bridge
    that already carries an address outside the pod CIDR belongs to something else: refuse.
    """
    created = False
    if not await link_exists(name):
        await run("ip", "link", "add", name, "address", bridge_mac(name), "type", "bridge")
        created = True
    addrs = await run("ip", "-o", "-4", "addr", "show", "dev", name)
    net = ipaddress.IPv4Network(f"{gateway}/{prefixlen}", strict=False)
    for word in addrs.split():
        if "/" in word and word[0].isdigit() and ipaddress.IPv4Interface(word).ip not in net:
            raise NetError(
                f"bridge {name} carries {word}, outside the node's podCIDR {net}; "
                "remove that address or pass another --bridge"
            )
    if f" {gateway}/{prefixlen} " not in addrs:
        await run("ip", "addr", "add", f"{gateway}/{prefixlen}", "dev", name)
    await run("ip", "link", "set", name, "up")
    return created


async def setup_pod(
    *, netns: str, veth: str, bridge: str, ip: str, prefixlen: int, gateway: str
) -> None:
    """netns with lo up and eth0 = ip/prefix, default route via the bridge's gateway address."""
    if not (NETNS_DIR / netns).exists():
        await run("ip", "netns", "add", netns)
    await run("ip", "-n", netns, "link", "set", "lo", "up")
    if not await link_exists("eth0", netns):
        if await link_exists(veth):
            await run("ip", "link", "del", veth)
        await run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
    await run("ip", "link", "set", veth, "master", bridge)
    await run("ip", "link", "set", veth, "type", "bridge_slave", "hairpin", "on")
    await run("ip", "link", "set", veth, "up")
    addrs = await run("ip", "-n", netns, "-o", "-4", "addr", "show", "dev", "eth0")
    if f" {ip}/{prefixlen} " not in addrs:
        await run("ip", "-n", netns, "addr", "add", f"{ip}/{prefixlen}", "dev", "eth0")
    await run("ip", "-n", netns, "link", "set", "eth0", "up")
    await run("ip", "-n", netns, "route", "replace", "default", "via", gateway, "dev", "eth0")


async def netns_pids(netns: str) -> list[int]:
    if not (NETNS_DIR / netns).exists():
        return []
    out = await run("ip", "netns", "pids", netns, check=False)
    return [int(x) for x in out.split() if x.isdigit()]


async def kill_netns_processes(netns: str) -> int:
    """SIGKILL whatever still runs in the netns (a crashed agent's orphans). Returns the count."""
    pids = await netns_pids(netns)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for _ in range(50):
        if not await netns_pids(netns):
            break
        await asyncio.sleep(0.05)
    return len(pids)


async def teardown_pod(netns: str, veth: str) -> None:
    """Kill leftovers, delete the netns (which takes eth0 and so the veth pair with it)."""
    await kill_netns_processes(netns)
    if (NETNS_DIR / netns).exists():
        await run("ip", "netns", "del", netns, check=False)
    if await link_exists(veth):
        await run("ip", "link", "del", veth, check=False)


async def delete_link(name: str) -> None:
    if await link_exists(name):
        await run("ip", "link", "del", name, check=False)


CLONE_NEWNET = 0x40000000


class Dialer:
    """Open TCP connections from inside a netns, for readiness checks from the host process.

    A socket belongs to the netns it was created in, and setns(2) moves only the calling
    thread: one worker thread enters the netns once and creates sockets there; the event
    loop connects and uses them as any other. No `ip netns exec` process per check.
    """

    def __init__(self, netns: str) -> None:
        self.netns = netns
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"netns-{netns}",
                                        initializer=self._enter)

    def _enter(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(NETNS_DIR / self.netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns into {self.netns}: {os.strerror(err)}")
        finally:
            os.close(fd)

    async def open_connection(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        loop = asyncio.get_running_loop()
        sock = await loop.run_in_executor(self._pool, socket.socket)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, (host, port))
        except BaseException:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
