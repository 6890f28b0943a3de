"""The IO edge of capture: hand the rules to `iptables-restore` in this network namespace.

Fails closed: a missing `iptables-restore`, a kernel without the nat/owner/REDIRECT
matches, or chains that already exist (rules installed twice) is an error with one
sentence, and iptables-restore commits the table atomically, so nothing is half-applied.
`--noflush` keeps whatever else the namespace's nat table holds (never wipe a host's
kube-proxy rules because this ran in the wrong namespace).
"""

from __future__ import annotations

import shutil
import subprocess

from tollway.capture.rules import Capture, restore_text


class ApplyError(RuntimeError):
    """The rules were not installed; the message says why and what to do."""


def apply(capture: Capture, *, binary: str = "iptables-restore", netns: str | None = None) -> None:
    """Install `capture`'s rules with iptables-restore; raise ApplyError otherwise.

    `netns`: a named network namespace to install them in (`ip netns exec`), as
    `tollway up --intercept` does for each replica; None: the caller's own (a pod's init
    container)."""
    path = shutil.which(binary)
    if path is None:
        raise ApplyError(
            f"{binary} is not installed, so traffic cannot be captured; install the "
            "iptables package (apt-get install iptables) in the init container's image."
        )
    try:
        done = subprocess.run(
            [*(["ip", "netns", "exec", netns] if netns else []), path, "--noflush", "--wait"],
            input=restore_text(capture), text=True,
            capture_output=True, timeout=60, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ApplyError(f"{binary} could not run: {exc}.") from None
    if done.returncode != 0:
        detail = " ".join(done.stderr.split()) or f"exit status {done.returncode}"
        if "exists" in detail:
            raise ApplyError(
                "the ISTIO_* chains already exist in this network namespace's nat table: "
                "interception is installed already (nothing was changed)."
            )
        raise ApplyError(
            f"{binary} refused the rules ({detail}); it needs root with NET_ADMIN and "
            "NET_RAW in the pod's network namespace (nothing was changed)."
        )
