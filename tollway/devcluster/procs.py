"""Pid files that survive a crash without ever killing a recycled pid.

A pid file holds "PID STARTTIME" (field 22 of /proc/PID/stat, clock ticks since boot): a
later process that reuses the pid has another start time, so `down` leaves it alone.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    rest = stat.rsplit(")", 1)[1].split()
    return int(rest[19])  # field 22 overall; rest starts at field 3


def write_pidfile(path: Path, pid: int) -> None:
    st = start_time(pid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{pid} {st if st is not None else 0}\n")


def read_pidfile(path: Path) -> int | None:
    """The pid in `path` if that very process still runs, else None."""
    try:
        fields = path.read_text().split()
        pid, st = int(fields[0]), int(fields[1])
    except (OSError, ValueError, IndexError):
        return None
    return pid if start_time(pid) == st else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it has finished for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def terminate(pid: int, grace: float, *, group: bool = False) -> None:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL (the whole group when asked)."""
    def send(sig: signal.Signals) -> None:
        (os.killpg if group else os.kill)(pid, sig)

    try:
        send(signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.1)
    try:
        send(signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_pidfiles(folder: Path) -> int:
    """SIGKILL every still-running process named by a pid file under `folder`; count them."""
    n = 0
    if not folder.is_dir():
        return 0
    for pf in sorted(folder.rglob("*.pid")):
        pid = read_pidfile(pf)
        if pid is not None:
            try:
                if os.getpgid(pid) == pid:  # a session leader: take its children too
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)
                n += 1
            except (ProcessLookupError, PermissionError):
                pass
        pf.unlink(missing_ok=True)
    return n
