"""Root's tool folders on PATH, so the iptables and ip a host has are found.

A root process can start with a user's PATH (`env -i`, cron, `su` without `-`), which has no
/usr/sbin: Debian installs iptables there, and preflight then said "`iptables` is not
installed" on a host that has it. sudo's secure_path adds these folders; this does the same
for what runs as root without sudo. They go last, and only the ones that exist: root-owned
system folders, never ahead of what the caller chose.
"""

from __future__ import annotations

import os

SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def ensure_on_path() -> None:
    parts = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    missing = [d for d in SBIN if d not in parts and os.path.isdir(d)]
    if missing:
        os.environ["PATH"] = os.pathsep.join(parts + missing)
