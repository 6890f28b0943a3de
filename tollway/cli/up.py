"""`tollway up DIR`: the control plane, every replica with its sidecar, a client and a gateway.

Runs in the foreground. Prints one line containing `ready` once every replica, the client
proxy and the gateway proxy are ready, then a compact live view (a plain event log when
stdout is not a terminal). Ctrl-C or SIGTERM stops everything it started, drained, and
exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import typer
from aiohttp import web

from tollway.cli import credentials, meshflag, up_lock
from tollway.config.findings import Finding
from tollway.config.meshconfig import MeshConfig
from tollway.config.resource import ResourceSet
from tollway.control import auth, ca, serve
from tollway.control.applied import AppliedConfig
from tollway.control.compiler import MeshCompiler
from tollway.control.folder import ManifestFolder
from tollway.control.guard import Guard
from tollway.control.local import jaeger as jaeger_mod
from tollway.control.local import plan as plan_mod
from tollway.control.local import prometheus as prom_mod
from tollway.control.local.procs import PortAllocator, Proc, port_free
from tollway.control.local.supervisor import Supervisor, default_sidecar_argv
from tollway.control.plane import ControlPlane
from tollway.control.proxies import ProxyEntry
from tollway.control.store import ApplyResult, ConfigStore, default_validator
from tollway.dashboard import web as dashboard_web
from tollway.kit.clock import MonotonicClock
from tollway.snapshot import types

log = logging.getLogger("tollway.up")
READY_TIMEOUT = 120.0
GATEWAY_NODE = types.Node(
    name="istio-ingressgateway.istio-system", workload="istio-ingressgateway",
    namespace="istio-system", kind="gateway",
    service_account="istio-ingressgateway-service-account",  # Istio's, for AuthorizationPolicy
)  # no labels: the one local gateway proxy serves every Gateway, whatever its selector
CLIENT_NODE = types.Node(name="tollway-client.default", workload="tollway-client",
                         namespace="default", kind="client", labels={"app": "tollway-client"},
                         service_account="tollway-client")  # like a `curl` pod's own SA


def local_validator(resources: ResourceSet) -> list[Finding]:
    """Cross-resource checks plus local mode's own rule: workloads need a command."""
    return list(default_validator(resources)) + plan_mod.refusal_findings(resources)


class _PortTaken(Exception):
    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.port = port


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"tollway up: {message}", err=True)
    raise typer.Exit(code)


class Up:
    """Everything `tollway up` runs, wired together."""

    def __init__(self, root: Path, state_dir: Path, api_port: int, client_port: int,
                 gateway_offset: int, echo: Callable[[str], None],
                 cert_ttl: float = ca.DEFAULT_TTL, prometheus_port: int | None = None,
                 *, live_view: bool = True, signals: bool = True,
                 mesh: MeshConfig | None = None, tracing: bool = False,
                 intercept: bool = False) -> None:
        self.root = root
        self.intercept = intercept  # --intercept: replicas in netns, traffic captured
        self.net: Any = None  # its Intercept once claimed
        self.mesh = mesh  # --mesh-config: what every proxy applies mesh-wide
        self.tracing = tracing  # --tracing: run Jaeger, the mesh's default tracing provider
        self.jaeger: jaeger_mod.MeshJaeger | None = None
        # The demo tells its own story on the terminal and handles Ctrl-C itself: it runs
        # the mesh with neither the live table nor `up`'s own signal handlers.
        self.live_view = live_view
        self.signals = signals
        self.state_dir = state_dir
        self.api_port = api_port
        self.client_port = client_port
        self.gateway_offset = gateway_offset
        self.echo = echo
        self.cert_ttl = cert_ttl
        self.prometheus_port = prometheus_port  # None: run no Prometheus (the demo)
        self.prometheus: prom_mod.MeshPrometheus | None = None
        self.prometheus_url: str | None = None
        self.url = f"http://127.0.0.1:{api_port}"
        self.store = ConfigStore(validator=local_validator)
        self.folder = ManifestFolder(root, self.store, on_result=self._folder_result,
                                     on_shadowed=self._shadowed)
        self.applied = AppliedConfig(state_dir, self.store, self.folder)
        self.plane: ControlPlane | None = None
        self.supervisor: Supervisor | None = None
        self.rollout: Any = None
        self._reconcile_wanted = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._warned: set[str] = set()

    def _folder_result(self, result: ApplyResult) -> None:
        if not result.ok:
            self.echo(f"manifests in {self.root} not applied (nothing changed):")
            for f in result.findings:
                if f.is_error:
                    self.echo("  " + f.render())
            return
        # Warnings never block (e.g. a ConfigMap that local mode ignores); each is said
        # once, not again on every later change of the folder.
        for f in result.findings:
            line = f.render()
            if not f.is_error and line not in self._warned:
                self._warned.add(line)
                self.echo(line)
        if result.changed or result.deleted:
            self.echo(f"applied from {self.root}: {len(result.changed)} changed, "
                      f"{len(result.deleted)} deleted")

    def _shadowed(self, key: tuple[str, str, str]) -> None:
        self.echo(f"conflict: {'/'.join(key)} in {self.root} not applied: the version applied "
                  "through the API wins until `tollway delete` removes it")

    def _restore_applied(self) -> bool:
        """What `tollway apply` applied before a restart, over the folder; False: refused."""
        restored = self.applied.load()
        if restored is None:
            return True
        if not restored.ok:
            self.echo(f"the config applied through the API ({self.applied.path}) does not "
                      "validate with the folder's; nothing started:")
            for f in restored.findings:
                if f.is_error:
                    self.echo("  " + f.render())
            return False
        kept = len(self.store.from_source("api"))
        self.echo(f"restored {kept} resources applied through the API ({self.applied.path})")
        for key, why in sorted(self.applied.conflicts().items()):
            self.echo(f"conflict: {'/'.join(key)} {why}")
        return True

    async def run(self) -> int:
        first = self.folder.sync()
        if first is not None and not first.ok:
            return 1
        if not self._restore_applied():
            return 1
        if self.intercept and not await self._claim_network():
            return 1
        if self.tracing and not await self._start_jaeger():
            if self.net is not None:
                await self.net.close()
            return 1
        self.plane = ControlPlane(self.store, compiler=MeshCompiler(self.mesh))
        self.plane.on_refused = self._refused
        clock = MonotonicClock()
        signer = auth.TokenSigner(auth.load_or_create_key(self.state_dir))
        admin = auth.admin_token(self.state_dir, signer, clock.wall())

        def sidecar_argv(entry: ProxyEntry, url: str) -> list[str]:
            node = entry.node  # each sidecar's own credential, bound to its node
            path = auth.node_token_file(self.state_dir, signer, clock.wall(), name=node.name,
                                        namespace=node.namespace,
                                        service_account=node.service_account)
            if self.net is not None and self.net.addresses.get(node.name) is not None:
                path = self.net.hand_over(path)  # for its uid 1337, in its netns
            return default_sidecar_argv(entry, url, token_file=path)

        ports = PortAllocator([self.api_port, self.client_port])
        self.supervisor = Supervisor(self.plane, control_url=self.url,
                                     state_dir=self.state_dir, workdir=self.root, ports=ports,
                                     sidecar_argv=sidecar_argv, net=self.net)
        self.prometheus, self.prometheus_url = await prom_mod.prepare_for_up(
            self.state_dir, self.prometheus_port, f"{self.url}/v1/sd/prometheus", self.echo)
        routes = self._rollout_routes() + self._local_routes()
        routes += dashboard_web.routes(  # GET /dashboard, /v1/dashboard/...
            self.plane, tracing_url=self.jaeger.query_url if self.jaeger else None)
        routes += serve.ca_routes(  # workload certificates: mTLS between every proxy
            self.plane, ca.CertificateAuthority.load_or_create(self.state_dir), ttl=self.cert_ttl)
        routes += serve.token_routes(signer, clock)
        try:  # adopt survivors before serving, so no proxy ever sees a snapshot without them
            self._members(ports)
            runner = await serve.serve(
                serve.make_app(self.plane, guard=Guard(signer, clock), routes=routes,
                               applied=self.applied),
                "127.0.0.1", self.api_port)
            if self.net is not None:  # the replicas' sidecars call in over the bridge
                await web.TCPSite(runner, self.net.gateway, self.api_port,
                                  reuse_address=True).start()
        except (_PortTaken, OSError) as exc:
            port = exc.port if isinstance(exc, _PortTaken) else self.api_port
            flag = "--client-port" if isinstance(exc, _PortTaken) else "--api-port"
            self.echo(f"port {port} is in use; stop what uses it or pass {flag}")
            await self.supervisor.stop_all()
            if self.net is not None:
                await self.net.close()
            return 1
        if self.signals:
            self._install_signals()
        credentials.remember(self.url, admin)  # the CLI on this machine needs no flag
        try:
            await self._start()
            await self._announce_ready()
            await self._stop.wait()
        finally:
            credentials.forget(self.url, admin)
            await self._shutdown(runner)
        return 0

    async def _start_jaeger(self) -> bool:
        """Build (once) and start Jaeger, make it the default provider, print its URL."""
        try:
            binary = await jaeger_mod.ensure_built(
                self.state_dir / "logs" / "jaeger-build.log", self.echo)
            self.jaeger = jaeger_mod.MeshJaeger(binary, self.state_dir)
            await self.jaeger.start()
        except jaeger_mod.JaegerError as exc:
            self.echo(f"tollway up: --tracing: {exc}")
            return False
        self.mesh, notes = jaeger_mod.as_default_provider(self.mesh, self.jaeger.otlp_port)
        for note in notes:
            self.echo(f"tollway: {note}")
        self.echo(f"tracing: {self.jaeger.query_url}")
        return True

    async def _claim_network(self) -> bool:
        """--intercept: sweep dead runs' leftovers, take a slot and its bridge."""
        from tollway.control.local import intercept

        try:
            self.net, removed = await intercept.Intercept.claim(self.state_dir)
        except intercept.InterceptError as exc:
            self.echo(f"tollway up: {exc}")
            return False
        if removed:
            self.echo(f"tollway: removed what a stopped --intercept run left: "
                      f"{', '.join(removed)}")
        self.echo(f"tollway: intercepting: each replica in its own network namespace on "
                  f"bridge {self.net.bridge} ({self.net.gateway}/24), no HTTP_PROXY")
        return True

    def _members(self, ports: PortAllocator) -> None:
        """The client and gateway proxies, and whatever a killed `tollway up` left running."""
        assert self.supervisor is not None
        rows = self.supervisor.records()
        self._add_fixed(CLIENT_NODE, {"outbound": self.client_port}, rows, ports)
        self._add_fixed(GATEWAY_NODE, {"gateway_offset": self.gateway_offset}, rows, ports)
        adopted = self.supervisor.adopt(plan_mod.plan(self.store.current()), rows)
        if adopted:
            self.echo(f"tollway: adopted {len(adopted)} replicas still running from before")

    async def _start(self) -> None:
        assert self.plane is not None and self.supervisor is not None
        self._tasks.append(asyncio.create_task(self.plane.run()))
        self._tasks.append(asyncio.create_task(self.folder.watch()))
        self.store.subscribe(lambda _c: self._reconcile_wanted.set())
        self._reconcile_wanted.set()
        self._tasks.append(asyncio.create_task(self._reconcile_loop()))
        if self.prometheus is not None and not await self.prometheus.start():
            self.prometheus = None
        if self.rollout is not None:
            try:
                await self.rollout.start()
            except Exception as exc:  # the mesh still runs; rollouts are what is missing
                log.exception("the rollout controller did not start")
                self.echo(f"tollway: the rollout controller did not start ({exc}); the mesh "
                          f"runs without it, see {self.state_dir / 'tollway.log'}")
                self.rollout = None

    def _add_fixed(self, node: types.Node, ports: dict[str, int],
                   rows: dict[str, dict[str, Any]], allocator: PortAllocator) -> None:
        assert self.supervisor is not None
        row = rows.get(node.name)
        if row is not None:
            if all(row["ports"].get(k) == v for k, v in ports.items()):
                admin = int(row["ports"]["admin"])
                entry = ProxyEntry(node, admin=f"127.0.0.1:{admin}",
                                   ports={**ports, "admin": admin})
                self.supervisor.adopt_fixed(entry, row)
                return
            # a killed run's proxy on other ports (another --gateway-port-offset or
            # --client-port): stopped, as `adopt` stops replicas the plan dropped. Left
            # alone it served its old ports for good, following a control plane that
            # never came back, and no members.json named it any more.
            Proc(int(row["sidecar_pid"])).signal(signal.SIGTERM)
        if "outbound" in ports and not port_free(ports["outbound"]):
            raise _PortTaken(ports["outbound"])
        admin = allocator.allocate()
        self.supervisor.add_fixed(ProxyEntry(node, admin=f"127.0.0.1:{admin}",
                                             ports={**ports, "admin": admin}))

    async def _reconcile_loop(self) -> None:
        assert self.supervisor is not None
        while True:
            await self._reconcile_wanted.wait()
            self._reconcile_wanted.clear()
            try:
                current = self.store.current()
                if self.net is not None:
                    self.supervisor.set_services(_service_names(current))
                await self.supervisor.reconcile(plan_mod.plan(current))
            except Exception:  # the mesh keeps running; the next change tries again
                log.exception("starting or stopping replicas failed")

    def _unready(self) -> list[tuple[str, str]]:
        """Each member not ready, and the best word on why."""
        assert self.supervisor is not None and self.plane is not None
        out = []
        for name, m in sorted(self.supervisor.members.items()):
            if m.ready or m.stopping:
                continue
            sync = self.plane.ledger.row(name)
            if sync.nacked and sync.nacked == sync.desired:
                why = f"refused its config: {sync.nack_reason}"
            elif not sync.connected:
                why = "its proxy is not connected to the control plane"
            else:
                why = m.last_exit or "not answering yet"
            out.append((name, why))
        return out

    def _refused(self, proxy: str, reason: str) -> None:
        """A proxy refused its config: said at once, since that proxy stays unready (a
        gateway whose port is taken never serves) and `ready` would never come."""
        member = self.supervisor.members.get(proxy) if self.supervisor else None
        if member is not None and member.plan is not None and "in use" in reason:
            return  # a replica's port: the supervisor moves it to free ones
        hint = ""
        if proxy == GATEWAY_NODE.name and "in use" in reason:
            hint = "; stop what uses that port, or pass another --gateway-port-offset"
        self.echo(f"tollway: {proxy} refused its config: {reason}{hint}")

    async def _announce_ready(self) -> None:
        assert self.supervisor is not None
        ok = await _first(self.supervisor.wait_all_ready(READY_TIMEOUT), self._stop.wait())
        if self._stop.is_set():
            return
        replicas = sum(1 for m in self.supervisor.members.values() if m.plan is not None)
        if not ok:
            self.echo("not every replica became ready within "
                      f"{READY_TIMEOUT:.0f}s; see the logs in {self.state_dir / 'logs'}")
            for name, why in self._unready():
                self.echo(f"  {name}: {why}")
        self.echo(
            f"tollway: {'ready' if ok else 'running'}: {replicas} replicas; "
            f"client proxy http://127.0.0.1:{self.client_port}; "
            f"control plane {self.url}; logs {self.state_dir / 'logs'}"
            + await prom_mod.ready_suffix(self.prometheus, self.prometheus_url)
        )
        if not self.live_view:
            return
        from tollway.cli import up_view

        self._tasks.append(asyncio.create_task(up_view.show(self.supervisor, self.plane,
                                                            self.echo)))

    def _rollout_routes(self) -> list[web.RouteDef]:
        if importlib.util.find_spec("tollway.rollout.service") is None:
            return []
        from tollway.rollout import service  # type: ignore[attr-defined, unused-ignore]

        self.rollout = service.RolloutService(
            self.store, clock=MonotonicClock(), state_dir=self.state_dir,
            scrape_targets=self._scrape_targets, prometheus_url=self.prometheus_url,
            client_proxy=f"127.0.0.1:{self.client_port}",
            replica_ready=self.supervisor.ready_counts if self.supervisor else None,
        )
        routes: list[web.RouteDef] = list(self.rollout.routes())
        return routes

    def _scrape_targets(self) -> list[tuple[str, dict[str, str]]]:
        if self.plane is None:
            return []
        return [(g["targets"][0], dict(g["labels"]))
                for g in serve.prometheus_targets(self.plane)]

    def _local_routes(self) -> list[web.RouteDef]:
        async def members(_request: web.Request) -> web.Response:
            from tollway.cli import up_view

            rows = up_view.rows(self.supervisor, self.plane) if self.supervisor else []
            return web.json_response({"members": rows,
                                      "ready": bool(self.supervisor
                                                    and self.supervisor.all_ready())})

        return [web.get("/v1/local/members", members)]

    def stop(self) -> None:
        """Begin the orderly shutdown: sidecars drain, then the apps stop (a first Ctrl-C)."""
        self._stop.set()

    def kill_now(self) -> None:
        """SIGKILL every process this mesh started, at once (a second Ctrl-C)."""
        procs = [p for m in (self.supervisor.members.values() if self.supervisor else [])
                 for p in (m.sidecar, m.app) if p is not None]
        if self.prometheus is not None and self.prometheus.proc is not None:
            procs.append(self.prometheus.proc)
        if self.jaeger is not None and self.jaeger.proc is not None:
            procs.append(self.jaeger.proc)
        for proc in procs:
            proc.signal(signal.SIGKILL)

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()

        def on_signal(sig: int) -> None:
            if not self._stop.is_set():
                self.stop()
                return
            self.echo("tollway: stopped at once (killed every replica)")
            self.kill_now()
            os._exit(128 + sig)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)

    async def _shutdown(self, runner: web.AppRunner) -> None:
        self.echo("tollway: stopping (draining every sidecar, then the apps)")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.rollout is not None:
            with contextlib.suppress(Exception):
                await self.rollout.stop()
        if self.prometheus is not None:
            await self.prometheus.stop()
        if self.supervisor is not None:
            await self.supervisor.stop_all()
        if self.jaeger is not None:  # after the sidecars: their last spans are flushed
            await self.jaeger.stop()
        if self.net is not None:
            await self.net.close()
        if self.plane is not None:
            self.plane.close()
        await runner.cleanup()
        self.echo("tollway: stopped")


def _service_names(resources: ResourceSet) -> list[tuple[str, str, str]]:
    """(name, namespace, host) of every service the mesh knows; a ServiceEntry's hosts are
    names of their own ("" for the short name)."""
    from tollway.control.registry import build_registry

    return [("" if s.origin == "ServiceEntry" else s.name, s.namespace, s.host)
            for s in build_registry(resources).services.values()]


async def _first(*aws: Any) -> bool:
    tasks = [asyncio.ensure_future(a) for a in aws]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for t in pending:
        t.cancel()
    result = next(iter(done)).result()
    return bool(result)


def _setup_logging(state_dir: Path) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(state_dir / "tollway.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for noisy in ("httpx", "httpcore", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _safe_echo(line: str) -> None:
    """Print, but never let a closed stdout stop `tollway up` before it stopped its children."""
    try:
        typer.echo(line)
    except (BrokenPipeError, OSError):
        log.info("stdout closed; %s", line)


def run_up(root: Path, *, api_port: int, client_port: int, gateway_offset: int,
           state_dir: Path | None, echo: Callable[[str], None] = _safe_echo,
           cert_ttl: float = ca.DEFAULT_TTL, prometheus_port: int | None = None,
           mesh: MeshConfig | None = None, tracing: bool = False,
           intercept: bool = False) -> int:
    state = state_dir or root / ".tollway"
    try:
        lock = up_lock.hold(state, f"http://127.0.0.1:{api_port}", root)
    except up_lock.AlreadyRunning as exc:
        pid = f"pid {exc.pid}" if exc.pid else "another process"
        api = f", api {exc.api}" if exc.api else ""
        _fail(f"{root} is already running ({pid}{api}); stop it first, or pass "
              "--state-dir to run a second copy")
    with lock:
        _check_ports(state, api_port, client_port)
        return _run_locked(root, state, api_port=api_port, client_port=client_port,
                           gateway_offset=gateway_offset, echo=echo, cert_ttl=cert_ttl,
                           prometheus_port=prometheus_port, mesh=mesh, tracing=tracing,
                           intercept=intercept)


def _check_ports(state: Path, api_port: int, client_port: int) -> None:
    """Busy ports are said before anything is applied or started, naming the flag.

    The client port may be held by our own client proxy left by a killed `up` (adopted
    again from members.json): that one is not "in use"."""
    if not port_free(api_port):
        _fail(f"port {api_port} (the control plane API) is in use; stop what uses it or "
              "pass --api-port with a free port")
    if client_port == api_port:
        _fail("--client-port and --api-port must differ", 2)
    if not port_free(client_port) and not _ours(state, CLIENT_NODE.name, "outbound",
                                                 client_port):
        _fail(f"port {client_port} (the client proxy) is in use; stop what uses it or "
              "pass --client-port with a free port")


def _ours(state: Path, member: str, key: str, port: int) -> bool:
    from tollway.control.local.procs import pid_alive
    from tollway.control.local.supervisor import MEMBERS_FILE

    try:
        row = json.loads((state / MEMBERS_FILE).read_text()).get(member) or {}
    except (OSError, ValueError):
        return False
    pid = row.get("sidecar_pid")
    return bool(row.get("ports", {}).get(key) == port and pid and pid_alive(int(pid)))


def _run_locked(root: Path, state: Path, *, api_port: int, client_port: int,
                gateway_offset: int, echo: Callable[[str], None], cert_ttl: float,
                prometheus_port: int | None, mesh: MeshConfig | None = None,
                tracing: bool = False, intercept: bool = False) -> int:
    _setup_logging(state)
    up = Up(root, state, api_port, client_port, gateway_offset, echo, cert_ttl,
            prometheus_port=prometheus_port, mesh=mesh, tracing=tracing,
            intercept=intercept)
    return asyncio.run(up.run())


def _check_args(root: Path) -> None:
    try:
        root.stat()
    except PermissionError:
        _fail(f"cannot read folder {root}: permission denied; run as a user who can, or "
              "make it (and its parents) readable", 2)
    except OSError:
        pass
    if not root.exists():
        _fail(f"no such folder: {root}; give the folder of your manifests, "
              "e.g. `tollway up examples/canary`", 2)


def _cert_ttl(text: str) -> float:
    """--cert-ttl as seconds, or exit 2 with the one sentence that says what is wrong."""
    from tollway.kit.durations import DurationError, parse_duration

    try:
        return ca.check_ttl(parse_duration(text))
    except (DurationError, ca.CAError) as exc:
        _fail(f"--cert-ttl: {exc}", 2)
        raise  # unreachable: _fail exits


def register(app: typer.Typer) -> None:
    @app.command("up")
    def up(
        folder: Path = typer.Argument(..., help="Folder of manifests (watched for changes)."),
        api_port: int = typer.Option(15010, "--api-port", help="Control plane API port."),
        client_port: int = typer.Option(
            15001, "--client-port", help="Outbound listener of the built-in tollway-client."),
        gateway_port_offset: int = typer.Option(
            8000, "--gateway-port-offset", help="Gateway servers listen on port + offset."),
        state_dir: Path | None = typer.Option(
            None, "--state-dir", help="Logs and state (default DIR/.tollway/)."),
        cert_ttl: str = typer.Option(
            "24h", "--cert-ttl",
            help="Lifetime of workload certificates (renewed at half of it), e.g. 1h."),
        prometheus_port: int = typer.Option(
            prom_mod.DEFAULT_PORT, "--prometheus-port", min=1, max=65535,
            help="Port of the mesh's own Prometheus (a free one if taken)."),
        no_prometheus: bool = typer.Option(
            False, "--no-prometheus",
            help="Start no Prometheus (analysis uses $TOLLWAY_PROMETHEUS_URL if set)."),
        mesh_config: Path | None = typer.Option(None, "--mesh-config", help=meshflag.HELP),
        tracing: bool = typer.Option(
            False, "--tracing",
            help="Run Jaeger (built once from the Go module proxy) as the default tracing "
                 "provider, sampling 100% unless the mesh config says; prints `tracing: URL`."),
        intercept: bool = typer.Option(
            False, "--intercept",
            help="Run each replica in its own network namespace with its traffic captured "
                 "by iptables, as in a pod: apps call plain service names, no HTTP_PROXY "
                 "(needs root, iproute2, iptables)."),
    ) -> None:
        """Run the whole mesh from a folder of manifests on this machine."""
        if intercept:  # before anything else: without root nothing below could work
            from tollway.control.local.intercept import InterceptError, preflight

            try:
                preflight()
            except InterceptError as exc:
                _fail(str(exc))
        _check_args(folder)
        mesh = meshflag.mesh_from_flag(mesh_config, _safe_echo)
        code = run_up(folder.resolve(), api_port=api_port, client_port=client_port,
                      gateway_offset=gateway_port_offset, state_dir=state_dir,
                      cert_ttl=_cert_ttl(cert_ttl),
                      prometheus_port=None if no_prometheus else prometheus_port, mesh=mesh,
                      tracing=tracing, intercept=intercept)
        raise typer.Exit(code)

