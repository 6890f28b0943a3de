"""The node agent's main loop: register the Node, heartbeat, watch bound Pods, run a worker each.

Start-up order matters for `tollway dev cluster up`: the Node is Ready only after its podCIDR
is known, the bridge carries the gateway address and the log endpoint listens — so a Ready
node can really run pods. Leftovers of a previous (crashed) run in the same state dir are
removed first, and a lock file keeps a second agent off the same state dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.operators import BinaryOperator, SequenceOperator
from lightkube.resources.core_v1 import Pod
from lightkube.types import on_error_retry

from tollway.devnode import logserver, podnet
from tollway.devnode.kubeapi import KubeApi
from tollway.devnode.nodeobj import node_status
from tollway.devnode.worker import HostConfig, PodWorker

log = logging.getLogger("tollway.devnode")
LEASE_EVERY = 10.0
STATUS_EVERY = 30.0
RESYNC_EVERY = 20.0


class AgentError(RuntimeError):
    """A start-up failure the user can fix; the message says how."""


@dataclass(frozen=True)
class AgentOptions:
    kubeconfig: Path
    node_name: str
    state_dir: Path
    node_ip: str
    bridge: str
    cluster_dns: str
    cluster_domain: str = "cluster.local"
    port: int = 10250
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None
    pod_cidr: str | None = None
    version: str = "v1.34.4"
    backoff_base: float = 10.0
    probe_scale: float = 1.0
    cidr_timeout: float = 60.0


def lock_state_dir(state_dir: Path) -> IO[str]:
    state_dir.mkdir(parents=True, exist_ok=True)
    f = open(state_dir / "agent.lock", "w")  # noqa: SIM115 - held for the agent's lifetime
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as e:
        f.close()
        raise AgentError(
            f"another devnode agent already runs on state dir {state_dir}; stop it "
            "(tollway dev cluster down) or pick another --state-dir"
        ) from e
    f.write(str(os.getpid()))
    f.flush()
    return f


class Agent:
    def __init__(self, opts: AgentOptions) -> None:
        self.opts = opts
        self.workers: dict[str, PodWorker] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.finished: set[str] = set()
        self.stop = asyncio.Event()
        self.port = opts.port
        self.ready_since = time.time()
        self.node_uid = ""
        self.node_ip = opts.node_ip
        self.host = HostConfig(
            node_name=opts.node_name,
            node_ip=opts.node_ip,
            state_dir=opts.state_dir,
            cluster_dns=opts.cluster_dns,
            cluster_domain=opts.cluster_domain,
            backoff_base=opts.backoff_base,
            probe_scale=opts.probe_scale,
        )

    # ---- lifecycle -----------------------------------------------------------------------
    async def run(self) -> None:
        lock = lock_state_dir(self.opts.state_dir)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        config = KubeConfig.from_file(self.opts.kubeconfig)
        client = AsyncClient(config, field_manager="devnode")
        self.api = KubeApi(client, self.opts.node_name)
        runner = None
        try:
            removed = await podnet.cleanup(self.opts.state_dir, keep_bridge=True)
            for what in removed:
                log.info("removed leftover %s", what)
            node = await self.api.register_node()
            self.node_uid = (node.metadata.uid if node.metadata else "") or ""
            cidr = await self._pod_cidr()
            self.net = podnet.PodNet(self.opts.state_dir, self.opts.bridge, cidr)
            await self.net.ensure_bridge()
            self.node_ip = self.opts.node_ip or self.net.ipam.gateway
            self.host = dataclasses.replace(self.host, node_ip=self.node_ip)
            runner = await self._serve_logs()
            self.ready_since = time.time()
            await self._post_status()
            await self.api.renew_lease(self.node_uid)
            log.info(
                "node %s Ready: podCIDR %s, bridge %s", self.opts.node_name, cidr, self.opts.bridge
            )
            background = [
                asyncio.create_task(self._heartbeat()),
                asyncio.create_task(self._watch_pods()),
                asyncio.create_task(self._resync()),
            ]
            await self.stop.wait()
            for t in background:
                t.cancel()
            await self._shutdown()
        finally:
            if runner is not None:
                await runner.cleanup()
            await client.close()
            lock.close()

    async def _shutdown(self) -> None:
        """Stop every pod (grace capped at 5 s) and remove their namespaces; API objects stay."""
        host = self.host
        for w in self.workers.values():
            w.host = dataclasses.replace(host, max_grace=5.0)
            w.request_stop(None, delete=False)
        if self.tasks:
            await asyncio.wait(list(self.tasks.values()), timeout=15)
        await self.net.detach_all()

    async def _pod_cidr(self) -> str:
        deadline = time.monotonic() + self.opts.cidr_timeout
        while True:
            node = await self.api.get_node()
            if node.spec is not None and node.spec.podCIDR:
                return node.spec.podCIDR
            if self.opts.pod_cidr:
                await self.api.set_pod_cidr(self.opts.pod_cidr)
                continue
            if time.monotonic() > deadline:
                raise AgentError(
                    f"node {self.opts.node_name} got no spec.podCIDR in "
                    f"{self.opts.cidr_timeout:g}s: "
                    "run kube-controller-manager with --allocate-node-cidrs=true "
                    "--cluster-cidr=10.244.0.0/16, or pass --pod-cidr"
                )
            await asyncio.sleep(0.5)

    async def _serve_logs(self) -> Any:
        o = self.opts
        if not (o.tls_cert and o.tls_key and o.client_ca):
            log.warning(
                "kubectl logs is not served: pass --tls-cert-file, --tls-private-key-file and "
                "--client-ca-file; logs stay readable under %s/pods",
                o.state_dir,
            )
            self.port = 0
            return None
        ctx = logserver.server_ssl(o.tls_cert, o.tls_key, o.client_ca)
        runner, self.port = await logserver.serve(self._pod_dir, self.node_ip, o.port, ctx)
        return runner

    def _pod_dir(self, ns: str, name: str) -> Path | None:
        for w in self.workers.values():
            if w.namespace == ns and w.name == name:
                return w.dir
        found = sorted((self.opts.state_dir / "pods").glob(f"{ns}_{name}_*"), key=os.path.getmtime)
        return found[-1] if found else None

    # ---- node heartbeats -----------------------------------------------------------------
    async def _post_status(self) -> None:
        now = time.time()
        await self.api.patch_node_status(
            node_status(
                node_ip=self.node_ip,
                hostname=self.opts.node_name,
                port=self.port,
                ready=True,
                ready_message="devnode is posting ready status",
                version=self.opts.version,
                now=now,
                since=self.ready_since,
                cpu=os.cpu_count() or 1,
                memory_kib=_mem_kib(),
            )
        )

    async def _heartbeat(self) -> None:
        last_status = time.monotonic()
        while True:
            await asyncio.sleep(LEASE_EVERY)
            try:
                await self.api.renew_lease(self.node_uid)
                if time.monotonic() - last_status >= STATUS_EVERY:
                    await self._post_status()
                    last_status = time.monotonic()
            except Exception as e:
                log.warning("heartbeat failed: %s", e)

    # ---- pods ----------------------------------------------------------------------------
    def _fields(self) -> dict[str, str | BinaryOperator | SequenceOperator]:
        return {"spec.nodeName": self.opts.node_name}

    async def _watch_pods(self) -> None:
        fields = self._fields()
        while True:
            try:
                async for kind, pod in self.api.client.watch(
                    Pod, namespace="*", fields=fields, on_error=on_error_retry
                ):
                    self.handle(kind, pod)
            except Exception as e:
                log.warning("pod watch ended (%s); restarting", e)
                await asyncio.sleep(1)

    async def _resync(self) -> None:
        """Catch what a watch gap hid: pods that vanished, pods that appeared."""
        while True:
            await asyncio.sleep(RESYNC_EVERY)
            try:
                seen: set[str] = set()
                async for pod in self.api.client.list(Pod, namespace="*", fields=self._fields()):
                    seen.add(pod.metadata.uid if pod.metadata and pod.metadata.uid else "")
                    self.handle("MODIFIED", pod)
                for uid, w in list(self.workers.items()):
                    if uid not in seen:
                        w.request_stop(0, delete=False)
            except ApiError as e:
                log.warning("resync failed: %s", e)

    def handle(self, kind: str, pod: Pod) -> None:
        m = pod.metadata
        if m is None or not m.uid:
            return
        uid = m.uid
        worker = self.workers.get(uid)
        if kind == "DELETED":
            if worker is not None:
                worker.request_stop(0, delete=False)
            return
        if worker is not None:
            worker.update(pod)
            if m.deletionTimestamp is not None:
                worker.request_stop(_grace(pod), delete=True)
            return
        if uid in self.finished:
            return
        phase = pod.status.phase if pod.status else None
        if m.deletionTimestamp is not None or phase in ("Succeeded", "Failed"):
            if m.deletionTimestamp is not None:
                self._start(pod).request_stop(0, delete=True)
            return
        self._start(pod)

    def _start(self, pod: Pod) -> PodWorker:
        assert pod.metadata is not None and pod.metadata.uid
        uid = pod.metadata.uid
        worker = PodWorker(pod, self.host, self.api, self.net)
        self.workers[uid] = worker
        task = asyncio.create_task(worker.run())
        self.tasks[uid] = task

        def done(_: asyncio.Task[None]) -> None:
            self.workers.pop(uid, None)
            self.tasks.pop(uid, None)
            if not worker.crashed:  # a crashed worker is started again by the next resync
                self.finished.add(uid)

        task.add_done_callback(done)
        return worker


def _grace(pod: Pod) -> float | None:
    m = pod.metadata
    if m is not None and m.deletionGracePeriodSeconds is not None:
        return float(m.deletionGracePeriodSeconds)
    return None


def _mem_kib() -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    return 1 << 20
