"""One pod, carried out: sandbox, init containers in order, containers with probes and restarts,
graceful stop, teardown, final delete. Every decision comes from `lifecycle`, `probes` and
`podstatus`; this module only waits on processes and timers and reports through `PodApi`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lightkube.models.core_v1 import Container
from lightkube.resources.core_v1 import Pod

from tollway.devnode import mountpoints, runtime
from tollway.devnode.envvars import (
    EnvError,
    PodFacts,
    ServiceFacts,
    container_argv,
    container_env,
)
from tollway.devnode.lifecycle import (
    CrashBackoff,
    Effect,
    Event,
    State,
    exit_event,
    exit_reason,
    signal_exit_code,
    transition,
)
from tollway.devnode.podfiles import DnsError, hostname, hosts_file, resolv_conf
from tollway.devnode.podstatus import JSON, ContainerRecord, Terminated, pod_status
from tollway.devnode.probes import Kind, ProbeSpecError, ProbeTracker, resolve_action, trackers_for
from tollway.devnode.volumes import (
    Sources,
    VolumeError,
    VolumePlan,
    container_mounts,
    needed_tokens,
    plan_volume,
)

log = logging.getLogger("tollway.devnode")
PULLED = "image {image} not pulled: devnode runs the container's command on the host"


@dataclass(frozen=True)
class HostConfig:
    node_name: str
    node_ip: str
    state_dir: Path
    cluster_dns: str
    cluster_domain: str
    backoff_base: float = 10.0
    backoff_cap: float = 300.0
    probe_scale: float = 1.0
    max_grace: float | None = None  # cap on grace periods (agent shutdown)


@dataclass(frozen=True)
class EnvInputs:
    services: list[ServiceFacts]
    config_maps: dict[str, dict[str, str]]
    secrets: dict[str, dict[str, str]]


class PodApi(Protocol):
    async def patch_status(self, pod: Pod, status: JSON) -> None: ...
    async def event(self, pod: Pod, kind: str, reason: str, message: str) -> None: ...
    async def env_inputs(self, pod: Pod) -> EnvInputs: ...
    async def token(self, pod: Pod, service_account: str, audience: str, seconds: int) -> str: ...
    async def delete(self, pod: Pod) -> None: ...


class PodNetwork(Protocol):
    async def attach(self, uid: str) -> tuple[str, str]: ...  # (ip, netns)
    async def detach(self, uid: str) -> None: ...


def pod_dir(state_dir: Path, pod: Pod) -> Path:
    m = pod.metadata
    assert m is not None
    return state_dir / "pods" / f"{m.namespace}_{m.name}_{m.uid}"


def _conditions(pod: Pod) -> list[JSON]:
    conds = pod.status.conditions if pod.status and pod.status.conditions else []
    return [c.to_dict() for c in conds]


class PodWorker:
    def __init__(self, pod: Pod, host: HostConfig, api: PodApi, net: PodNetwork) -> None:
        assert pod.metadata is not None and pod.spec is not None
        self.pod = pod
        self.host = host
        self.api = api
        self.net = net
        self.uid = pod.metadata.uid or ""
        self.name = pod.metadata.name or ""
        self.namespace = pod.metadata.namespace or "default"
        self.spec = pod.spec
        self.policy = self.spec.restartPolicy or "Always"
        self.dir = pod_dir(host.state_dir, pod)
        prior = (
            {s.name: s.restartCount for s in (pod.status.containerStatuses or [])}
            if pod.status
            else {}
        )
        has_inits = bool(self.spec.initContainers)
        self.inits = [
            ContainerRecord(
                c.name,
                c.image or "",
                init=True,
                sidecar=c.restartPolicy == "Always",
                waiting_reason="PodInitializing",
            )
            for c in self.spec.initContainers or []
        ]
        self.mains = [
            ContainerRecord(
                c.name,
                c.image or "",
                restart_count=prior.get(c.name, 0),
                waiting_reason="PodInitializing" if has_inits else "ContainerCreating",
            )
            for c in self.spec.containers
        ]
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.env: dict[str, dict[str, str]] = {}
        self.pod_ip: str | None = None
        self.netns: str | None = None
        self.sandbox_ready = False
        self.start_wall = time.time()
        self.stop_event = asyncio.Event()
        self.delete_when_done = False
        self.crashed = False
        self.grace = float(self.spec.terminationGracePeriodSeconds or 30)
        self.dirty = asyncio.Event()
        self.volumes: dict[str, VolumePlan] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # ---- entry points the agent calls ------------------------------------------------------
    def update(self, pod: Pod) -> None:
        self.pod = pod

    def request_stop(self, grace: float | None, *, delete: bool) -> None:
        """Pod deleted (delete=True) or agent shutting down: stop every container gracefully."""
        self.delete_when_done = self.delete_when_done or delete
        if grace is not None:
            self.grace = grace
        if self.host.max_grace is not None:
            self.grace = min(self.grace, self.host.max_grace)
        if self.stop_event.is_set():
            return
        self.stop_event.set()
        for rec in [*self.inits, *self.mains]:
            rec.state, effect = transition(rec.state, Event.STOP)
            proc = self.procs.get(rec.name)
            if effect is Effect.SIGTERM and proc is not None:
                self._spawn_task(runtime.stop(proc, self.grace))
        self._mark()

    async def run(self) -> None:
        publisher = asyncio.create_task(self._publisher())
        try:
            if await self._setup_sandbox():
                await self._run_containers()
        except Exception:
            # A bug must not leave the pod stuck: tear down and let the agent start it afresh.
            log.exception(
                "pod %s/%s: worker failed; it will be restarted", self.namespace, self.name
            )
            self.crashed = not self.stop_event.is_set()
        finally:
            await self._teardown()
            await self._publish_now()
            publisher.cancel()
            if not self.crashed:
                await self.stop_event.wait()
            if self.delete_when_done:
                with contextlib.suppress(Exception):
                    await self.api.delete(self.pod)

    # ---- sandbox -------------------------------------------------------------------------
    async def _setup_sandbox(self) -> bool:
        self.dir.mkdir(parents=True, exist_ok=True)
        while not self.stop_event.is_set():
            try:
                if self.spec.hostNetwork:
                    ip, ns = self.host.node_ip, None
                else:
                    ip, ns = await self.net.attach(self.uid)
                self._write_files(ip)
            except (OSError, RuntimeError, ValueError) as e:
                await self.api.event(self.pod, "Warning", "FailedCreatePodSandBox", str(e))
                if await self._sleep_or_stop(5.0):
                    return False
                continue
            self.pod_ip, self.netns = ip, ns
            if not await self._prepare_volumes():
                return False
            self.sandbox_ready = True
            self._mark()
            for c in [*(self.spec.initContainers or []), *self.spec.containers]:
                await self.api.event(self.pod, "Normal", "Pulled", PULLED.format(image=c.image))
            return True
        return False

    def facts(self) -> PodFacts:
        m = self.pod.metadata
        assert m is not None
        return PodFacts(
            name=self.name,
            namespace=self.namespace,
            uid=self.uid,
            node_name=self.host.node_name,
            service_account=self.spec.serviceAccountName or "default",
            pod_ip=self.pod_ip or "",
            host_ip=self.host.node_ip,
            labels=m.labels or {},
            annotations=m.annotations or {},
        )

    async def _prepare_volumes(self) -> bool:
        """Write every volume's files; retried like kubelet's FailedMount until it works."""
        while not self.stop_event.is_set():
            try:
                await self._write_volumes()
            except Exception as e:  # any failure is a FailedMount to retry, never a dead pod
                if not isinstance(e, (VolumeError, OSError, RuntimeError)):
                    log.exception("pod %s/%s: volumes", self.namespace, self.name)
                for rec in self.mains:
                    rec.waiting_message = str(e)
                self._mark()
                await self.api.event(self.pod, "Warning", "FailedMount", str(e))
                if await self._sleep_or_stop(5.0):
                    return False
                continue
            keys = needed_tokens(self.spec)
            if keys:
                refresh = 0.8 * min(seconds for _, seconds in keys)
                self._spawn_task(self._refresh_tokens(refresh))
            return True
        return False

    async def _write_volumes(self) -> None:
        inputs = await self.api.env_inputs(self.pod)
        sa = self.spec.serviceAccountName or "default"
        tokens = {
            key: await self.api.token(self.pod, sa, key[0], key[1])
            for key in set(needed_tokens(self.spec))
        }
        plans = {
            v.name: plan_volume(
                v, self.facts(), Sources(inputs.config_maps, inputs.secrets, tokens)
            )
            for v in self.spec.volumes or []
        }
        for plan in plans.values():
            root = self.dir / "volumes" / plan.name
            root.mkdir(parents=True, exist_ok=True)
            for rel, (data, mode) in plan.files.items():
                path = root / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.tmp")
                tmp.write_bytes(data)
                tmp.chmod(mode)
                tmp.replace(path)
        self.volumes = plans

    async def _refresh_tokens(self, every: float) -> None:
        """Projected service account tokens expire; rewrite them well before they do."""
        while not await self._sleep_or_stop(every):
            try:
                await self._write_volumes()
            except (VolumeError, OSError, RuntimeError) as e:
                log.warning("pod %s/%s: token refresh failed: %s", self.namespace, self.name, e)

    def bind_mounts(self, c: Container) -> list[runtime.BindMount]:
        out = []
        for m in container_mounts(c, self.volumes):
            plan = self.volumes[m.volume]
            base = Path(plan.host_path) if plan.host_path else self.dir / "volumes" / m.volume
            source = base / m.sub_path if m.sub_path else base
            if plan.empty_dir and m.sub_path:
                source.mkdir(parents=True, exist_ok=True)
            if not source.exists():
                raise VolumeError(
                    f"container {c.name!r} mount {m.volume!r}: {source} does not exist; "
                    "check subPath / hostPath"
                )
            mountpoints.ensure(self.host.state_dir, Path(m.target), is_dir=source.is_dir())
            out.append(runtime.BindMount(source, m.target, m.read_only))
        return out

    def _write_files(self, ip: str) -> None:
        try:
            host_resolv = Path("/etc/resolv.conf").read_text()
        except OSError:
            host_resolv = ""
        try:
            resolv = resolv_conf(
                self.spec,
                namespace=self.namespace,
                domain=self.host.cluster_domain,
                cluster_dns=self.host.cluster_dns,
                host_resolv=host_resolv,
            )
        except DnsError as e:
            raise ValueError(str(e)) from e
        (self.dir / "resolv.conf").write_text(resolv)
        (self.dir / "hosts").write_text(
            hosts_file(
                self.spec,
                pod_name=self.name,
                pod_ip=ip,
                namespace=self.namespace,
                domain=self.host.cluster_domain,
            )
        )

    def sandbox(self) -> runtime.Sandbox:
        return runtime.Sandbox(
            netns=self.netns,
            resolv_conf=self.dir / "resolv.conf",
            hosts=self.dir / "hosts",
            # hostNetwork pods share the node's UTS namespace on Kubernetes: the node's name.
            hostname=socket.gethostname()
            if self.spec.hostNetwork
            else hostname(self.name, self.spec),
        )

    async def _teardown(self) -> None:
        for proc in list(self.procs.values()):
            await runtime.stop(proc, 0)
        if not self.spec.hostNetwork:  # also after a half-done attach: detach is idempotent
            with contextlib.suppress(Exception):
                await self.net.detach(self.uid)
        self.sandbox_ready = False
        self._mark()

    # ---- containers ----------------------------------------------------------------------
    async def _run_containers(self) -> None:
        sidecars: list[asyncio.Task[None]] = []
        for c, rec in zip(self.spec.initContainers or [], self.inits, strict=True):
            if rec.sidecar:  # starts, keeps running beside the app, the next init waits for it
                sidecars.append(asyncio.create_task(self._supervise(rec, c, init=False)))
                while not rec.initialized and not self.stop_event.is_set():
                    await asyncio.sleep(0.05)
                continue
            await self._supervise(rec, c, init=True)
            if not rec.succeeded:
                await self._stop_sidecars(sidecars)
                return
        for rec in self.mains:
            if rec.waiting_reason == "PodInitializing":
                rec.waiting_reason = "ContainerCreating"
        await asyncio.gather(
            *(
                self._supervise(rec, c, init=False)
                for c, rec in zip(self.spec.containers, self.mains, strict=True)
            )
        )
        # The app is done (Job-like pods): sidecars stop too, as kubelet does.
        await self._stop_sidecars(sidecars)

    async def _stop_sidecars(self, sidecars: list[asyncio.Task[None]]) -> None:
        for c, rec in zip(self.spec.initContainers or [], self.inits, strict=True):
            if rec.sidecar:
                rec.state, effect = transition(rec.state, Event.STOP)
                proc = self.procs.get(c.name)
                if effect is Effect.SIGTERM and proc is not None:
                    self._spawn_task(runtime.stop(proc, self.grace))
        if sidecars:
            await asyncio.gather(*sidecars)

    async def _prepare(
        self, c: Container
    ) -> tuple[list[str], dict[str, str], list[runtime.BindMount]]:
        inputs = await self.api.env_inputs(self.pod)
        facts = self.facts()
        services = (
            inputs.services
            if self.spec.enableServiceLinks is not False
            else [s for s in inputs.services if s.name == "kubernetes"]
        )
        env = container_env(
            c, facts, services=services, config_maps=inputs.config_maps, secrets=inputs.secrets
        )
        try:
            mounts = self.bind_mounts(c)
        except VolumeError as e:
            raise EnvError(str(e)) from e
        return container_argv(c, env), env, mounts

    def _run_as_group(self, c: Container) -> int | None:
        """securityContext.runAsGroup, the container's over the pod's (as the kubelet)."""
        own = c.securityContext.runAsGroup if c.securityContext is not None else None
        if own is not None:
            return int(own)
        spec = self.pod.spec
        pod_ctx = spec.securityContext if spec is not None else None
        return int(pod_ctx.runAsGroup) if pod_ctx is not None and pod_ctx.runAsGroup is not None \
            else None

    async def _supervise(self, rec: ContainerRecord, c: Container, *, init: bool) -> None:
        backoff = CrashBackoff(
            base=self.host.backoff_base, cap=max(self.host.backoff_cap, self.host.backoff_base)
        )
        while rec.state is State.WAITING and not self.stop_event.is_set():
            try:
                argv, env, mounts = await self._prepare(c)
            except EnvError as e:
                rec.waiting_reason, rec.waiting_message = "CreateContainerConfigError", str(e)
                self._mark()
                await self.api.event(self.pod, "Warning", "Failed", f"Error: {e}")
                await self._sleep_or_stop(max(self.host.backoff_base, 1.0))
                continue
            if rec.current is not None:
                rec.restart_count += 1
            log_path = self.dir / c.name / f"{rec.restart_count}.log"
            started, mono = time.time(), time.monotonic()
            try:
                proc = await runtime.spawn(
                    self.sandbox(), argv, env, log_path, c.workingDir or None, mounts,
                    self._run_as_group(c),
                )
            except OSError as e:
                rec.state, _ = transition(rec.state, Event.START_FAILED)
                rec.finished(Terminated(128, "StartError", started, time.time(), str(e)))
                await self.api.event(self.pod, "Warning", "Failed", f"Error: {e}")
            else:
                await self._watch_run(rec, c, proc, env, init, started, mono)
            if rec.state is State.BACKOFF:
                await self._backoff(rec, c, backoff, time.monotonic() - mono)
        if rec.state in (State.WAITING, State.BACKOFF):
            rec.state, _ = transition(rec.state, Event.STOP)
        self._mark()

    async def _watch_run(
        self,
        rec: ContainerRecord,
        c: Container,
        proc: asyncio.subprocess.Process,
        env: dict[str, str],
        init: bool,
        started: float,
        mono: float,
    ) -> None:
        self.procs[c.name], self.env[c.name] = proc, env
        rec.state, _ = transition(rec.state, Event.STARTED)
        rec.pid, rec.started_at, rec.started_mono = proc.pid, started, mono
        rec.waiting_reason, rec.waiting_message = "ContainerCreating", ""
        await self.api.event(self.pod, "Normal", "Started", f"Started container {c.name}")
        if self.stop_event.is_set():  # deleted while starting
            rec.state, _ = transition(rec.state, Event.STOP)
            self._spawn_task(runtime.stop(proc, self.grace))
        probing = asyncio.create_task(self._probe_loop(rec, c, proc))
        self._mark()
        pidfile = self.host.state_dir / "pids" / f"{self.uid}-{c.name}.pid"
        if self.netns is None:  # host netns: `down` can only find it by this record
            pidfile.parent.mkdir(parents=True, exist_ok=True)
            pidfile.write_text(runtime.pid_record(proc.pid) + "\n")
        code = signal_exit_code(await proc.wait())
        pidfile.unlink(missing_ok=True)
        probing.cancel()
        runtime.signal_group(proc.pid, 9)  # leftovers of the group go with their leader
        self.procs.pop(c.name, None)
        ev = (
            Event.EXIT_FINAL
            if rec.state is State.STOPPING
            else exit_event("Always" if rec.sidecar else self.policy, code, init=init)
        )
        rec.state, _ = transition(rec.state, ev)
        rec.finished(Terminated(code, exit_reason(code), started, time.time()))
        self._mark()

    async def _backoff(
        self, rec: ContainerRecord, c: Container, backoff: CrashBackoff, ran: float
    ) -> None:
        delay = backoff.delay_after_exit(ran)
        rec.waiting_message = (
            f"back-off {delay:g}s restarting failed container={c.name} "
            f"pod={self.name}_{self.namespace}({self.uid})"
        )
        self._mark()
        if delay > 0:
            await self.api.event(
                self.pod,
                "Warning",
                "BackOff",
                f"Back-off restarting failed container {c.name} in pod "
                f"{self.name}_{self.namespace}",
            )
        if await self._sleep_or_stop(delay):
            return
        rec.state, _ = transition(rec.state, Event.BACKOFF_ELAPSED)

    # ---- probes --------------------------------------------------------------------------
    async def _probe_loop(
        self, rec: ContainerRecord, c: Container, proc: asyncio.subprocess.Process
    ) -> None:
        try:
            trackers = trackers_for(c, time.monotonic(), scale=self.host.probe_scale)
        except ProbeSpecError as e:
            await self.api.event(self.pod, "Warning", "Unhealthy", str(e))
            trackers = {}
        rec.started = "startup" not in trackers
        rec.initialized = rec.initialized or rec.started
        rec.ready = rec.started and "readiness" not in trackers
        self._mark()
        while proc.returncode is None and rec.state is State.RUNNING:
            active = {k: t for k, t in trackers.items() if (k == "startup") != rec.started}
            if not active:
                return
            await asyncio.sleep(
                max(0.0, min(t.next_due for t in active.values()) - time.monotonic())
            )
            for kind, tracker in active.items():
                if tracker.due(time.monotonic()) and rec.state is State.RUNNING:
                    await self._probe_once(rec, c, proc, kind, tracker)

    async def _probe_once(
        self,
        rec: ContainerRecord,
        c: Container,
        proc: asyncio.subprocess.Process,
        kind: Kind,
        tracker: ProbeTracker,
    ) -> None:
        spec = {
            "startup": c.startupProbe,
            "liveness": c.livenessProbe,
            "readiness": c.readinessProbe,
        }[kind]
        assert spec is not None
        try:
            action = resolve_action(c, spec, kind, self.pod_ip or "127.0.0.1")
        except ProbeSpecError as e:
            ok, msg = False, str(e)
        else:
            ok, msg = await runtime.probe(
                action, timeout=tracker.timeout, pid=rec.pid, env=self.env.get(c.name, {})
            )
        if rec.state is not State.RUNNING:
            return
        flip = tracker.record(ok, time.monotonic())
        if not ok and (tracker.failures == 1 or flip is False):
            await self.api.event(
                self.pod, "Warning", "Unhealthy", f"{kind.capitalize()} probe failed: {msg}"
            )
        if flip is None:
            return
        if kind == "readiness":
            rec.ready = flip
        elif kind == "startup" and flip:
            rec.started = rec.initialized = True
            rec.ready = c.readinessProbe is None
        elif not flip:
            await self._kill_unhealthy(rec, c, proc, kind)
        self._mark()

    async def _kill_unhealthy(
        self, rec: ContainerRecord, c: Container, proc: asyncio.subprocess.Process, kind: str
    ) -> None:
        rec.state, effect = transition(rec.state, Event.UNHEALTHY)
        rec.ready = False
        await self.api.event(
            self.pod,
            "Normal",
            "Killing",
            f"Container {c.name} failed {kind} probe, will be restarted",
        )
        if effect is Effect.SIGTERM:
            self._spawn_task(runtime.stop(proc, self.grace))

    # ---- status --------------------------------------------------------------------------
    def _mark(self) -> None:
        self.dirty.set()

    def status(self) -> JSON:
        gates = {g.conditionType: False for g in self.spec.readinessGates or []}
        for cond in _conditions(self.pod):
            if cond.get("type") in gates:
                gates[cond["type"]] = cond.get("status") == "True"
        return pod_status(
            policy=self.policy,
            inits=self.inits,
            mains=self.mains,
            pod_ip=self.pod_ip,
            host_ip=self.host.node_ip,
            start_time=self.start_wall,
            sandbox_ready=self.sandbox_ready,
            gates=gates,
            prev_conditions=_conditions(self.pod),
            now=time.time(),
        )

    async def _publish_now(self) -> None:
        self.dirty.clear()
        try:
            await self.api.patch_status(self.pod, self.status())
        except Exception as e:
            log.warning("pod %s/%s: status update failed: %s", self.namespace, self.name, e)
            self.dirty.set()

    async def _publisher(self) -> None:
        while True:
            await self.dirty.wait()
            await asyncio.sleep(0.05)  # coalesce a burst of changes into one PATCH
            await self._publish_now()
            if self.dirty.is_set():
                await asyncio.sleep(1.0)

    # ---- helpers -------------------------------------------------------------------------
    async def _sleep_or_stop(self, seconds: float) -> bool:
        """Wait `seconds`; True when the pod is being stopped meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop_event.wait(), timeout=seconds)
        return self.stop_event.is_set()

    def _spawn_task(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
