"""`down`: stop the supervisor, then sweep whatever is left, also after a crashed run.

Order matters: any recorded process that outlived its supervisor first (so an orphaned agent
cannot re-create what we delete), then pods (kill every pid inside each pod netns, then delete
the netns, which takes its veth pair with it), then kube-proxy's own rules
(`kube-proxy --cleanup`), then what hostnet.py recorded.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tollway.devcluster import hostnet, procs
from tollway.devcluster import layout as L
from tollway.devcluster.childenv import child_env

STOP_TIMEOUT = 90.0


def pod_netns(lay: L.Layout) -> list[str]:
    """Pod netns this cluster made: recorded by the agent, or carrying its name prefix while
    no other state dir owns the host (one cluster per host, so an unowned twp-* is an orphan)."""
    names = set()
    rec = lay.node / "netns"
    if rec.is_dir():
        names |= {p.name for p in rec.iterdir()}
    if hostnet.owner() in (None, lay.root):  # never another live cluster's pods
        out = hostnet.run(["ip", "netns", "list"], check=False).stdout
        names |= {ln.split()[0] for ln in out.splitlines()
                  if ln.strip() and ln.split()[0].startswith(L.POD_NETNS_PREFIX)}
    return sorted(n for n in names if n.startswith(L.POD_NETNS_PREFIX))


def delete_netns(name: str) -> None:
    pids = hostnet.run(["ip", "netns", "pids", name], check=False).stdout.split()
    for p in pids:
        try:
            os.kill(int(p), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    hostnet.run(["ip", "netns", "del", name], check=False)
    shutil.rmtree(Path("/etc/netns") / name, ignore_errors=True)


def stop_supervisor(lay: L.Layout, say: Callable[[str], None]) -> bool:
    """SIGTERM the supervisor and wait for it to release the lock; False if none ran."""
    pid = procs.read_pidfile(lay.pidfile("supervisor"))
    if pid is None:
        return False
    say(f"stopping the cluster supervisor (pid {pid}) and its components...")
    procs.terminate(pid, STOP_TIMEOUT)
    return True


def sweep(lay: L.Layout, bin_dir: Path | None) -> list[str]:
    removed: list[str] = []
    # Processes that outlived a crashed supervisor go first, so an orphaned agent cannot
    # re-create a pod netns while we delete them.
    n = procs.kill_pidfiles(lay.pids) + procs.kill_pidfiles(lay.node)
    if n:
        removed.append(f"{n} leftover process(es)")
    if lay.node.is_dir():
        # The agent's own ledger-driven cleanup first (it knows its veths and IPs); the sweep
        # below catches whatever a crash kept it from recording.
        subprocess.run([sys.executable, "-m", "tollway.devnode", "cleanup",
                        f"--state-dir={lay.node}"], capture_output=True, timeout=120, check=False,
                       env=child_env())
    for ns in pod_netns(lay):
        delete_netns(ns)
        removed.append(f"netns {ns}")
    shutil.rmtree(lay.node / "netns", ignore_errors=True)
    if hostnet.owner() not in (None, lay.root):
        # Another state dir's cluster owns the bridge and kube-proxy's chains now: what this
        # dir recorded is stale, and removing the host-global pieces would break that cluster.
        lay.hostnet.unlink(missing_ok=True)
    else:
        if lay.plan.exists() and bin_dir is not None and (bin_dir / "kube-proxy").exists():
            subprocess.run([str(bin_dir / "kube-proxy"), "--cleanup"], capture_output=True,
                           timeout=60, check=False)
            removed.append("kube-proxy rules (kube-proxy --cleanup)")
            removed += hostnet.purge_kube_chains()
        removed += hostnet.teardown(lay)
    lay.plan.unlink(missing_ok=True)
    lay.status.unlink(missing_ok=True)
    return removed


def down(lay: L.Layout, bin_dir: Path | None, say: Callable[[str], None]) -> int:
    if not lay.root.is_dir():
        say(f"no dev cluster state at {lay.root}: nothing to stop")
        return 0
    stop_supervisor(lay, say)
    lay.lock.touch()
    with open(lay.lock, "r+") as lk:
        deadline = time.monotonic() + STOP_TIMEOUT
        while True:
            try:
                fcntl.flock(lk, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    say(f"tollway dev cluster down: {lay.lock} is still locked by a process "
                        "that is not our supervisor; find it with `fuser "
                        f"{lay.lock}` and stop it")
                    return 1
                time.sleep(0.2)
        removed = sweep(lay, bin_dir)
    for r in removed:
        say(f"  removed {r}")
    say(f"tollway dev cluster down: stopped ({lay.root})")
    return 0


def status_of(lay: L.Layout) -> dict[str, object] | None:
    try:
        data: dict[str, object] = json.loads(lay.status.read_text())
        return data
    except (OSError, ValueError):
        return None
