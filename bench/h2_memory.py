"""Memory of the HTTP/2 downstream: RSS per idle h2 connection and per open stream.

Starts `python -m tollway.proxy` on the bench snapshot in front of a backend that never
answers (a socket that accepts and reads), opens N idle HTTP/2 connections (preface and
SETTINGS exchanged), then N streams on one connection, and prints the proxy's RSS growth
per item from /proc/PID/status.

  python bench/h2_memory.py [--n 500]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "proxy" / "http2"))

from h2client import H2Client
from tollway_snapshot import build

from tollway.snapshot import codec


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def silent_backend() -> tuple[socket.socket, int]:
    """Accepts connections and reads requests, never answers: streams stay open."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4096)
    held: list[socket.socket] = []

    def loop() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=loop, daemon=True).start()
    return srv, srv.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    args = ap.parse_args()
    _, backend = silent_backend()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as cfg:
        cfg.write(codec.encode(build(f"127.0.0.1:{backend}", port, 1, 2, False)))
    proc = subprocess.Popen([sys.executable, "-m", "tollway.proxy", "--config", cfg.name,
                             "--admin-port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # the ready line
        warm = H2Client(("127.0.0.1", port))
        warm.request("/warm")
        time.sleep(0.5)
        base = rss_kib(proc.pid)
        conns = []
        for _ in range(args.n):
            c = H2Client(("127.0.0.1", port))
            c.sock.settimeout(5)
            c.read_once()  # the proxy's SETTINGS: the connection is set up on its side
            conns.append(c)
        time.sleep(1.0)
        idle = rss_kib(proc.pid)
        one = H2Client(("127.0.0.1", port), settings={4: 0})
        n = min(args.n, 100)  # the proxy's SETTINGS_MAX_CONCURRENT_STREAMS
        for i in range(n):
            one.request(f"/open/{i}")
        time.sleep(2.0)
        streams = rss_kib(proc.pid)
        print(f"idle HTTP/2 connections: {(idle - base) / args.n:.1f} KiB each "
              f"({args.n} connections, RSS {base} -> {idle} KiB)")
        print(f"open streams (request sent upstream, no answer yet): "
              f"{(streams - idle) / n:.1f} KiB each ({n} streams, RSS {idle} -> {streams} KiB)")
    finally:
        proc.terminate()
        try:
            proc.wait(30)  # drain waits for the open streams (drain_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        Path(cfg.name).unlink()


if __name__ == "__main__":
    main()
