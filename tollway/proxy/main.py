"""ProxyServer: assembles listeners, the compiled snapshot, the admin port and drain.

`apply(config)` compiles the whole snapshot first (chain/build.py) and binds any new
listener socket, and only then swaps: a request reads its listener's plan once, when its
headers complete, so in-flight requests finish on the config they started with and no
request ever sees half of a push. Anything that fails raises SnapshotError and the last
good snapshot stays in force.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import IO, Any

import msgspec

from tollway.proxy.chain.build import Snapshot, compile_snapshot, tls_module
from tollway.proxy.chain.mirror import Mirrorer
from tollway.proxy.chain.telemetry import Metrics
from tollway.proxy.chain.tracing import service_name
from tollway.proxy.export import SpanSink
from tollway.proxy.http1.parse import Limits
from tollway.proxy.listener import ListenerRuntime
from tollway.snapshot import types
from tollway.snapshot.codec import SnapshotError

log = logging.getLogger("tollway.proxy")


class _Bound:
    """A listener runtime with its socket and how it is served."""

    def __init__(self, spec: types.Listener, runtime: ListenerRuntime, sock: socket.socket) -> None:
        self.spec = spec
        self.runtime = runtime
        self.sock = sock
        self.gate: Any = None

    def same_socket(self, spec: types.Listener) -> bool:
        s = self.spec
        return (s.kind, s.address, s.port, s.tls) == (spec.kind, spec.address, spec.port, spec.tls)


class ProxyServer:
    """One proxy process's data plane (see module doc and docs/life-of-a-request.md)."""

    def __init__(
        self,
        config: types.ProxyConfig | None,
        *,
        admin_host: str = "127.0.0.1",
        admin_port: int = 0,
        limits: Limits | None = None,
        access_log: IO[str] | None = None,
        reuse_port: bool = False,
        tls_state: Any = None,
        serve_admin: bool = True,
    ) -> None:
        self._initial = config
        self.admin_host = admin_host
        self.admin_port = admin_port
        self.limits = limits or Limits()
        self.reuse_port = reuse_port
        self.tls_state = tls_state
        self.serve_admin = serve_admin
        self.metrics = Metrics()
        self.metrics.access_log = access_log
        if access_log is not None:
            self.metrics.logs.stdout = access_log
        self.mirrorer = Mirrorer()
        self.spans = SpanSink()
        self.snapshot: Snapshot | None = None
        self.bound: dict[str, _Bound] = {}
        self.retired: list[ListenerRuntime] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.admin: Any = None
        self.admin_address: tuple[str, int] = ("", 0)
        self.draining = False
        self._sweeper: asyncio.Task[None] | None = None
        self.applied = 0
        self.refused = 0

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        from tollway.proxy.admin import Admin

        self.loop = asyncio.get_running_loop()
        if self._initial is not None:
            self.apply(self._initial)
            await self.wait_serving()
        if self.serve_admin:
            self.admin = Admin(self)
            self.admin_address = await self.admin.start(
                self.admin_host, self.admin_port, self.reuse_port
            )
        self._sweeper = self.loop.create_task(self._sweep())

    @property
    def ready(self) -> bool:
        return self.snapshot is not None and not self.draining

    @property
    def version(self) -> str | None:
        return self.snapshot.version if self.snapshot is not None else None

    def loop_time(self) -> float:
        return self.loop.time() if self.loop is not None else 0.0

    def listener_address(self, name: str) -> tuple[str, int]:
        b = self.bound.get(name)
        if b is None:
            raise KeyError(f"no listener named {name!r}")
        return b.runtime.address

    # ------------------------------------------------------------ config
    def apply(self, config: types.ProxyConfig) -> None:
        """Swap in a new snapshot atomically, or raise SnapshotError and keep the old one."""
        loop = self.loop or asyncio.get_running_loop()
        self.loop = loop
        try:
            snap = compile_snapshot(
                config,
                loop=loop,
                metrics=self.metrics,
                mirrorer=self.mirrorer,
                limits=self.limits,
                old=self.snapshot,
                tls_state=self.tls_state,
                spans=self.spans,
            )
            new_socks = self._bind_new(config)
        except SnapshotError:
            self.refused += 1
            raise
        old = self.snapshot
        self.snapshot = snap
        self.metrics.policy = snap.metric_policy
        self.spans.configure(config.tracing.provider, service_name(config))
        self._swap_listeners(snap, new_socks)
        if old is not None:
            for name, cluster in old.clusters.items():
                new = snap.clusters.get(name)
                if new is not cluster:
                    if new is not None:  # only now: a refused snapshot must leave `old` as is
                        new.adopt(cluster)
                    cluster.close()
        self.applied += 1
        log.info("applied snapshot %s (%d listeners, %d clusters)", snap.version,
                 len(config.listeners), len(config.clusters))

    def _bind_new(self, config: types.ProxyConfig) -> dict[str, socket.socket]:
        socks: dict[str, socket.socket] = {}
        try:
            for spec in config.listeners:
                b = self.bound.get(spec.name)
                if b is not None and b.same_socket(spec):
                    continue
                if (
                    b is not None
                    and spec.port
                    and (b.spec.address, b.spec.port) == (spec.address, spec.port)
                ):
                    continue  # same address, new settings: rebound after the old one closes
                socks[spec.name] = bind_socket(spec.address, spec.port, self.reuse_port)
        except OSError as exc:
            for s in socks.values():
                s.close()
            raise SnapshotError(f"cannot listen on {spec.address}:{spec.port}: {exc}") from exc
        return socks

    def _swap_listeners(self, snap: Snapshot, socks: dict[str, socket.socket]) -> None:
        wanted = {spec.name: spec for spec in snap.config.listeners}
        for name, b in list(self.bound.items()):
            spec = wanted.get(name)
            if spec is None or not b.same_socket(spec):
                self._retire(name)
        for name, spec in wanted.items():
            plan = snap.plans[name]
            have = self.bound.get(name)
            if have is not None:
                b = have
                b.runtime.plan = plan
                b.spec = spec
                if b.gate is not None:
                    revoked = snap.config.trust.revoked_serials
                    newly = frozenset(revoked) - b.gate.revoked
                    b.gate.update(snap.config.peer_authn, revoked=revoked)
                    if newly:
                        self._cut_revoked(b, newly)
                continue
            sock = socks.get(name) or bind_socket(spec.address, spec.port, self.reuse_port)
            runtime = ListenerRuntime(name, plan, self.limits)
            if self.draining and spec.kind != "outbound":
                runtime.draining = True
            addr = sock.getsockname()
            runtime.address = (str(addr[0]), int(addr[1]))
            b = _Bound(spec, runtime, sock)
            self.bound[name] = b
            self._serve(b, snap)

    def _serve(self, b: _Bound, snap: Snapshot) -> None:
        loop = self.loop
        assert loop is not None
        spec = b.spec
        mode = snap.config.peer_authn.mode
        if spec.kind == "inbound" and (self.tls_state is not None or mode == "STRICT"):
            # The inbound gate brings the TLS module (build.tls_module): imported here, the
            # first time a listener needs it; an ImportError stops the proxy.
            from tollway.proxy.chain import authn

            b.gate = authn.InboundGate(
                snap.config.peer_authn, self.tls_state, workload_port=spec.service_port,
                capture=spec.capture,
                revoked=snap.config.trust.revoked_serials,
            )
            b.runtime.task = loop.create_task(authn.serve(b.sock, b.gate, b.runtime.factory))
            return
        ctx = snap.server_contexts.get(spec.name)

        async def serve() -> None:
            b.runtime.server = await loop.create_server(
                b.runtime.factory, sock=b.sock, ssl=ctx, backlog=4096
            )

        b.runtime.task = loop.create_task(serve())

    def _cut_revoked(self, b: _Bound, revoked: frozenset[str]) -> None:
        """Close established connections from peers whose certificate was just revoked.

        The gate checks each new handshake; without this a revoked caller would keep its
        pooled keep-alive connections (hours, with steady traffic) and so keep its access.
        """
        tls = tls_module()
        for conn in list(b.runtime.connections):
            transport = conn.transport
            obj = transport.get_extra_info("ssl_object") if transport is not None else None
            if obj is None:
                continue
            reason = tls.check_peer(obj, (), revoked)
            if reason is not None and transport is not None:
                log.warning("closing inbound connection on %s: %s", b.spec.name, reason)
                transport.abort()

    def _retire(self, name: str) -> None:
        b = self.bound.pop(name)
        rt = b.runtime
        if rt.server is not None:
            rt.server.close()
        elif rt.task is not None:
            rt.task.cancel()
        b.sock.close()
        self.retired.append(rt)

    async def wait_serving(self) -> None:
        """Until every listener accepts (after start() or apply())."""
        for b in list(self.bound.values()):
            task = b.runtime.task
            if task is not None and b.gate is None:
                await task

    # ------------------------------------------------------------ drain
    def discourage(self) -> None:
        """Drain's first phase, Istio's on SIGTERM (`drain_listeners?inboundonly&graceful`
        for terminationDrainDuration): not ready any more, but every listener keeps
        accepting and serving, since clients still route here until they hear the
        endpoint is gone; the inbound and gateway ones answer with `connection: close`
        (HTTP/2: GOAWAY), so keep-alive connections end after a response instead of
        under a request. The outbound ones stay as they are: the app may still call out
        while it shuts down. `drain` follows."""
        self.draining = True
        for b in self.bound.values():
            if b.spec.kind != "outbound":
                b.runtime.discourage()

    async def drain(self, timeout: float = 10.0) -> None:
        """Stop accepting, let in-flight requests finish (up to `timeout`), then close."""
        self.draining = True
        loop = self.loop or asyncio.get_running_loop()
        for name in list(self.bound):
            self._retire(name)
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            busy = False
            for rt in self.retired:
                for conn in list(rt.connections):
                    if conn.active is None and conn.rx is None and conn.tunnel is None:
                        conn._close()
                    else:
                        busy = True
            if not busy:
                break
            await asyncio.sleep(0.02)
        for rt in self.retired:
            for conn in list(rt.connections):
                if conn.transport is not None:
                    conn.transport.abort()
        await self.close()

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for name in list(self.bound):
            self._retire(name)
        for rt in self.retired:
            for conn in list(rt.connections):
                if conn.transport is not None:
                    conn.transport.abort()
        if self.snapshot is not None:
            for cluster in self.snapshot.clusters.values():
                cluster.close()
                for pool in cluster.pools:
                    pool.close_all()
        if self.admin is not None:
            await self.admin.close()
            self.admin = None
        # queued spans get a short chance to leave, off the loop (the POST may block)
        if self.spans.running:
            await asyncio.get_running_loop().run_in_executor(None, self.spans.close, 2.0)
        # queued access-log lines are written, off the loop (a file write may block; close
        # waits for a blocked sink up to LogWriter.close_timeout and counts what it gave up on)
        await asyncio.get_running_loop().run_in_executor(None, self.metrics.logs.close)
        await asyncio.sleep(0)

    async def _sweep(self) -> None:
        assert self.loop is not None
        while True:
            await asyncio.sleep(1.0)
            now = self.loop.time()
            for b in list(self.bound.values()):
                b.runtime.sweep(now)
            self.retired = [rt for rt in self.retired if rt.connections]
            for rt in self.retired:
                rt.sweep(now)

    # ------------------------------------------------------------ introspection
    def config_dump(self) -> dict[str, Any]:
        snap = self.snapshot
        if snap is None:
            return {"version": None, "config": None}
        return {"version": snap.version, "config": msgspec.to_builtins(snap.config)}

    def clusters_view(self, now: float | None = None) -> dict[str, Any]:
        snap = self.snapshot
        t = self.loop_time() if now is None else now
        clusters = [c.statistics(t) for c in snap.clusters.values()] if snap else []
        return {"version": self.version, "clusters": clusters,
                "mirror": self.mirrorer.statistics()}

    def listeners_view(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "listeners": [
                {
                    "name": name,
                    "kind": b.spec.kind,
                    "address": "{}:{}".format(*b.runtime.address),
                    "connections": len(b.runtime.connections),
                    "accepted": b.runtime.accepted,
                    "protocol_errors": b.runtime.protocol_errors,
                    "write_pauses": b.runtime.write_pauses,
                }
                for name, b in self.bound.items()
            ],
        }


def bind_socket(address: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A listening, non-blocking TCP socket (bound now, so a conflict refuses the config)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((address, port))
        sock.listen(4096)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
