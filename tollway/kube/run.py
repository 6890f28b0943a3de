"""`tollway control-plane --kubernetes`: the control plane with the API server as store.

Wiring only: the same ConfigStore -> ControlPlane -> serve path as `tollway up`
(cli/up.py), fed by one informer per watched kind through `mirror.Mirror` instead of a
folder, and writing each Tollway resource's `Reconciled` condition back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tollway.config.meshconfig import MeshConfig
from tollway.control import auth, serve
from tollway.control.guard import Guard
from tollway.control.plane import ControlPlane
from tollway.control.store import ConfigStore
from tollway.kit.clock import MonotonicClock
from tollway.kube import casecret, inject, kinds, meshcm, objects, webhook
from tollway.kube import lease as lease_mod
from tollway.kube.api import Api
from tollway.kube.compiler import KubeCompiler
from tollway.kube.informer import Event
from tollway.kube.mirror import Mirror, StatusWrite
from tollway.kube.tokenreview import AUDIENCE, TokenReviewVerifier

log = logging.getLogger(__name__)
LEASE_NAME = "tollway-control-plane"


@dataclass
class KubePlane:
    """One replica of the control plane on Kubernetes."""

    api: Api
    state_dir: Path
    host: str = "0.0.0.0"
    port: int = 15010
    extra_hosts: tuple[str, ...] = ()
    echo: Callable[[str], None] = print
    writes_status: bool = True  # only the leader writes (see lease)
    audience: str = AUDIENCE  # of the sidecars' projected service-account tokens
    namespace: str = "tollway-system"  # where the CA Secret and the Lease live
    identity: str = ""  # this replica's name in the Lease (the pod name in a cluster)
    lease_duration: float = lease_mod.LEASE_DURATION
    webhook: tuple[str, int] | None = None  # HOST:PORT of the validating webhook (HTTPS)
    webhook_certs: Path | None = None  # tls.crt/tls.key there (made, with ca.crt, if absent)
    injection: inject.Settings | None = None  # the injected sidecar (the chart's values)
    # Seconds to keep answering webhooks and sidecars after SIGTERM (having given up the
    # Lease): the API server and kube-proxy still send this pod new connections until the
    # endpoint removal reaches them, and a closed port there is a refused `kubectl apply`.
    drain: float = 0.0
    store: ConfigStore = field(default_factory=ConfigStore)
    watched: tuple[kinds.Watched, ...] = field(default_factory=kinds.watched)
    # What rides on the informers (the rollout controller, wired by the CLI, since kube/
    # sits below rollout/): listeners see every batch of events; leader tasks run only
    # while this replica holds the Lease, cancelled when it stops leading.
    listeners: list[Callable[[kinds.Watched, list[Event]], None]] = field(default_factory=list)
    leader_tasks: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.identity:
            self.identity = f"{socket.gethostname()}-{os.getpid()}"
        infos: dict[str, objects.PodInfo] = {}
        self.compiler = KubeCompiler(infos)
        self.plane = ControlPlane(self.store, compiler=self.compiler)
        self.mirror = Mirror(self.store, self.plane, infos=infos)
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._leader: list[asyncio.Task[None]] = []
        self.stop = asyncio.Event()

    def raw(self, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The object as the API server last said (metadata and status included)."""
        item = self.mirror.items.get((kind, namespace, name))
        return item.obj if item is not None else None

    def _use_mesh_config(self, mesh_config: MeshConfig) -> None:
        """The `istio` ConfigMap's mesh config (kube/meshcm.py): every snapshot again."""
        self.compiler.use_mesh_config(mesh_config)
        self.plane.touch()

    async def on_events(self, watched: kinds.Watched, events: list[Event]) -> None:
        async with self._lock:  # one batch at a time: the store sees one order of changes
            writes = self.mirror.handle(watched, events)
            for listener in self.listeners:
                listener(watched, events)
            if self.writes_status:
                await self.write_status(writes)

    def _leading(self, leading: bool) -> None:
        self.writes_status = leading
        self.echo(f"tollway control-plane: {self.identity} "
                  f"{'leads' if leading else 'does not lead'} (lease {self.namespace}/"
                  f"{LEASE_NAME})")
        if leading:  # write what was decided while another replica led
            task = asyncio.create_task(self._resync())
            self._tasks.append(task)
            self._leader = [asyncio.create_task(self._leader_task(t)) for t in self.leader_tasks]
        else:
            for t in self._leader:
                t.cancel()
            self._leader = []

    async def _leader_task(self, run: Callable[[], Awaitable[None]]) -> None:
        while True:  # a failure is logged and the task restarted: leading means running it
            try:
                await run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("leader task failed; restarting in 5 s")
                await asyncio.sleep(5.0)

    async def _resync(self) -> None:
        async with self._lock:
            await self.write_status(self.mirror.resync_status())

    async def write_status(self, writes: list[StatusWrite]) -> None:
        for w in writes:
            await self.api.patch_status(w.watched, w.obj, w.conditions)

    async def run(self) -> int:
        clock = MonotonicClock()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        signer = auth.TokenSigner(auth.load_or_create_key(self.state_dir))
        # Sidecars: their projected service-account token, reviewed by the API server;
        # the admin (the CLI): this plane's own token (STATE/admin-token).
        auth.admin_token(self.state_dir, signer, clock.wall())
        verifier = auth.ChainVerifier([TokenReviewVerifier(self.api, self.audience), signer])
        authority = await casecret.load_or_create(self.api, self.namespace)

        async def persist() -> None:  # a revocation holds for every replica, and restarts
            await casecret.save_revoked(self.api, self.namespace, authority)

        routes = serve.ca_routes(self.plane, authority, persist=persist)
        self._tasks.append(asyncio.create_task(casecret.follow_revoked(
            self.api, self.namespace, authority, serve.trust_refresher(self.plane, authority))))
        app = serve.make_app(self.plane, guard=Guard(verifier, clock,
                                                     extra_hosts=self.extra_hosts),
                             routes=routes)
        # The webhook listens before the config port, whose /healthz is the pod's readiness
        # probe: a Ready pod answers the API server's webhook calls.
        hook_runner = await self._start_webhook()
        runner = await serve.serve(app, self.host, self.port)
        bound = runner.addresses[0][1] if runner.addresses else self.port
        self.writes_status = False
        elector = lease_mod.Elector(self.api, self.namespace, LEASE_NAME, self.identity,
                                    self._leading, duration=self.lease_duration)
        synced = [asyncio.Event() for _ in self.watched]
        self._tasks.append(asyncio.create_task(self.plane.run()))
        self._tasks.append(asyncio.create_task(meshcm.follow(
            self.api, self.namespace, self._use_mesh_config, self.echo, stop=self.stop)))
        for w, ev in zip(self.watched, synced, strict=True):
            self._tasks.append(asyncio.create_task(self.api.run_informer(w, self.on_events, ev)))
        electing: asyncio.Task[None] | None = None
        try:
            await asyncio.gather(*(e.wait() for e in synced))
            electing = asyncio.create_task(elector.run())
            self._tasks.append(electing)
            self.echo(f"tollway control-plane: serving on http://{self.host}:{bound}, "
                      f"watching {len(self.watched)} kinds at {self.api.server} "
                      f"({len(self.store.current())} resources, {len(self.plane.replicas)} "
                      "pod endpoints)")
            await self.stop.wait()
            if self.drain > 0:
                await self._step_down(electing, elector)
                self.echo(f"tollway control-plane: stopping; serving {self.drain:g} s more "
                          "while the Service's endpoints drop this pod")
                await asyncio.sleep(self.drain)
        finally:
            for task in [*self._leader, *self._tasks]:
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(elector.release(), 5)
            for task in [*self._leader, *self._tasks]:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self.plane.close()
            await runner.cleanup()
            if hook_runner is not None:
                await hook_runner.cleanup()
            await self.api.close()
        return 0

    async def _step_down(self, electing: asyncio.Task[None],
                         elector: lease_mod.Elector) -> None:
        """Stop leading before draining: the next replica takes the Lease (status writes,
        rollouts) at once instead of after the drain."""
        electing.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await electing
        with contextlib.suppress(Exception):
            await asyncio.wait_for(elector.release(), 5)

    async def _start_webhook(self) -> web.AppRunner | None:
        if self.webhook is None:
            return None
        host, port = self.webhook
        folder = self.webhook_certs or self.state_dir / "webhook"
        ca_file, cert_file, key_file = webhook.ensure_credentials(
            folder, [host, *self.extra_hosts])
        hook_runner, hook_port = await webhook.serve_webhook(
            host, port, cert_file, key_file,
            self.injection or inject.Settings(control_plane_namespace=self.namespace))
        self.echo(f"tollway control-plane: validating webhook on "
                  f"https://{host}:{hook_port}{webhook.PATH} (CA {ca_file})")
        return hook_runner

    def install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop.set)
