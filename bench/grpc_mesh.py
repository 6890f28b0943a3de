"""gRPC through two sidecars: the sidecars' CPU per call, for one or more source trees in
one run (a same-run before/after of a change, as h2_compare.sh's BASE does for h2).

Per tree: an outbound sidecar (HTTP/2 pool to the next hop: proxy/h2/client.py) and an
inbound sidecar (HTTP/2 pool to the app), each `python -m tollway.proxy` run from that
tree's directory with its own build (compiled when its .so files match its sources). All
trees share one backend, the grpc-canary example's greeter (real grpcio). h2load sends
unary gRPC calls (a framed StringValue, content-type application/grpc, te: trailers) to
each tree's outbound sidecar in turn, interleaved over --reps; the figure is the two
sidecars' CPU time (utime + stime from /proc) over a run divided by the calls answered,
per sidecar and together, medians over the reps, and every tree's ratio to the first.
CPU per call is what a shared, loaded host disturbs least; req/s is printed for
information only (the Python backend bounds it).

  python bench/grpc_mesh.py [--tree NAME=DIR ...] [--requests 20000] [--conns 4]
                            [--streams 10] [--reps 3]

Without --tree, this tree alone ("tollway"). Needs h2load (nghttp2-client) and grpcio.
Every process it starts is stopped, by PID, on exit.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tollway.snapshot import codec, types

ROOT = Path(__file__).resolve().parents[1]
GREETER = ROOT / "examples" / "grpc-canary" / "greeter.py"
SERVICE = "greeter.default.svc.cluster.local"
CALL = b"\x00\x00\x00\x00\x06\x0a\x04mesh"  # one framed StringValue("mesh")
HZ = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{what} does not listen on port {port} after {timeout:.0f} s")


def sidecars(in_port: int, out_port: int, app_port: int) -> tuple[bytes, bytes]:
    """(inbound, outbound) snapshots: out -> in -> app, HTTP/2 on both hops, metrics on."""
    app = types.Cluster(name="inbound|50051||", service=SERVICE, port=app_port,
                        protocol="http2",
                        endpoints=(types.Endpoint(address="127.0.0.1", port=app_port),))
    inbound = types.ProxyConfig(
        version="bench", node=types.Node(name="greeter-0", workload="greeter",
                                         labels={"app": "greeter", "version": "v1"}),
        listeners=(types.Listener(name="in", kind="inbound", address="127.0.0.1",
                                  port=in_port, route_table="in", service_port=50051),),
        route_tables=(_table("in", app.name),), clusters=(app,))
    hop = types.Cluster(name=f"outbound|50051||{SERVICE}", service=SERVICE, port=50051,
                        protocol="http2", service_name="greeter", service_namespace="default",
                        endpoints=(types.Endpoint(address="127.0.0.1", port=in_port,
                                                  labels={"app": "greeter", "version": "v1"},
                                                  workload="greeter"),))
    outbound = types.ProxyConfig(
        version="bench", node=types.Node(name="client-0", workload="client",
                                         labels={"app": "client"}),
        listeners=(types.Listener(name="out", kind="outbound", address="127.0.0.1",
                                  port=out_port, route_table="out"),),
        route_tables=(_table("out", hop.name),), clusters=(hop,))
    return codec.encode(inbound), codec.encode(outbound)


def _table(name: str, cluster: str) -> types.RouteTable:
    route = types.Route(clusters=(types.WeightedCluster(cluster=cluster, weight=100),))
    return types.RouteTable(name=name, virtual_hosts=(
        types.VirtualHost(name="vh", domains=("*",), routes=(route,)),))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ  # utime, stime


class Processes:
    """What this bench started; all stopped by PID at the end."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, cmd: list[str], cwd: Path, env: dict[str, str]
              ) -> subprocess.Popen[bytes]:
        log = open(self.work / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        p = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **env}, stdout=log,
                             stderr=subprocess.STDOUT)
        self.started.append(p)
        return p

    def stop(self) -> None:
        for p in self.started:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.started:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def run_h2load(h2load: str, port: int, body: Path, a: argparse.Namespace
               ) -> tuple[int, float]:
    out = subprocess.run(
        [h2load, "-n", str(a.requests), "-c", str(a.conns), "-m", str(a.streams),
         "-d", str(body), "-H", "content-type: application/grpc", "-H", "te: trailers",
         f"http://127.0.0.1:{port}/greeter.Greeter/SayHello"],
        capture_output=True, text=True, timeout=600).stdout
    if os.environ.get("H2LOAD_SHOW"):
        print(out, file=sys.stderr)
    done = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out)
    rps = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    if done is None or rps is None:
        sys.exit(f"h2load's output is not what this bench reads:\n{out}")
    return int(done.group(1)), float(rps.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", action="append", default=[], metavar="NAME=DIR")
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--streams", type=int, default=10)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    h2load = shutil.which("h2load")
    if h2load is None:
        sys.exit("h2load is not installed (apt-get install nghttp2-client)")
    trees = [(t.split("=", 1)[0], Path(t.split("=", 1)[1]).resolve()) for t in a.tree] or [
        ("tollway", ROOT)]
    work = Path(tempfile.mkdtemp(prefix="tollway-grpc-mesh."))
    procs = Processes(work)
    try:
        app_port = free_port()
        procs.start("greeter", [sys.executable, str(GREETER)], ROOT,
                    {"PORT": str(app_port), "VERSION": "v1"})
        wait_port(app_port, "the greeter")
        pids: dict[str, tuple[int, int, int]] = {}  # tree -> (outbound port, out pid, in pid)
        for name, tree in trees:
            in_port, out_port = free_port(), free_port()
            snap_in, snap_out = sidecars(in_port, out_port, app_port)
            pair = []
            for side, snap in (("out", snap_out), ("in", snap_in)):
                cfg = work / f"{name}-{side}.json"
                cfg.write_bytes(snap)
                # run from the tree: `python -m` puts the working directory first
                pair.append(procs.start(f"{name}-{side}", [
                    sys.executable, "-m", "tollway.proxy", "--config", str(cfg),
                    "--admin-port", "0"], tree, {"PYTHONPATH": str(tree)}).pid)
            for port in (in_port, out_port):
                wait_port(port, f"{name}'s sidecar")
            build = subprocess.run(
                [sys.executable, "-c", "import tollway.native as n; n.install(); "
                 "print(n.describe())"], cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)},
                capture_output=True, text=True).stdout.strip()
            print(f"{name}: {tree} ({build})", file=sys.stderr)
            pids[name] = (out_port, pair[0], pair[1])
        body = work / "call.bin"
        body.write_bytes(CALL)
        for name, _ in trees:  # warm-up: connections, imports, first snapshots
            run_h2load(h2load, pids[name][0], body, argparse.Namespace(
                requests=2000, conns=a.conns, streams=a.streams))
        rows: dict[str, list[tuple[float, float, float]]] = {n: [] for n, _ in trees}
        for rep in range(a.reps):
            for name, _ in trees:
                port, out_pid, in_pid = pids[name]
                before = cpu_seconds(out_pid), cpu_seconds(in_pid)
                ok, rps = run_h2load(h2load, port, body, a)
                after = cpu_seconds(out_pid), cpu_seconds(in_pid)
                if ok < a.requests:
                    sys.exit(f"{name}: only {ok} of {a.requests} calls succeeded")
                out_us = (after[0] - before[0]) * 1e6 / ok
                in_us = (after[1] - before[1]) * 1e6 / ok
                rows[name].append((out_us, in_us, rps))
                print(f"rep {rep + 1} {name}: outbound {out_us:.0f} us/call, inbound "
                      f"{in_us:.0f} us/call, {rps:.0f} calls/s", file=sys.stderr)
        first = trees[0][0]
        base = statistics.median(o + i for o, i, _ in rows[first])
        print(f"medians of {a.reps} runs of {a.requests} unary calls "
              f"(-c {a.conns} -m {a.streams}); CPU us per call")
        for name, _ in trees:
            out_us = statistics.median(r[0] for r in rows[name])
            in_us = statistics.median(r[1] for r in rows[name])
            both = statistics.median(o + i for o, i, _ in rows[name])
            rps = statistics.median(r[2] for r in rows[name])
            print(f"{name}: outbound {out_us:.0f}, inbound {in_us:.0f}, both {both:.0f} "
                  f"({both / base:.3f}x {first}); {rps:.0f} calls/s")
        return 0
    finally:
        procs.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
