"""The cluster supervisor: runs STATE/plan.json's processes, restarts them, stops them in order.

It is started detached by `up`, inherits the state dir's flock (so the lock lives exactly as
long as the cluster), and writes STATE/status.json whenever something changes so `up` can show
progress and notice a component that never comes up. SIGTERM stops everything in reverse
start order, each with its grace period, then the supervisor exits and the lock is released.

Usage: python -m tollway.devcluster.supervise --state-dir DIR
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from tollway.devcluster import layout as L
from tollway.devcluster import plan as P
from tollway.devcluster import procs

# A component that dies this many times in a row before it was ever ready has failed: `up`
# reports it (with its log) instead of waiting out its timeout.
FAILED_AFTER = 4


def backoff(consecutive_failures: int) -> float:
    """Seconds before restart number n: 0.5, 1, 2, 4 ... capped at 30 (kubelet-like)."""
    return float(min(30.0, 0.5 * 2 ** max(0, consecutive_failures - 1)))


@dataclass
class Slot:
    comp: P.Component
    proc: subprocess.Popen[bytes] | None = None
    ever_ready: bool = False
    restarts: int = 0
    failures: int = 0  # consecutive exits
    next_start: float = 0.0
    last_exit: int | None = None


def check_ready(spec: str, lay: L.Layout) -> bool:
    if not spec:
        return True
    kind, _, target = spec.partition(":")
    try:
        if kind == "tcp":
            host, _, port = target.rpartition(":")
            with socket.create_connection((host, int(port)), timeout=1):
                return True
        if kind in ("http", "https"):
            u = urlsplit(target)
            conn: http.client.HTTPConnection
            if kind == "https":
                ctx = ssl.create_default_context(cafile=str(lay.pki / "ca.crt"))
                ctx.load_cert_chain(lay.pki / "admin.crt", lay.pki / "admin.key")
                conn = http.client.HTTPSConnection(u.hostname or "", u.port, context=ctx,
                                                   timeout=2)
            else:
                conn = http.client.HTTPConnection(u.hostname or "", u.port, timeout=2)
            try:
                conn.request("GET", u.path)
                return conn.getresponse().status == 200
            finally:
                conn.close()
    except (OSError, ssl.SSLError, http.client.HTTPException):
        return False
    raise ValueError(f"plan.json: ready check {spec!r} is not tcp:, http: or https:")


class Supervisor:
    def __init__(self, lay: L.Layout) -> None:
        self.lay = lay
        rows = json.loads(lay.plan.read_text())
        self.slots = [Slot(c) for c in P.from_json(rows)]
        self.stopping = False

    def status(self) -> None:
        data = {
            "supervisor_pid": os.getpid(),
            "stopping": self.stopping,
            "components": {
                s.comp.name: {
                    "pid": s.proc.pid if s.proc and s.proc.poll() is None else None,
                    "ready": s.ever_ready,
                    "restarts": s.restarts,
                    "last_exit": s.last_exit,
                    "failed": s.failures >= FAILED_AFTER and not s.ever_ready,
                    "log": str(self.lay.log(s.comp.name)),
                } for s in self.slots
            },
        }
        tmp = self.lay.status.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self.lay.status)

    def start(self, s: Slot) -> None:
        log = open(self.lay.log(s.comp.name), "ab")  # noqa: SIM115 (owned by the child)
        log.write(f"--- tollway supervisor: start #{s.restarts + 1} at "
                  f"{time.strftime('%H:%M:%S')}: {' '.join(s.comp.argv)}\n".encode())
        log.flush()
        try:
            s.proc = subprocess.Popen(s.comp.argv, stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, cwd=self.lay.root,
                                      start_new_session=True)
        except OSError as exc:
            log.write(f"--- tollway supervisor: cannot start: {exc}\n".encode())
            s.failures += 1
            s.next_start = time.monotonic() + backoff(s.failures)
        else:
            procs.write_pidfile(self.lay.pidfile(s.comp.name), s.proc.pid)
        finally:
            log.close()

    def ready_names(self) -> set[str]:
        return {s.comp.name for s in self.slots if s.ever_ready}

    def step(self) -> bool:
        """One pass: reap, restart, start, probe. True when something changed."""
        changed = False
        now = time.monotonic()
        ready = self.ready_names()
        for s in self.slots:
            if s.proc is not None and s.proc.poll() is not None:
                s.last_exit = s.proc.returncode
                s.proc = None
                s.failures += 1
                s.restarts += 1
                s.next_start = now + backoff(s.failures)
                self.lay.pidfile(s.comp.name).unlink(missing_ok=True)
                changed = True
            if s.proc is None and now >= s.next_start and (
                    s.ever_ready or all(a in ready for a in s.comp.after)):
                self.start(s)
                changed = True
            if s.proc is not None and not s.ever_ready and check_ready(s.comp.ready, self.lay):
                s.ever_ready = True
                changed = True
            if s.proc is not None and s.ever_ready and s.failures and \
                    now >= s.next_start + 60:
                s.failures = 0  # a minute up since the last restart: reset the backoff
        return changed

    def stop_all(self) -> None:
        self.stopping = True
        self.status()
        for s in reversed(self.slots):
            if s.proc is not None and s.proc.poll() is None:
                procs.terminate(s.proc.pid, s.comp.grace, group=True)
                s.proc.wait()
            self.lay.pidfile(s.comp.name).unlink(missing_ok=True)
        self.status()

    def run(self) -> None:
        def on_term(signum: int, frame: object) -> None:
            self.stopping = True

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        self.status()
        while not self.stopping:
            if self.step():
                self.status()
            time.sleep(0.3)
        self.stop_all()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m tollway.devcluster.supervise")
    ap.add_argument("--state-dir", required=True)
    args = ap.parse_args(argv)
    lay = L.Layout.at(args.state_dir)
    procs.write_pidfile(lay.pidfile("supervisor"), os.getpid())
    try:
        Supervisor(lay).run()
    finally:
        lay.pidfile("supervisor").unlink(missing_ok=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
