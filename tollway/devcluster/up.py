"""`up`: build or reuse the binaries, mint PKI, plumb the bridge, start the supervisor, wait.

The supervisor is started detached and inherits the state dir's flock, so a second `up` on
the same dir is refused for exactly as long as the cluster lives. `up` itself only watches
STATE/status.json and the API, printing each component as it becomes ready, until the node
reports Ready; on any failure it prints the failing component's log tail and tears down.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from tollway.devcluster import build, hostnet, pki, teardown
from tollway.devcluster import layout as L
from tollway.devcluster import plan as P
from tollway.devcluster.childenv import child_env
from tollway.plumbing import sbin

READY_TIMEOUT = 300.0
FIELD_MANAGER = "tollway-dev-cluster"


class UpError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pick_ports() -> P.Ports:
    return P.Ports(*(free_port() for _ in range(8)))


def take_lock(lay: L.Layout) -> IO[str]:
    try:
        lay.root.mkdir(parents=True, exist_ok=True)
        lk = open(lay.lock, "a+")  # noqa: SIM115 (handed to the supervisor)
    except OSError as exc:
        raise UpError(f"cannot use {lay.root} as the state dir ({exc.strerror}); pick a "
                      "writable one with --state-dir") from None
    try:
        fcntl.flock(lk, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lk.close()
        raise UpError(f"a dev cluster is already running from {lay.root} (its supervisor "
                      f"holds {lay.lock}); use it, or stop it with "
                      f"`tollway dev cluster down --state-dir {lay.root}`") from None
    return lk


def require_root() -> None:
    if os.geteuid() != 0:
        raise UpError("root is needed: a dev cluster manages a bridge, network "
                      "namespaces and iptables rules; run it with sudo")


def preflight(lay: L.Layout) -> None:
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            raise UpError(f"`{tool}` is not installed; apt-get install iproute2 iptables "
                          "conntrack, then retry")
    if importlib.util.find_spec("tollway.devnode") is None:
        raise UpError("the node agent (tollway.devnode) is not installed in this Python")
    other = hostnet.owner()
    if other is not None and other != lay.root and hostnet.link_exists(L.BRIDGE):
        raise UpError(f"another dev cluster (state dir {other}) owns the bridge {L.BRIDGE}; "
                      f"one per host: stop it with `tollway dev cluster down --state-dir "
                      f"{other}`")
    if hostnet.link_exists(L.BRIDGE) and other is None:
        raise UpError(f"a network interface named {L.BRIDGE} exists but no Tollway dev cluster "
                      "made it; remove it (`ip link del tollway0`) if it is a leftover")


def spawn_supervisor(lay: L.Layout, lock: IO[str]) -> subprocess.Popen[bytes]:
    log = open(lay.log("supervisor"), "ab")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "tollway.devcluster.supervise",
                             "--state-dir", str(lay.root)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            cwd=lay.root, start_new_session=True, pass_fds=(lock.fileno(),),
                            env=child_env())
    log.close()
    return proc


def _log_tail(path: str, n: int = 25) -> str:
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


def ensure_dns_service(kubeconfig: Path) -> None:
    """kube-system/kube-dns at 10.96.0.10, endpoints = CoreDNS on the bridge IP."""
    from lightkube import Client, KubeConfig
    from lightkube.codecs import from_dict

    client = Client(KubeConfig.from_file(kubeconfig), field_manager=FIELD_MANAGER)
    ports = [{"name": "dns", "port": 53, "protocol": "UDP"},
             {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]
    svc = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "kube-dns", "namespace": "kube-system",
                        "labels": {"k8s-app": "kube-dns",
                                   "kubernetes.io/name": "CoreDNS"}},
           "spec": {"clusterIP": str(L.DNS_SERVICE_IP),
                    "ports": [{**p, "targetPort": 53} for p in ports]}}
    eps = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": "kube-dns-host", "namespace": "kube-system",
                        "labels": {"kubernetes.io/service-name": "kube-dns",
                                   "endpointslice.kubernetes.io/managed-by": FIELD_MANAGER}},
           "addressType": "IPv4",
           "endpoints": [{"addresses": [str(L.BRIDGE_IP)], "conditions": {"ready": True},
                          "nodeName": L.NODE_NAME}],
           "ports": ports}
    for obj in (svc, eps):
        client.apply(from_dict(obj), force=True)  # type: ignore[arg-type]
    client.close()


def node_state(kubeconfig: Path) -> tuple[bool, str | None]:
    """(Ready, podCIDR) of our node, or (False, None) while it is not registered."""
    from lightkube import ApiError, Client, KubeConfig
    from lightkube.resources.core_v1 import Node

    client = Client(KubeConfig.from_file(kubeconfig))
    try:
        node: Any = client.get(Node, L.NODE_NAME)
    except ApiError:
        return False, None
    finally:
        client.close()
    conds = (node.status.conditions or []) if node.status else []
    ready = any(c.type == "Ready" and c.status == "True" for c in conds)
    return ready, node.spec.podCIDR if node.spec else None


def up(lay: L.Layout, say: Callable[[str], None]) -> int:
    t0 = time.monotonic()
    require_root()
    sbin.ensure_on_path()  # root's iptables where a user's PATH does not look
    lock = take_lock(lay)
    try:
        preflight(lay)
    except BaseException:
        lock.close()
        raise
    try:
        if hostnet.owner() == lay.root or lay.hostnet.exists() or teardown.pod_netns(lay):
            say("cleaning up what a previous run left behind...")
            teardown.sweep(lay, build.bin_dir())
        say("binaries: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, "
            "kube-proxy, kubectl, coredns (built once from the Go module proxy)")
        bins = build.ensure(lay.logs / "build.log", say)
        say(f"  binaries ready in {bins} ({build.fmt(time.monotonic() - t0)})")
        for d in (lay.etcd_data, lay.node, lay.pids):
            shutil.rmtree(d, ignore_errors=True)
        lay.logs.mkdir(parents=True, exist_ok=True)
        pki.write_all(lay)
        ports = pick_ports()
        lay.corefile.write_text(P.corefile(lay, ports))
        comps = P.components(lay, bins, ports)
        lay.plan.write_text(json.dumps(P.to_json(comps), indent=2))
        say(f"network: bridge {L.BRIDGE} {L.BRIDGE_IP}/{L.NODE_POD_CIDR.prefixlen}, "
            f"pods {L.CLUSTER_CIDR}, services {L.SERVICE_CIDR}")
        hostnet.setup(lay)
        supervisor = spawn_supervisor(lay, lock)
    except BaseException:
        teardown.sweep(lay, None)
        raise
    finally:
        lock.close()  # the supervisor holds its own copy of the locked file now
    try:
        wait_ready(lay, t0, say, supervisor)
    except (UpError, KeyboardInterrupt) as exc:
        say(f"tollway dev cluster up failed: {exc}" if isinstance(exc, UpError)
            else "interrupted: stopping what was started")
        teardown.down(lay, bins, say)
        return 1
    say(f"KUBECONFIG={lay.kubeconfig}")
    say(f"logs: {lay.logs}; kubectl v1.34.4: eval \"$(tollway dev cluster env --state-dir "
        f"{lay.root})\"")
    say(f"tollway dev cluster ready in {time.monotonic() - t0:.1f}s: node {L.NODE_NAME} Ready")
    return 0


def wait_ready(lay: L.Layout, t0: float, say: Callable[[str], None],
               supervisor: subprocess.Popen[bytes]) -> None:
    announced: set[str] = set()
    dns_done = False
    cidr_checked = False
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if supervisor.poll() is not None:
            raise UpError(f"the cluster supervisor exited ({supervisor.returncode}); its log "
                          f"{lay.log('supervisor')} ends with:\n"
                          f"{_log_tail(str(lay.log('supervisor')))}")
        st = teardown.status_of(lay) or {}
        comps: dict[str, dict[str, Any]] = st.get("components", {})  # type: ignore[assignment]
        for name, c in comps.items():
            if c.get("failed"):
                raise UpError(f"{name} keeps exiting (last exit code {c.get('last_exit')}); "
                              f"its log {c['log']} ends with:\n{_log_tail(c['log'])}")
            if c.get("ready") and name not in announced:
                announced.add(name)
                say(f"  {name} running ({time.monotonic() - t0:.1f}s)")
        if comps.get("kube-apiserver", {}).get("ready") and not dns_done:
            try:
                ensure_dns_service(lay.kubeconfig)
                dns_done = True
                say(f"  kube-dns Service {L.DNS_SERVICE_IP} -> CoreDNS on {L.BRIDGE_IP}:53")
            except Exception:  # the API may still be settling its RBAC: retry next pass
                pass
        if dns_done:
            ready, cidr = node_state(lay.kubeconfig)
            if cidr and not cidr_checked:
                cidr_checked = True
                if cidr != str(L.NODE_POD_CIDR):
                    raise UpError(f"kcm gave node {L.NODE_NAME} podCIDR {cidr}, not "
                                  f"{L.NODE_POD_CIDR} where the bridge gateway is")
            # Ready means usable: the node, and kube-proxy's rules and DNS answering too.
            if ready and comps and all(c.get("ready") for c in comps.values()):
                return
        time.sleep(0.5)
    raise UpError(f"node {L.NODE_NAME} not Ready after {READY_TIMEOUT:.0f}s; logs in "
                  f"{lay.logs} (devnode.log: {_log_tail(str(lay.log('devnode')), 10)})")
