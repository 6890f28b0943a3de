"""Peak RSS of one `python -m tollway.proxy` by config size: the issue's shape (100 routes,
20 clusters, a regex route, an AuthorizationPolicy on an inbound listener: RE2 loaded),
then 1,000 and 10,000 routes, after serving requests through routes at the start, the
middle and the end of the table.

  python bench/rss.py [--routes 100,1000,10000] [--clusters 20] [--requests 2000]

Prints one line per size: peak RSS (VmHWM) and RSS at the end, in MB, and which build ran
(TOLLWAY_PURE=1 measures the pure-Python one). "anonymous" is the part of RSS that is this
process's own (RssAnon: the Python heap); the rest is shared-library text, which every
sidecar on a node maps from the same page cache. The upstream is a small in-process
HTTP/1.1 server (keep-alive, 100-byte body), so the proxy's pools and metrics fill as
they do under load.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tollway_snapshot import build

from tollway import native
from tollway.snapshot import codec

ROOT = Path(__file__).resolve().parent.parent
BODY = b"x" * 100
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nContent-Type: text/plain\r\n\r\n" + BODY


def _upstream() -> int:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)

    def serve(conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                while b"\r\n\r\n" in buf:
                    _, buf = buf.split(b"\r\n\r\n", 1)
                    conn.sendall(ANSWER)

    def accept() -> None:
        while True:
            conn, _ = srv.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return int(srv.getsockname()[1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon"):
            out[key] = int(value.split()[0])  # kB
    return out


def _requests(port: int, paths: list[str], n: int) -> None:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    with s:
        for i in range(n):
            path = paths[i % len(paths)]
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: backend\r\n\r\n".encode())
            data = b""
            while not data.endswith(BODY) and b"content-length: 0" not in data.lower():
                chunk = s.recv(65536)
                if not chunk:
                    raise RuntimeError(f"the proxy closed the connection: {data[:200]!r}")
                data += chunk


def measure(routes: int, clusters: int, requests: int, upstream: int
            ) -> tuple[float, float, float]:
    port, inbound = _free_port(), _free_port()
    cfg = build(f"127.0.0.1:{upstream}", port, routes, clusters, False, True, inbound)
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as f:
        f.write(codec.encode(cfg))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tollway.proxy", "--config", f.name, "--admin-port", "0"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"proxy did not start: {proc.stderr.read()!r}") from None
                time.sleep(0.05)
        mid = max(0, routes // 2 - 1)
        last = max(0, routes - 2)
        paths = ["/", f"/api/r{mid}/x", f"/api/r{last}/y", "/api/v1/items/abc-1"]
        _requests(port, paths, requests)
        _requests(inbound, ["/api/x", "/api/y"], max(200, requests // 10))
        st = _status(proc.pid)
        return st["VmHWM"] / 1024, st["VmRSS"] / 1024, st["RssAnon"] / 1024
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        os.unlink(f.name)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--routes", default="100,1000,10000")
    ap.add_argument("--clusters", type=int, default=20)
    ap.add_argument("--requests", type=int, default=2000)
    a = ap.parse_args()
    upstream = _upstream()
    print(f"build: {native.describe()}")
    first: tuple[float, int] | None = None
    for n in (int(x) for x in a.routes.split(",")):
        peak, rss, anon = measure(n, a.clusters, a.requests, upstream)
        grow = "" if first is None else f" (+{peak - first[0]:.1f} MB over {first[1]} routes)"
        if first is None:
            first = (peak, n)
        print(f"{n:>6} routes, {a.clusters} clusters, regex route, authz policy: "
              f"peak RSS {peak:.1f} MB, RSS {rss:.1f} MB (anonymous {anon:.1f}){grow}",
              flush=True)


if __name__ == "__main__":
    main()
