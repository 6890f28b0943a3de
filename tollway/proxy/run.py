"""Run a ProxyServer as a process: signals, the ready line, drain, SO_REUSEPORT workers.

Kept free of the CLI framework and of the config/control layers so a sidecar process
imports only the proxy, the snapshot types and the kit (small RSS, quick start);
`tollway proxy` prepares the snapshot and then execs `python -m tollway.proxy`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

from tollway.snapshot import codec, types

if TYPE_CHECKING:
    import subprocess


async def serve(
    cfg: types.ProxyConfig | None,
    *,
    admin_port: int,
    access_log: bool,
    reuse_port: bool,
    serve_admin: bool,
    follow: dict[str, Any] | None,
    worker: int,
    status: tuple[int, dict[str, Any]] | None = None,
    drain_seconds: float = 0.0,
) -> int:
    """Serve until SIGTERM/SIGINT, then drain. Returns the process exit code.

    `drain_seconds` (a pod's sidecar: Istio's terminationDrainDuration, 5 s): after the
    signal the proxy first keeps serving that long, not ready and closing keep-alive
    connections after their responses (`ProxyServer.discourage`), while the control
    plane tells the other proxies this endpoint is gone; only then does it stop
    listening. Stopping at once refused, or reset, what they were still sending here
    (503 "connection termination" seen by a client on the cluster when a rollout
    replaced the pod). A second signal skips the rest of the wait."""
    from tollway.proxy.main import ProxyServer
    from tollway.snapshot.codec import SnapshotError

    server = ProxyServer(
        None,
        admin_port=admin_port,
        access_log=sys.stdout if access_log else None,
        reuse_port=reuse_port,
        serve_admin=serve_admin,
    )
    try:
        await server.start()
        if cfg is not None:
            server.apply(cfg)
            await server.wait_serving()
    except SnapshotError as exc:
        await server.close()
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    except OSError as exc:
        await server.close()
        print(
            f"error: cannot listen on admin port {admin_port}: {exc.strerror}; "
            "pick another with --admin-port.",
            file=sys.stderr,
            flush=True,
        )
        return 1
    status_server = None
    if status is not None:  # a pod's status port: readiness and the app's probes
        from tollway.proxy.status import StatusServer

        admin = server.admin
        status_server = StatusServer(lambda: server.ready, status[1],
                                     metrics=admin.prometheus if admin is not None else None)
        try:
            await status_server.start("0.0.0.0", status[0])
        except OSError as exc:
            await server.close()
            print(f"error: cannot listen on status port {status[0]}: {exc.strerror}; "
                  "pick another with --status-port.", file=sys.stderr, flush=True)
            return 1
    import gc

    gc.collect()
    gc.freeze()  # what start-up allocated is never scanned again by the cyclic GC
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks: list[asyncio.Task[Any]] = []
    if follow is not None:
        from tollway.proxy import subscriber

        admin = "{}:{}".format(*server.admin_address)
        tasks.append(  # VM mode: register, get the workload certificate, follow
            loop.create_task(
                subscriber.join(server, follow["url"], follow["node"], admin=admin,
                                inbound=follow.get("inbound"), ports=follow.get("ports"),
                                address=follow.get("address"), token=follow.get("token"))
            )
        )
    listeners = " ".join(
        "{}={}:{}".format(name, *server.listener_address(name)) for name in server.bound
    )
    who = f"worker {worker} " if worker else ""
    admin_text = "{}:{}".format(*server.admin_address) if serve_admin else "-"
    print(
        f"tollway proxy {who}ready: {listeners or '(no listeners yet)'} admin={admin_text} "
        f"version={server.version}",
        flush=True,
    )
    await stop.wait()
    if drain_seconds > 0:
        server.discourage()
        stop.clear()
        try:
            await asyncio.wait_for(stop.wait(), drain_seconds)
        except TimeoutError:
            pass
    for t in tasks:
        t.cancel()
    if status_server is not None:
        await status_server.close()
    await server.drain(server.limits.drain_timeout)
    return 0


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's help layout with the terminal width read through `os`: the stock
    formatter imports `shutil` for it (with bz2 and lzma, ~0.3 MB of RSS a sidecar would
    keep for its whole life only to size a --help it never prints)."""

    def __init__(self, prog: str) -> None:
        try:
            columns = int(os.environ.get("COLUMNS", "0")) or os.get_terminal_size(1).columns
        except (ValueError, OSError):
            columns = 80
        super().__init__(prog, width=max(columns, 40) - 2)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m tollway.proxy", formatter_class=_HelpFormatter)
    ap.add_argument("--config", help="snapshot JSON file")
    ap.add_argument("--admin-port", type=int, default=15000)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--worker-index", type=int, default=0)
    ap.add_argument("--access-log", action="store_true")
    ap.add_argument("--control-plane")
    ap.add_argument("--workload")
    ap.add_argument("--namespace", default="default")
    ap.add_argument("--node-name")
    ap.add_argument("--token-file", help="this workload's credential (`tollway token create`)")
    ap.add_argument("--service-account", default="default")
    ap.add_argument("--label", action="append", default=[], help="KEY=VALUE (repeatable)")
    ap.add_argument("--address", help="address other proxies reach this one at")
    ap.add_argument("--inbound-port", type=int, help="inbound listener (mTLS from the mesh)")
    ap.add_argument("--app-port", type=int, help="the local app the inbound forwards to")
    ap.add_argument("--service-port", type=int, help="the service port the app serves")
    ap.add_argument("--outbound-port", type=int, help="outbound listener for the local app")
    ap.add_argument("--capture-port", type=int,
                    help="in a pod: the port capture redirects inbound to (0.0.0.0)")
    ap.add_argument("--status-port", type=int,
                    help="in a pod: readiness and the app's rewritten probes (0.0.0.0)")
    ap.add_argument("--drain-seconds", type=float, default=0.0,
                    help="after SIGTERM, keep serving this long (keep-alive off) before "
                    "closing the listeners (a pod's sidecar: 5)")
    ap.add_argument("--delete-config", action="store_true", help=argparse.SUPPRESS)
    return ap


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8  # glibc's mallopt params


def tune_malloc() -> None:
    """glibc malloc settings for the sidecar process (called first by `main`; benches
    that run a ProxyServer as a sidecar call it too).

    - One arena: libuv's worker threads would each get an arena of their own (RSS).
    - Blocks up to 1 MiB from the heap, not from mmap: uvloop's TLS reads ask for a
      256 KiB buffer per read (SSLObject.read(256 KiB)) and shrink it to the few hundred
      bytes a record holds. From mmap that was an mmap, an mremap and a munmap for every
      TLS read, ~12% of an mTLS sidecar's CPU per request; from the heap the same block
      is reused. Setting the threshold turns off glibc's own adjustment of it (which never
      kicked in here: the shrunken block is freed small), hence the trim threshold beside
      it, so that the heap is not shrunk and regrown around that block either. Only the
      pages written count in RSS (a record's worth of the 256 KiB).
    """
    try:
        import ctypes

        mallopt = ctypes.CDLL("libc.so.6").mallopt
        mallopt(M_ARENA_MAX, 1)
        mallopt(M_MMAP_THRESHOLD, 1024 * 1024)
        mallopt(M_TRIM_THRESHOLD, 4 * 1024 * 1024)
    except (OSError, AttributeError):  # not glibc: its defaults
        pass


def main(argv: list[str] | None = None) -> int:
    tune_malloc()
    args = parser().parse_args(argv)
    cfg = None
    if args.config:
        try:
            with open(args.config, "rb") as f:
                cfg = codec.decode(f.read())
        except (OSError, codec.SnapshotError) as exc:
            print(f"error: {args.config}: {exc}", file=sys.stderr)
            return 1
    follow = None
    if args.control_plane:
        node = types.Node(
            name=args.node_name or f"{args.workload}.{args.namespace}",
            workload=args.workload or "",
            namespace=args.namespace,
            service_account=args.service_account,
            labels=dict(item.split("=", 1) for item in args.label if "=" in item),
        )
        if not args.token_file:
            print("error: --control-plane needs --token-file FILE: the workload credential "
                  "from `tollway token create --namespace NS --service-account SA`.",
                  file=sys.stderr)
            return 2
        from tollway.proxy import credential

        token = credential.from_file(args.token_file)
        try:
            token()
        except OSError as exc:
            print(f"error: --token-file {args.token_file}: {exc}", file=sys.stderr)
            return 2
        follow = {"url": args.control_plane, "node": node, "token": token, **vm_ports(args)}
    if cfg is None and follow is None:
        print("error: give --config FILE or --control-plane URL.", file=sys.stderr)
        return 2
    status = None
    if args.status_port:
        from tollway.proxy import status as status_mod

        try:
            status = (args.status_port, status_mod.probers_from_env(os.environ))
        except status_mod.ProberError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    workers = max(1, args.workers)
    children = (
        spawn_workers(argv if argv is not None else sys.argv[1:], workers)
        if workers > 1 and args.worker_index == 0
        else []
    )
    import uvloop

    try:
        code = uvloop.run(
            serve(
                cfg,
                admin_port=args.admin_port,
                access_log=args.access_log,
                reuse_port=workers > 1,
                serve_admin=args.worker_index == 0,
                follow=follow,
                worker=args.worker_index,
                status=status if args.worker_index == 0 else None,
                drain_seconds=max(0.0, args.drain_seconds),
            )
        )
    finally:
        stop_workers(children)
        if args.delete_config and args.config and args.worker_index == 0:
            try:
                os.unlink(args.config)
            except OSError:
                pass
    return int(code)


def vm_ports(args: argparse.Namespace) -> dict[str, Any]:
    """What a VM proxy registers besides its node: ports, inbound host:port, address."""
    ports = {key: value for key, value in (
        ("inbound", args.inbound_port), ("app", args.app_port),
        ("service_port", args.service_port), ("outbound", args.outbound_port),
        ("capture", args.capture_port), ("status", args.status_port),
    ) if value}
    address = args.address or "127.0.0.1"
    inbound = f"{address}:{args.inbound_port}" if args.inbound_port else None
    return {"ports": ports, "inbound": inbound, "address": address}


def spawn_workers(argv: list[str], n: int) -> list[subprocess.Popen[bytes]]:
    """Workers 1..n-1: the same command line; the kernel spreads connections (REUSEPORT)."""
    import subprocess

    clean = [a for a in argv if a != "--delete-config"]
    return [
        subprocess.Popen([sys.executable, "-m", "tollway.proxy", *clean, "--worker-index", str(i)])
        for i in range(1, n)
    ]


def stop_workers(children: list[subprocess.Popen[bytes]]) -> None:
    import subprocess

    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()
