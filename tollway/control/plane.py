"""The control plane's engine: store + registry inputs → one snapshot per proxy, pushed.

IO shell around the pure parts: `push.Debouncer` decides when to recompute, the compiler
(world + translate) decides what each proxy gets, `push.Ledger` decides who must be sent
what. Each connected proxy has one `Outbox` slot holding only its newest snapshot, so a
slow proxy is never sent a backlog (per-proxy coalescing).

Recomputation is incremental at the proxy level: a proxy's snapshot is rebuilt only when
the world inputs or its own entry changed since it was last built, and sent only when the
resulting version differs from what it has.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from tollway.config.resource import ResourceSet
from tollway.control import auth, push
from tollway.control import proxies as proxies_mod
from tollway.control.jwks import JwksResolver
from tollway.control.proxies import ProxyEntry
from tollway.control.registry import Replica
from tollway.control.store import Change, ConfigStore
from tollway.kit.clock import Clock, MonotonicClock
from tollway.snapshot import codec, types

TRUST_DOMAIN = "cluster.local"

log = logging.getLogger(__name__)


class Compiler(Protocol):
    """How snapshots are made; the default adapts `control.world` and `control.translate`."""

    def world(self, resources: ResourceSet, replicas: Sequence[Replica]) -> Any: ...

    def config(self, world: Any, entry: ProxyEntry) -> types.ProxyConfig: ...

    def endpoints(self, world: Any) -> dict[str, Any]: ...


@dataclass
class Outbox:
    """One pending snapshot line for one proxy stream; newer replaces older."""

    event: asyncio.Event = field(default_factory=asyncio.Event)
    line: bytes | None = None
    closed: bool = False

    def put(self, line: bytes) -> None:
        self.line = line
        self.event.set()

    def close(self) -> None:
        self.closed = True
        self.event.set()

    async def take(self, timeout: float) -> bytes | None:
        """The next line, or None on timeout (time for a heartbeat) or close."""
        try:
            await asyncio.wait_for(self.event.wait(), timeout)
        except TimeoutError:
            return None
        self.event.clear()
        line, self.line = self.line, None
        return line


class ControlPlane:
    """Holds who is in the mesh and keeps every connected proxy's snapshot current."""

    def __init__(
        self,
        store: ConfigStore,
        *,
        compiler: Compiler | None = None,
        clock: Clock | None = None,
        debounce: push.Debouncer | None = None,
    ) -> None:
        self.store = store
        self.clock = clock or MonotonicClock()
        self.compiler: Compiler = compiler or default_compiler()
        self.debouncer = debounce or push.Debouncer()
        self.ledger = push.Ledger()
        self.book = proxies_mod.ProxyBook()
        self.replicas: dict[str, Replica] = {}
        self.configs: dict[str, types.ProxyConfig] = {}
        self.errors: dict[str, str] = {}
        self.world: Any = None
        self.trust: types.Trust | None = None  # pushed in every snapshot once a CA is set
        self._trust_digest = ""
        self._outboxes: dict[str, Outbox] = {}
        self._gen = 0  # bumps when the world inputs change
        self._built: dict[str, tuple[int, ProxyEntry]] = {}
        self._wake = asyncio.Event()
        self._changed = asyncio.Condition()
        self._notifying: set[asyncio.Task[None]] = set()
        self._unsubscribe = store.subscribe(self._on_change)
        self.jwks = JwksResolver(self.touch)  # RequestAuthentication jwksUri, fetched here
        # told of each refusal once per proxy and reason (`tollway up` prints it): a proxy
        # that cannot apply its snapshot, e.g. a gateway port in use, is never ready, and
        # only its log said why
        self.on_refused: Callable[[str, str], None] | None = None

    @property
    def generation(self) -> int:
        """Bumps on every change of the inputs; `wait_current(since_gen=)` compares to it."""
        return self._gen

    # ------------------------------------------------------------ inputs

    def _on_change(self, _change: Change) -> None:
        self.touch()

    def touch(self) -> None:
        """Something the snapshots depend on changed: recompute after the debounce."""
        self._gen += 1
        self.debouncer.touch(self.clock.monotonic())
        self._wake.set()

    def set_replica(self, replica: Replica) -> None:
        """A replica is ready to take traffic (only ready replicas become endpoints)."""
        if self.replicas.get(replica.name) != replica:
            self.replicas[replica.name] = replica
            self.touch()

    def remove_replica(self, name: str) -> None:
        if self.replicas.pop(name, None) is not None:
            self.touch()

    def set_trust(self, trust: types.Trust) -> None:
        """The trust bundle (CA root, revoked serials) every snapshot carries from now on.

        A change (a revocation) bumps the inputs' generation, so every proxy gets a new
        version with the new list and its inbound gate refuses the revoked peer.
        """
        if trust == self.trust:
            return
        self.trust = trust
        self._trust_digest = hashlib.sha256(msgspec.json.encode(trust)).hexdigest()[:12]
        self.touch()

    def identity_for(self, name: str, caller: auth.Principal | None = None) -> str | None:
        """The SPIFFE ID of a proxy this plane serves (what the CA signs for it), or None.

        Only proxies in the book get a certificate, and only for the namespace and
        service account they were registered with: a caller cannot ask for another one.
        With `caller`, its credential must be for that node (auth.Forbidden otherwise).
        """
        entry = self.book.get(name)
        if entry is None:
            return None
        node = entry.node
        if caller is not None:
            caller.check_node(name, node.namespace, node.service_account)
        domain = self.trust.trust_domain if self.trust is not None else TRUST_DOMAIN
        return f"spiffe://{domain}/ns/{node.namespace}/sa/{node.service_account}"

    def _with_trust(self, config: types.ProxyConfig) -> types.ProxyConfig:
        """`config` carrying the trust bundle, versioned over both (no full re-hash)."""
        if self.trust is None:
            return config
        version = hashlib.sha256(
            f"{config.version}/{self._trust_digest}".encode()).hexdigest()[:12]
        return msgspec.structs.replace(config, trust=self.trust, version=version)

    def register(self, entry: ProxyEntry) -> None:
        """Add or update a proxy (it gets snapshots from now on).

        Only a VM's entry (origin "vm", from `POST /v1/register`) also makes it an
        endpoint. A local entry is registered *before* its sidecar and app are started;
        `tollway up`'s supervisor publishes it with `set_replica` once both listen and
        withdraws it before stopping them. Publishing it here would route traffic to a
        port nobody listens on yet: 503 "connection refused" on every replica a rollout
        scales up while its subset or Service is routed to.
        """
        if self.book.upsert(entry):
            replica = proxies_mod.replica_from_entry(entry) if entry.origin == "vm" else None
            if replica is not None:
                self.replicas[replica.name] = replica
                self._gen += 1
            self.debouncer.touch(self.clock.monotonic())
            self._wake.set()

    def unregister(self, name: str) -> None:
        self.book.remove(name)
        self.ledger.forget(name)
        self.configs.pop(name, None)
        self._built.pop(name, None)
        self.remove_replica(name)
        outbox = self._outboxes.pop(name, None)
        if outbox:
            outbox.close()

    # ------------------------------------------------------------ streams

    def open_stream(self, name: str) -> Outbox:
        """A proxy connected: it gets the snapshot it should have at once (resync)."""
        old = self._outboxes.pop(name, None)
        if old:
            old.close()
        outbox = Outbox()
        self._outboxes[name] = outbox
        self.ledger.connect(name, self.clock.monotonic())
        self._deliver(name)
        return outbox

    def close_stream(self, name: str, outbox: Outbox) -> None:
        if self._outboxes.get(name) is outbox:
            del self._outboxes[name]
            self.ledger.disconnect(name)

    async def ack(self, name: str, version: str, status: str, reason: str = "") -> None:
        if status == "ACK":
            self.ledger.ack(name, version, self.clock.monotonic())
        else:
            new = self.ledger.row(name).nack_reason != reason
            self.ledger.nack(name, version, reason)
            log.warning("proxy %s refused %s: %s", name, version, reason)
            if new and self.on_refused is not None:
                self.on_refused(name, reason)
        async with self._changed:
            self._changed.notify_all()

    # ------------------------------------------------------------ engine

    async def run(self) -> None:
        """Recompute and push whenever inputs change (debounced); runs until cancelled."""
        self.touch()
        while True:
            await self._wake.wait()
            due = self.debouncer.due_at()
            now = self.clock.monotonic()
            if due is None:
                self._wake.clear()
                continue
            if now < due:
                await asyncio.sleep(due - now)
                continue
            self._wake.clear()
            self.debouncer.flushed()
            self.recompute()

    def recompute(self) -> None:
        """Rebuild what changed and deliver new versions; pure compute plus queue writes."""
        gen = self._gen
        try:
            resources = self.jwks.resolve(self.store.current())
            self.world = self.compiler.world(resources, list(self.replicas.values()))
        except Exception:  # keep serving the last snapshots; the log says what broke
            log.exception("building the world failed; proxies keep their last snapshot")
            return
        rebuilt = False
        for entry in self.book.all():
            if self._built.get(entry.name) == (gen, entry):
                continue
            try:
                config = self._with_trust(self.compiler.config(self.world, entry))
            except Exception as exc:  # one proxy's bad translation must not stop the rest
                log.exception("translating for %s failed", entry.name)
                self.errors[entry.name] = f"{type(exc).__name__}: {exc}"
                continue
            self.errors.pop(entry.name, None)
            self._built[entry.name] = (gen, entry)
            self.configs[entry.name] = config
            if self.ledger.offer(entry.name, config.version):
                self._deliver(entry.name)
            rebuilt = True
        if rebuilt:
            self._notify_soon()

    def _notify_soon(self) -> None:
        """Wake `wait_current` waiters: a rebuild whose version a proxy already has sends
        nothing, so no ACK will come to wake them, yet that proxy is now current for the
        newer inputs (without this, `tollway up`'s ready line and every retirement wait
        for their whole timeout whenever a change leaves some proxy's snapshot as it was).
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # recompute() called outside a loop (tests): nobody waits
            return

        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()

        task = loop.create_task(notify())
        self._notifying.add(task)
        task.add_done_callback(self._notifying.discard)

    def _deliver(self, name: str) -> None:
        outbox = self._outboxes.get(name)
        config = self.configs.get(name)
        if outbox is None or config is None or not self.ledger.needs_send(name):
            return
        body = codec.encode(config)
        line = b'{"version":"' + config.version.encode() + b'","config":' + body + b"}\n"
        outbox.put(line)
        self.ledger.sent(name, config.version, self.clock.monotonic())

    async def wait_current(
        self, names: Iterable[str], timeout: float, *, since_gen: int | None = None
    ) -> bool:
        """Wait until every named, connected proxy acknowledged a snapshot built from
        inputs at least as new as `since_gen` (default: now)."""
        wanted = tuple(names)
        gen = self._gen if since_gen is None else since_gen

        def done() -> bool:  # a disconnected proxy resyncs when it is back; not waited for
            return all(
                self._built.get(n, (-1,))[0] >= gen and self.ledger.row(n).current
                for n in wanted
                if self.book.get(n) is not None and self.ledger.row(n).connected
            )

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(done), timeout)
            except TimeoutError:
                return False
        return True

    def statistics(self) -> push.LedgerStats:
        return self.ledger.statistics()

    def proxy_rows(self) -> list[dict[str, Any]]:
        """What `tollway proxy-status -o json` prints."""
        rows = []
        for entry in self.book.all():
            sync = self.ledger.row(entry.name)
            row = entry.to_json()
            row.update(
                connected=sync.connected,
                version=sync.desired,
                acked=sync.acked,
                nacked=sync.nacked,
                nack_reason=sync.nack_reason,
                status=_sync_word(sync),
                error=self.errors.get(entry.name, ""),
            )
            rows.append(row)
        return rows

    def close(self) -> None:
        self._unsubscribe()
        for outbox in self._outboxes.values():
            outbox.close()


def _sync_word(sync: push.ProxySync) -> str:
    if not sync.connected:
        return "DISCONNECTED"
    if sync.nacked and sync.nacked == sync.desired:
        return "NACKED"
    return "SYNCED" if sync.current else "STALE"


def default_compiler() -> Compiler:
    from tollway.control import compiler as compiler_mod

    return compiler_mod.MeshCompiler()

