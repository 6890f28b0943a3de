"""Run the plan: each replica's app beside its own sidecar, kept alive, scaled, drained.

For each member (a replica, or the built-in client / ingress gateway proxy) one task keeps
its processes running: spawn what is not running, wait until it is ready, announce it to
the control plane as an endpoint, wait for a process to exit, withdraw it, restart with
backoff. Ready means: the app answers (its port, or its readinessProbe httpGet), and its
sidecar has acknowledged a snapshot and listens — so a new sidecar always has config
before any traffic is sent its way, because endpoints include only ready replicas.

A changed template is a rolling update paced by the Deployment's `spec.strategy`
(`plan.rolling_step`: at most replicas + maxSurge running, at least replicas -
maxUnavailable ready, Kubernetes' 25%/25% by default): new replicas start as the surge
room allows, old ones retire as readiness allows, not-ready ones first; every readiness
change takes the next step. A change of `replicas:` alone scales at once.

Retiring a replica (scale down, deletion, replaced template) is drained: withdraw it,
wait until every other proxy has acknowledged a snapshot without it, then stop its
sidecar (which drains in-flight requests) and only then its app.

Sidecars are one `tollway proxy` process per replica, as in a real mesh: a crash, a kill
or a restart touches one replica only, and each sidecar's logs and metrics are its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

from tollway.control.local import plan as plan_mod
from tollway.control.local import podnet
from tollway.control.local.intercept import Intercept, InterceptError
from tollway.control.local.procs import (
    PortAllocator,
    Proc,
    http_ok,
    pid_alive,
    port_open,
    spawn,
)
from tollway.control.plane import ControlPlane
from tollway.control.proxies import ProxyEntry
from tollway.control.registry import DEFAULT_PORT, Replica
from tollway.kit.backoff import Backoff
from tollway.snapshot import types

log = logging.getLogger(__name__)

SidecarArgv = Callable[[ProxyEntry, str], list[str]]
READY_POLL = 0.05
MEMBERS_FILE = "members.json"
DRAIN_WAIT = 10.0  # upper bound; normally every proxy acknowledges in tens of ms


def default_sidecar_argv(entry: ProxyEntry, control_url: str,
                         token_file: Path | None = None) -> list[str]:
    """A sidecar process following the control plane as this entry's node, showing the
    credential in `token_file` (a path: the token itself never goes on a command line)."""
    spec: dict[str, Any] = {"node": msgspec.to_builtins(entry.node),
                            "admin_port": entry.ports["admin"]}
    admin_host = entry.admin.rpartition(":")[0]
    if admin_host and admin_host != "127.0.0.1":  # in its own netns: scraped from the host
        spec["admin_host"] = admin_host
    if token_file is not None:
        spec["token_file"] = str(token_file)
    return [sys.executable, "-m", "tollway.control.local.sidecar",
            "--control-plane", control_url, json.dumps(spec)]


@dataclass
class Member:
    """One proxy `tollway up` runs, and the app beside it when it is a replica."""

    entry: ProxyEntry
    plan: plan_mod.ReplicaPlan | None = None
    sidecar: Proc | None = None
    app: Proc | None = None
    ready: bool = False
    restarts: int = 0
    last_exit: str = ""
    stopping: bool = False
    reallocated_for: str = ""  # the refused version we already moved ports for
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.entry.name


class Supervisor:
    """Keeps the local processes in line with the plan; see the module docstring."""

    def __init__(
        self,
        plane: ControlPlane,
        *,
        control_url: str,
        state_dir: Path,
        workdir: Path,
        sidecar_argv: SidecarArgv = default_sidecar_argv,
        base_env: Mapping[str, str] | None = None,
        ports: PortAllocator | None = None,
        net: Intercept | None = None,
    ) -> None:
        self.plane = plane
        # --intercept: every replica in its own netns with its traffic captured
        self.net = net
        self.control_url = control_url
        self.state_dir = state_dir
        self.workdir = workdir
        self.sidecar_argv = sidecar_argv
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.ports = ports or PortAllocator()
        self.members: dict[str, Member] = {}
        self.refusals: tuple[plan_mod.Refusal, ...] = ()
        self._lock = asyncio.Lock()
        self._retiring: set[str] = set()
        self._changed = asyncio.Event()
        self._plan: plan_mod.Plan | None = None
        self._pace_pending = False

    # ------------------------------------------------------------ membership

    def add_fixed(self, entry: ProxyEntry) -> Member:
        """A proxy without an app (the client, the gateway)."""
        member = Member(entry)
        self._start(member)
        return member

    async def reconcile(self, plan: plan_mod.Plan) -> None:
        """Start what the plan adds; retire what it drops (a changed template: paced)."""
        async with self._lock:
            self.refusals = plan.refusals
            self._plan = plan
            self._pace(plan)
            self._save()

    def _pace(self, plan: plan_mod.Plan) -> None:
        """One step for every workload: start and retire what the plan and readiness allow."""
        wanted: dict[tuple[str, str], list[plan_mod.ReplicaPlan]] = {}
        for replica in plan.replicas:
            wanted.setdefault((replica.namespace, replica.workload), []).append(replica)
        running: dict[tuple[str, str], list[Member]] = {}
        for name, m in self.members.items():
            if m.plan is not None and name not in self._retiring and not m.stopping:
                running.setdefault((m.plan.namespace, m.plan.workload), []).append(m)
        for key in sorted(set(wanted) | set(running)):
            want, have = wanted.get(key, []), running.get(key, [])
            names = {r.name for r in want}
            current = {m.name for m in have if m.plan is not None
                       and want and m.plan.template_hash == want[0].template_hash}
            old = [m for m in have if m.name not in current]
            for m in have:  # scaled down (same template, index gone): at once
                if m.name in current and m.name not in names:
                    self._retire_soon(m.name)
            kept = [m for m in have if m.name in current and m.name in names]
            missing = [r for r in want if r.name not in current]
            if old and want:
                rolling = plan.rolling_for(*key)
                new_spec, old_spec = plan_mod.rolling_step(
                    rolling,
                    plan_mod.Counts(len(kept), sum(m.ready for m in kept)),
                    plan_mod.Counts(len(old), sum(m.ready for m in old)))
                missing = missing[:max(0, new_spec - len(kept))]
                # not-ready old replicas go first: they serve nothing
                old.sort(key=lambda m: (m.ready, m.name))
                old = old[:len(old) - old_spec]
            for replica in missing:
                self._start(Member(self._replica_entry(replica), replica))
            for m in old:
                self._retire_soon(m.name)

    def _retire_soon(self, name: str) -> None:
        self._retiring.add(name)
        asyncio.get_running_loop().create_task(self._retire(name))

    def _repace(self) -> None:
        """Readiness changed: take the next rolling-update step (once, however many ask)."""
        if self._plan is None or self._pace_pending:
            return
        self._pace_pending = True

        async def step() -> None:
            async with self._lock:
                self._pace_pending = False
                if self._plan is not None:
                    self._pace(self._plan)
                    self._save()

        asyncio.get_running_loop().create_task(step())

    def _replica_entry(
        self, replica: plan_mod.ReplicaPlan, ports: dict[str, int] | None = None
    ) -> ProxyEntry:
        node = types.Node(
            name=replica.name, workload=replica.workload, namespace=replica.namespace,
            service_account=replica.service_account, labels=dict(replica.labels),
        )
        if self.net is not None:
            # its own netns: Istio's fixed ports, the app on its containerPort, as in a pod
            ip = str(self.net.assign(replica.name).ip)
            fixed = {"app": replica.app_port_hint, "inbound": podnet.INBOUND_PORT,
                     "outbound": podnet.OUTBOUND_PORT, "admin": podnet.ADMIN_PORT,
                     "service_port": replica.app_port_hint}
            return ProxyEntry(node, admin=f"{ip}:{podnet.ADMIN_PORT}",
                              inbound=f"{ip}:{podnet.INBOUND_PORT}", address=ip, ports=fixed)
        ports = ports or {
            "app": self.ports.allocate(),
            "inbound": self.ports.allocate(),
            "outbound": self.ports.allocate(),
            "admin": self.ports.allocate(),
            "service_port": replica.container_ports[0] if replica.container_ports
            else DEFAULT_PORT,
        }
        return ProxyEntry(node, admin=f"127.0.0.1:{ports['admin']}",
                          inbound=f"127.0.0.1:{ports['inbound']}", ports=ports)

    # ------------------------------------------------------------ adoption

    def records(self) -> dict[str, dict[str, Any]]:
        """Members a previous `tollway up` left running (its sidecar still alive)."""
        try:
            rows = json.loads((self.state_dir / MEMBERS_FILE).read_text())
        except (OSError, ValueError):
            return {}
        alive = {}
        for name, row in rows.items():
            if isinstance(row, dict) and row.get("sidecar_pid") and pid_alive(
                    int(row["sidecar_pid"])):
                alive[name] = row
                for port in row.get("ports", {}).values():
                    self.ports.reserve(int(port))
        return alive

    def adopt_fixed(self, entry: ProxyEntry, row: Mapping[str, Any]) -> Member:
        """Take over a proxy without an app that a killed `tollway up` left serving."""
        member = Member(entry, sidecar=Proc(int(row["sidecar_pid"])), ready=True)
        self._start(member)
        return member

    def adopt(self, plan: plan_mod.Plan, rows: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """Adopt live replicas still in the plan (as endpoints at once: they were serving);
        stop the ones the plan no longer has. Returns the names adopted."""
        planned = plan.by_name()
        adopted = []
        for name, row in rows.items():
            replica = planned.get(name)
            app_pid = row.get("app_pid")
            if row.get("kind") != "sidecar":
                continue
            if (replica is None or not app_pid or not pid_alive(int(app_pid))
                    or self.net is not None):  # --intercept starts replicas in fresh netns
                for pid in (row.get("sidecar_pid"), app_pid):
                    if pid:
                        Proc(int(pid)).signal(signal.SIGTERM)
                continue
            ports = {str(k): int(v) for k, v in row["ports"].items()}
            entry = self._replica_entry(replica, ports)
            member = Member(entry, replica, sidecar=Proc(int(row["sidecar_pid"])),
                            app=Proc(int(app_pid)), ready=True)
            self.plane.set_replica(self._replica(member))
            self._start(member)
            adopted.append(name)
        return adopted

    def _start(self, member: Member) -> None:
        self.members[member.name] = member
        self.plane.register(member.entry)
        member.task = asyncio.get_running_loop().create_task(self._keep(member))

    # ------------------------------------------------------------ keeping alive

    async def _keep(self, member: Member) -> None:
        backoff = Backoff(base=0.2, cap=5.0)
        while not member.stopping:
            try:
                await self._spawn_missing(member)
            except (OSError, InterceptError) as exc:
                member.last_exit = f"cannot start: {exc}"
                log.warning("%s: %s", member.name, member.last_exit)
            else:
                if await self._until_ready(member):
                    self._set_ready(member, True)
                    await self._until_exit(member)
                    self._set_ready(member, False)
            if member.stopping:
                return
            member.restarts += 1
            member.last_exit = self._exit_reason(member) or member.last_exit
            # in case a port was taken meanwhile (a process died of it, or may have)
            if member.plan is not None and member.app is not None and not member.app.alive():
                self._reallocate(member, ("app",))
            if member.sidecar is not None and not member.sidecar.alive():
                self._reallocate(member, ("admin",))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(member.stop_event.wait(), backoff.next_delay())

    async def _spawn_missing(self, member: Member) -> None:
        logs = self.state_dir / "logs"
        short = member.name.split(".")[0] + "." + member.entry.node.namespace
        net = self.net if member.plan is not None else None
        if net is not None:
            await net.ensure(member.name, member.entry.node.namespace)
        if member.sidecar is None or not member.sidecar.alive():
            if net is None:
                argv = self.sidecar_argv(member.entry, self.control_url)
            else:  # it reaches the control plane over the run's bridge
                url = net.control_url(urlsplit(self.control_url).port or 80)
                argv = net.wrap(member.name, self.sidecar_argv(member.entry, url), proxy=True)
            member.sidecar = await spawn(argv, env=self.base_env,
                                         log_path=logs / f"{short}.sidecar.log")
        if member.plan is not None and (member.app is None or not member.app.alive()):
            env = plan_mod.process_env(
                member.plan, base=self.base_env, app_port=member.entry.ports["app"],
                outbound_port=member.entry.ports["outbound"],
                exe_dir=str(Path(sys.executable).parent), intercept=net is not None,
            )
            cwd = member.plan.working_dir or str(self.workdir)
            argv = list(member.plan.command)
            if net is not None:
                argv = net.wrap(member.name, argv, proxy=False)
            member.app = await spawn(argv, env=env, cwd=cwd,
                                     log_path=logs / f"{short}.app.log")
        self._save()

    def _reallocate(self, member: Member, keys: tuple[str, ...]) -> None:
        """Fresh ports for `keys` (another process took one); the sidecar learns them from
        its next snapshot, and the replica is an endpoint again only once it is ready."""
        if not keys or (self.net is not None and member.plan is not None):
            return  # in its own netns nothing else can hold its ports
        ports = dict(member.entry.ports)
        for key in keys:
            if key in ports:
                ports[key] = self.ports.allocate()
        e = member.entry
        inbound = f"127.0.0.1:{ports['inbound']}" if "inbound" in ports else e.inbound
        admin = f"127.0.0.1:{ports['admin']}" if "admin" in ports else e.admin
        member.entry = ProxyEntry(e.node, admin, inbound, e.address, ports, e.origin)
        self.plane.register(member.entry)
        self._save()

    def _procs(self, member: Member) -> list[Proc]:
        return [p for p in (member.sidecar, member.app) if p is not None]

    async def _until_ready(self, member: Member) -> bool:
        while not member.stopping:
            if not all(p.alive() for p in self._procs(member)):
                return False
            sync = self.plane.ledger.row(member.name)
            if (sync.nacked and sync.nacked == sync.desired and "in use" in sync.nack_reason
                    and member.reallocated_for != sync.nacked):
                member.reallocated_for = sync.nacked
                self._reallocate(member, ("inbound", "outbound") if member.plan else ())
            if await self._is_ready(member):
                return True
            await asyncio.sleep(READY_POLL)
        return False

    async def _is_ready(self, member: Member) -> bool:
        if not self.plane.ledger.row(member.name).current:
            return False
        ports = member.entry.ports
        # a replica in its netns is checked from inside it, as a kubelet probes a pod
        dialer = self.net.dialer(member.name) if self.net and member.plan else None
        dial = dialer.open_connection if dialer is not None else None
        for key, host in (("inbound", member.entry.address), ("outbound", "127.0.0.1")):
            if key in ports and not await port_open(ports[key], host, dial):
                return False
        if member.plan is None:
            return True
        if member.plan.readiness_path:
            return await http_ok(ports["app"], member.plan.readiness_path, dial=dial)
        return await port_open(ports["app"], dial=dial)

    async def _until_exit(self, member: Member) -> None:
        waits = [asyncio.ensure_future(p.wait()) for p in self._procs(member)]
        waits.append(asyncio.ensure_future(member.stop_event.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    def _exit_reason(self, member: Member) -> str:
        for label, proc in (("sidecar", member.sidecar), ("app", member.app)):
            if proc is not None and not proc.alive():
                return f"{label} exited"
        return ""

    def _set_ready(self, member: Member, ready: bool) -> None:
        changed = member.ready != ready
        member.ready = ready
        if member.plan is not None:
            if ready:
                self.plane.set_replica(self._replica(member))
            else:
                self.plane.remove_replica(member.name)
            if changed:
                self._repace()
        self._changed.set()

    def _replica(self, member: Member) -> Replica:
        node, ports = member.entry.node, member.entry.ports
        return Replica(
            workload=node.workload, kind="Deployment", namespace=node.namespace,
            labels=dict(node.labels), service_account=node.service_account,
            address=member.entry.address, port=ports["inbound"], app_port=ports["app"],
            name=member.name,
        )

    # ------------------------------------------------------------ stopping

    async def _retire(self, name: str) -> None:
        member = self.members.get(name)
        if member is None or member.plan is None:
            return
        member.stopping = True
        member.stop_event.set()
        self._set_ready(member, False)
        since = self.plane.generation
        others = [e.name for e in self.plane.book.all()
                  if e.name != name and not (e.name in self.members
                                             and self.members[e.name].stopping)]
        await self.plane.wait_current(others, DRAIN_WAIT, since_gen=since)
        await self._stop_member(member)
        self.members.pop(name, None)
        self._retiring.discard(name)
        self.plane.unregister(name)
        self._save()

    async def _stop_member(self, member: Member) -> None:
        member.stopping = True
        member.stop_event.set()
        if member.sidecar is not None:
            await member.sidecar.stop()
        if member.app is not None:
            await member.app.stop()
        if member.task is not None:
            member.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await member.task
        if self.net is not None and member.plan is not None:
            await self.net.release(member.name)

    async def stop_all(self) -> None:
        """Stop everything: all sidecars first (they drain), then all apps."""
        self._plan = None  # exits from here on are not a rolling update to continue
        members = list(self.members.values())
        for m in members:
            m.stopping = True
            m.stop_event.set()
        await asyncio.gather(*(m.sidecar.stop() for m in members if m.sidecar))
        await asyncio.gather(*(m.app.stop() for m in members if m.app))
        for m in members:
            if m.task is not None:
                m.task.cancel()
        await asyncio.gather(*(m.task for m in members if m.task), return_exceptions=True)
        if self.net is not None:
            for m in members:
                if m.plan is not None:
                    await self.net.release(m.name)
        self.members.clear()
        self._save()

    def set_services(self, services: Iterable[tuple[str, str, str]]) -> None:
        """The mesh's services (name, namespace, host): the names a replica's netns resolves
        (--intercept only; with HTTP_PROXY the sidecar reads the name from the request)."""
        if self.net is not None:
            self.net.set_services(services, {n: m.entry.node.namespace
                                             for n, m in self.members.items()
                                             if m.plan is not None})

    # ------------------------------------------------------------ views

    def ready_counts(self) -> dict[tuple[str, str], int]:
        """Ready replicas per (namespace, workload): the availability a rollout paces by."""
        out: dict[tuple[str, str], int] = {}
        for m in self.members.values():
            if m.plan is not None and m.ready and not m.stopping:
                key = (m.plan.namespace, m.plan.workload)
                out[key] = out.get(key, 0) + 1
        return out

    def all_ready(self) -> bool:
        return bool(self.members) and all(
            m.ready for m in self.members.values() if not m.stopping
        )

    async def wait_all_ready(self, timeout: float) -> bool:
        """Every member ready, and every connected proxy holding a snapshot that has them.

        Replicas become endpoints only when ready (`_set_ready`), so "ready" must also
        wait for the push that carries them: announced sooner, the first request finds
        no endpoint ("no healthy upstream")."""
        loop_time = asyncio.get_running_loop().time
        deadline = loop_time() + timeout

        async def loop() -> None:
            while not self.all_ready():
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(loop(), timeout)
        except TimeoutError:
            return False
        names = [e.name for e in self.plane.book.all()]
        return await self.plane.wait_current(names, max(0.0, deadline - loop_time()))

    def _save(self) -> None:
        """Record pids and ports in the state dir (for people, and for a restarted `up`)."""
        rows = {}
        for name, m in self.members.items():
            rows[name] = {
                "ports": dict(m.entry.ports),
                "workload": m.entry.node.workload,
                "namespace": m.entry.node.namespace,
                "kind": m.entry.node.kind,
                "sidecar_pid": m.sidecar.pid if m.sidecar else None,
                "app_pid": m.app.pid if m.app else None,
            }
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / MEMBERS_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows, indent=1, sort_keys=True))
        tmp.replace(path)
