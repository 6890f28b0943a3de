"""`tollway up --intercept`: each replica in its own network namespace, traffic captured.

What a replica gets (the IO edge of podnet.py's plan):
- netns `twuN-I` with lo, eth0 = 10.250.N.x/24 on the run's bridge `twuN` (host side
  10.250.N.1), default route via the bridge;
- istio-init's nat rules in it (tollway.capture, the same rules the injected init
  container installs on Kubernetes): outbound TCP -> 15001, inbound -> 15006, the
  sidecar's traffic (gid 1337) and the admin port 15090 exempt;
- /etc/netns/twuN-I/hosts + resolv.conf, so `http://myapp:8080` resolves without DNS;
- its app started with `ip netns exec`, no HTTP_PROXY; its sidecar likewise as uid and
  gid 1337 (`setpriv`), reading a copy of its node token that only uid 1337 can read.

Cleanup: every name is recorded in /run/tollway/up-intercept/slot-N.json before it is
created, with the owning `tollway up`'s pid and start time. A clean stop removes it all;
the next `--intercept` run, under the same host-wide lock, sweeps every slot whose owner
is gone (SIGKILL, crash, reboot of the process) and never one whose owner still runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tollway.capture import apply as capture_apply
from tollway.capture import rules as capture_rules
from tollway.control.local import podnet
from tollway.plumbing import netns as plumbing
from tollway.plumbing import sbin

log = logging.getLogger(__name__)

REGISTRY = Path("/run/tollway/up-intercept")
ETC_NETNS = Path("/etc/netns")
NEEDED = ("ip", "iptables", "iptables-restore", "setpriv")
SIDECAR_MODULE = "tollway.control.local.sidecar"


class InterceptError(RuntimeError):
    """Interception cannot be set up; the message is one sentence saying why and what to do."""


def preflight() -> None:
    """Fail closed before anything is created: root and the tools, or one sentence."""
    if os.geteuid() != 0:
        raise InterceptError("--intercept needs root (it creates network namespaces and "
                             "iptables rules); run `sudo tollway up --intercept ...` or drop "
                             "--intercept to use the HTTP proxy settings instead")
    sbin.ensure_on_path()  # root's iptables where a user's PATH does not look
    missing = [t for t in NEEDED if shutil.which(t) is None]
    if missing:
        which = "which is" if len(missing) == 1 else "which are"
        raise InterceptError(f"--intercept needs {', '.join(missing)}, {which} not "
                             "installed; install iproute2, iptables and util-linux "
                             "(apt-get install iproute2 iptables util-linux) or drop --intercept")
    if not plumbing.NETNS_DIR.parent.is_dir():
        raise InterceptError("--intercept needs /run (for /run/netns); this system has none")


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (/proc/PID/stat field 22): a pid plus this
    names one process, never a later one that reused the pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19] if len(fields) > 19 and fields[0] != "Z" else None


def _alive(record: dict[str, Any]) -> bool:
    pid = record.get("pid")
    return isinstance(pid, int) and _start_time(pid) == record.get("start")


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def _forward_rule(slot: int, direction: str) -> list[str]:
    return ["FORWARD", direction, podnet.bridge(slot), "-m", "comment", "--comment",
            f"{podnet.RULE_COMMENT} {slot}", "-j", "ACCEPT"]


@contextlib.contextmanager
def _host_lock() -> Iterator[None]:
    REGISTRY.mkdir(parents=True, exist_ok=True)
    with open(REGISTRY / "lock", "a+") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lk, fcntl.LOCK_UN)


def _records() -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for path in REGISTRY.glob("slot-*.json"):
        slot = path.stem.removeprefix("slot-")
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
        if slot.isdigit():
            out[int(slot)] = data if isinstance(data, dict) else {}
    return out


def _our_netns() -> list[str]:
    listing = _run(["ip", "netns", "list"]).stdout.split("\n")
    return [ln.split()[0] for ln in listing if ln.strip()
            and podnet.slot_of(ln.split()[0]) is not None]


def _our_links() -> list[str]:
    out = _run(["ip", "-o", "link", "show"]).stdout.splitlines()
    names = [ln.split(":")[1].strip().split("@")[0] for ln in out if ln.count(":") >= 2]
    return [n for n in names if podnet.slot_of(n) is not None]


def _routed_slots() -> list[int]:
    """Slots whose subnet the host already routes somewhere (another tool's bridge, a VPN):
    a second route for the same addresses would send replies the wrong way."""
    import ipaddress

    taken = []
    routes = _run(["ip", "-4", "-o", "route", "show", "table", "all"]).stdout.splitlines()
    nets = []
    for line in routes:
        word = line.split()[0] if line.split() else ""
        if word and word[0].isdigit():
            with contextlib.suppress(ValueError):
                nets.append(ipaddress.IPv4Network(word, strict=False))
    for slot in range(podnet.SLOTS):
        if any(n.prefixlen > 0 and n.overlaps(podnet.subnet(slot)) for n in nets):
            taken.append(slot)
    return taken


def _delete_netns(name: str) -> None:
    for pid in _run(["ip", "netns", "pids", name]).stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), 9)
    _run(["ip", "netns", "del", name])
    shutil.rmtree(ETC_NETNS / name, ignore_errors=True)


def _remove_slot(slot: int, record: dict[str, Any]) -> list[str]:
    """Everything slot `slot` may hold: recorded netns, any netns/link with its prefix,
    its forwarding rules, its bridge, its record."""
    removed: list[str] = []
    names = {str(n) for n in record.get("netns", [])}
    names |= {n for n in _our_netns() if podnet.slot_of(n) == slot}
    for name in sorted(names):
        _delete_netns(name)
        removed.append(f"netns {name}")
    for link in _our_links():
        if podnet.slot_of(link) == slot and _run(["ip", "link", "del", link]).returncode == 0:
            removed.append(f"link {link}")
    for d in ("-i", "-o"):
        while _run(["iptables", "-w", "5", "-D", *_forward_rule(slot, d)]).returncode == 0:
            removed.append(f"iptables FORWARD {d} {podnet.bridge(slot)}")
    shutil.rmtree(REGISTRY / f"slot-{slot}", ignore_errors=True)
    (REGISTRY / f"slot-{slot}.json").unlink(missing_ok=True)
    return removed


def sweep() -> list[str]:
    """Remove what dead `tollway up --intercept` runs left; never a live run's. The caller
    holds the host lock."""
    removed: list[str] = []
    records = _records()
    live = {s for s, r in records.items() if _alive(r)}
    leftover = {s for s in records if s not in live}
    for name in [*_our_netns(), *_our_links()]:
        slot = podnet.slot_of(name)
        if slot is not None and slot not in live:
            leftover.add(slot)
    for slot in sorted(leftover):
        removed += _remove_slot(slot, records.get(slot, {}))
    return removed


def proxy_prefix() -> list[str]:
    """How the sidecar runs: uid and gid 1337, which the capture rules exempt (Istio's
    proxy user), with no supplementary groups."""
    return ["setpriv", f"--reuid={podnet.PROXY_GID}", f"--regid={podnet.PROXY_GID}",
            "--clear-groups"]


def check_proxy_user(python: str) -> None:
    """Fail closed when uid 1337 cannot start the interpreter (e.g. one under a 0700 home):
    running the sidecar as anyone else would either loop its own traffic or, as root, leave
    it uncaptured for reasons nobody chose."""
    try:
        done = subprocess.run([*proxy_prefix(), python, "-c", f"import {SIDECAR_MODULE}"],
                              capture_output=True, text=True, timeout=60, check=False,
                              cwd="/")
    except OSError as exc:
        raise InterceptError(f"--intercept could not run setpriv: {exc}") from None
    if done.returncode != 0:
        raise InterceptError(f"--intercept runs each sidecar as uid {podnet.PROXY_GID}, which "
                             f"cannot start {python} with {SIDECAR_MODULE} (their directories "
                             "must be readable by all); install Tollway outside a private home")


class Intercept:
    """One run's slot: its bridge, and one netns per replica."""

    def __init__(self, slot: int, record: dict[str, Any]) -> None:
        self.slot = slot
        self.record = record
        self.addresses = podnet.Addresses(slot)
        self.gateway = str(podnet.gateway(slot))
        self.bridge = podnet.bridge(slot)
        self._made: set[str] = set()
        self._dialers: dict[str, plumbing.Dialer] = {}
        self._hosts: dict[str, str] = {}  # replica name -> hosts file text written
        self._names: list[tuple[str, str, str]] = []

    # ------------------------------------------------------------ the run

    @classmethod
    async def claim(cls, state_dir: Path) -> tuple[Intercept, list[str]]:
        """Sweep dead runs' leftovers, take a free slot, make its bridge. Raises
        InterceptError with one sentence (nothing of this run left behind)."""
        preflight()
        await asyncio.to_thread(check_proxy_user, sys.executable)
        return await asyncio.to_thread(cls._claim, state_dir)

    @classmethod
    def _claim(cls, state_dir: Path) -> tuple[Intercept, list[str]]:
        with _host_lock():
            removed = sweep()
            records = _records()
            try:
                slot = podnet.free_slot([*records, *_routed_slots()])
            except podnet.PodNetError as exc:
                raise InterceptError(str(exc)) from None
            me = os.getpid()
            record: dict[str, Any] = {"pid": me, "start": _start_time(me),
                                      "state_dir": str(state_dir), "netns": []}
            self = cls(slot, record)
            self._save()
        try:
            self._bridge_up()
        except InterceptError:
            with _host_lock():
                _remove_slot(slot, self.record)
            raise
        return self, removed

    def _bridge_up(self) -> None:
        steps = [
            ["ip", "link", "add", self.bridge, "address", plumbing.bridge_mac(self.bridge),
             "type", "bridge"],  # fixed: replicas coming and going must not change it
            ["ip", "addr", "add", f"{self.gateway}/{podnet.PREFIXLEN}", "dev", self.bridge],
            ["ip", "link", "set", self.bridge, "up"],
            ["iptables", "-w", "5", "-I", *_forward_rule(self.slot, "-i")],
            ["iptables", "-w", "5", "-I", *_forward_rule(self.slot, "-o")],
        ]
        for argv in steps:
            done = _run(argv)
            if done.returncode != 0:
                raise InterceptError(f"`{' '.join(argv)}` failed: "
                                     f"{done.stderr.strip() or done.stdout.strip()}")

    def _save(self) -> None:
        path = REGISTRY / f"slot-{self.slot}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.record, indent=1))
        tmp.replace(path)

    def control_url(self, port: int) -> str:
        """Where sidecars in the replicas' netns reach the control plane (the bridge)."""
        return f"http://{self.gateway}:{port}"

    async def close(self) -> list[str]:
        """Remove every netns, the bridge, the rules and the record of this run."""
        for name in list(self._dialers):
            self._dialers.pop(name).close()
        return await asyncio.to_thread(self._close)

    def _close(self) -> list[str]:
        with _host_lock():
            return _remove_slot(self.slot, self.record)

    @property
    def secrets(self) -> Path:
        """This run's directory of credentials handed to uid 1337 (removed with the slot)."""
        return REGISTRY / f"slot-{self.slot}"

    def hand_over(self, token_file: Path) -> Path:
        """A copy of a sidecar's token file that its uid 1337 can read (0400, its own) in a
        directory only root lists; `tollway up`'s state dir stays private to its user."""
        self.secrets.mkdir(mode=0o711, exist_ok=True)
        dest = self.secrets / token_file.name
        tmp = dest.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "w") as f:
            f.write(token_file.read_text())
        os.chown(tmp, podnet.PROXY_GID, podnet.PROXY_GID)
        tmp.replace(dest)
        return dest

    # ------------------------------------------------------------ replicas

    def assign(self, name: str) -> podnet.Slot:
        return self.addresses.assign(name)

    async def ensure(self, name: str, namespace: str) -> podnet.Slot:
        """The replica's netns, plumbed and captured (once; later calls return it)."""
        slot = self.addresses.assign(name)
        if slot.netns in self._made:
            return slot
        self.record["netns"] = sorted({*self.record["netns"], slot.netns})
        self._save()  # recorded before it exists: a crash from here on is swept
        try:
            await plumbing.setup_pod(netns=slot.netns, veth=slot.veth, bridge=self.bridge,
                                     ip=str(slot.ip), prefixlen=podnet.PREFIXLEN,
                                     gateway=self.gateway)
            etc = ETC_NETNS / slot.netns
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "resolv.conf").write_text(podnet.resolv_conf(namespace))
            self._write_hosts(name, namespace, slot)
            await asyncio.to_thread(capture_apply.apply, capture_rules.Capture(),
                                    netns=slot.netns)
        except (plumbing.NetError, capture_apply.ApplyError, OSError) as exc:
            await self.release(name)
            raise InterceptError(f"could not set up the network of {name}: {exc}") from None
        self._made.add(slot.netns)
        self._dialers[name] = plumbing.Dialer(slot.netns)
        return slot

    def wrap(self, name: str, argv: Iterable[str], *, proxy: bool) -> list[str]:
        slot = self.addresses.assign(name)
        return ["ip", "netns", "exec", slot.netns, *(proxy_prefix() if proxy else []), *argv]

    def dialer(self, name: str) -> plumbing.Dialer | None:
        return self._dialers.get(name)

    async def release(self, name: str) -> None:
        slot = self.addresses.release(name)
        self._hosts.pop(name, None)
        dialer = self._dialers.pop(name, None)
        if dialer is not None:
            dialer.close()
        if slot is None:
            return
        await plumbing.teardown_pod(slot.netns, slot.veth)
        shutil.rmtree(ETC_NETNS / slot.netns, ignore_errors=True)
        self._made.discard(slot.netns)
        self.record["netns"] = [n for n in self.record["netns"] if n != slot.netns]
        self._save()

    # ------------------------------------------------------------ names

    def set_services(self, services: Iterable[tuple[str, str, str]],
                     namespaces: dict[str, str]) -> None:
        """New service list: rewrite each replica's hosts file whose text changes.
        `namespaces`: replica name -> its namespace."""
        self._names = sorted(set(services))
        for name, ns in namespaces.items():
            slot = self.addresses.get(name)
            if slot is not None and slot.netns in self._made:
                self._write_hosts(name, ns, slot)

    def _write_hosts(self, name: str, namespace: str, slot: podnet.Slot) -> None:
        text = podnet.hosts_file(podnet.host_names(self._names, namespace),
                                 hostname=name.split(".")[0], pod_ip=str(slot.ip))
        if self._hosts.get(name) == text:
            return
        # in place, not rename: running processes see the file through a bind mount of
        # this inode (`ip netns exec`), so a new inode would never reach them
        with open(ETC_NETNS / slot.netns / "hosts", "w") as f:
            f.write(text)
        self._hosts[name] = text
