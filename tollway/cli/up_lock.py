"""One `tollway up` per state dir: an fcntl lock on STATE/up.lock, naming its holder.

Two `up`s sharing a state dir would share members.json and restart each other's
replicas. The kernel drops the lock when its holder dies (however it dies), so a stale
lock cannot block the next start; the file only tells the second one who holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import IO

LOCK_FILE = "up.lock"


class AlreadyRunning(Exception):
    def __init__(self, pid: int | None, api: str | None) -> None:
        super().__init__(pid, api)
        self.pid = pid
        self.api = api


def hold(state_dir: Path, api: str, folder: Path) -> IO[str]:
    """Take the lock (kept while the returned file stays open) or raise AlreadyRunning."""
    state_dir.mkdir(parents=True, exist_ok=True)
    handle = open(state_dir / LOCK_FILE, "a+")  # noqa: SIM115 - held for the process' life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        info: dict[str, object] = {}
        with contextlib.suppress(ValueError):
            info = json.loads(handle.read() or "{}")
        handle.close()
        pid = info.get("pid")
        raise AlreadyRunning(pid if isinstance(pid, int) else None,
                             str(info["api"]) if info.get("api") else None) from None
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "api": api, "folder": str(folder)}))
    handle.flush()
    return handle
