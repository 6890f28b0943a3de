"""Run build.sh with visible progress: step lines as they come, a heartbeat while Go compiles.

A cold build takes tens of minutes on two cores; `go build` itself prints nothing while it
compiles, so a line every 15 s says what is being built and for how long. The full output
goes to a log file for when something fails.
"""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

SCRIPT = Path(__file__).with_name("build.sh")
HEARTBEAT = 15.0


class BuildError(RuntimeError):
    pass


def bin_dir() -> Path:
    out = subprocess.run(["bash", str(SCRIPT), "--bin-dir"], capture_output=True, text=True,
                         check=True)
    return Path(out.stdout.strip())


BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy",
            "kubectl", "coredns", "helm")


def fmt(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def ensure(log_path: Path, say: Callable[[str], None]) -> Path:
    """Build whatever is missing (a warm cache returns at once); return the bin folder."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    lines: queue.Queue[str | None] = queue.Queue()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(["bash", str(SCRIPT)], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        assert proc.stdout is not None
        out = proc.stdout

        def pump() -> None:
            for line in out:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        current, downloads, last_said = "checking the binary cache", 0, time.monotonic()
        tail: list[str] = []
        while True:
            try:
                line = lines.get(timeout=1.0)
            except queue.Empty:
                line = ""
            if line is None:
                break
            if line:
                log.write(line)
                tail = [*tail[-29:], line.rstrip()]
                if line.startswith("build: "):
                    current = line.split("] ", 1)[-1].strip()
                    say(f"  {line.strip()}")
                    last_said = time.monotonic()
                elif line.startswith("go: downloading"):
                    downloads += 1
            if time.monotonic() - last_said >= HEARTBEAT:
                extra = f", {downloads} modules downloaded" if downloads else ""
                say(f"  build: still {current} ({fmt(time.monotonic() - started)} elapsed{extra})")
                last_said = time.monotonic()
        rc = proc.wait()
    if rc != 0:
        raise BuildError("building the Kubernetes binaries failed (full log: "
                         f"{log_path}); last lines:\n" + "\n".join(tail))
    bins = bin_dir()
    missing = [b for b in BINARIES if not (bins / b).exists()]
    if missing:
        raise BuildError(f"build.sh finished but {', '.join(missing)} is missing from {bins}")
    return bins
