"""Jaeger all-in-one for `tollway up --tracing`: built once, run as a child, the mesh's
default tracing provider.

The binary is Jaeger v2's `jaeger` (an OpenTelemetry Collector distribution) at the version
pinned in jaeger_build.sh, compiled from the Go module proxy into a cache folder outside git
(~/.cache/tollway/jaeger/VERSION/bin). A warm cache costs nothing; a cold build takes
minutes, so its steps are echoed with a heartbeat.

It runs with a config written here (`render_config`): OTLP/HTTP and Zipkin receivers, memory
storage, the query service (HTTP API + UI, and its gRPC port), all on 127.0.0.1 ports chosen
free, Jaeger's own metrics off (they would bind :8888). Its UI page is Jaeger's placeholder:
the UI's JavaScript is not part of the Go module; the HTTP API (`/api/traces`,
`/api/services`) is complete. It must not outlive `tollway up`: it runs under
`setpriv --pdeathsig TERM` when setpriv exists, and is stopped on shutdown.

As the mesh's default provider (`as_default_provider`): an `extensionProviders` entry
`tollway-jaeger` (opentelemetry over HTTP to its OTLP port) named by
`defaultProviders.tracing`, added to the user's mesh config. Telemetry resources still
override it as Istio's precedence says. Unless the mesh config sets
`defaultConfig.tracing.sampling`, sampling is 100%: `--tracing` is for looking at traces,
and at Istio's default 1% the request a user just sent is almost never in Jaeger.

`render_config()`, `argv()`, `pinned_version()` and `as_default_provider()` are pure;
`MeshJaeger` runs the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from tollway.config.meshconfig import ExtensionProvider, LegacyTracing, MeshConfig
from tollway.control.local.procs import (
    PortAllocator,
    Proc,
    http_ok,
    port_free,
    port_open,
    spawn,
)

BUILD_SCRIPT = Path(__file__).with_name("jaeger_build.sh")
PROVIDER = "tollway-jaeger"  # its extensionProviders name
DEFAULT_QUERY_PORT = 16686  # Jaeger's own default, kept when free
HEARTBEAT = 30.0
STOP_GRACE = 5.0


class JaegerError(RuntimeError):
    """Jaeger cannot be built or started; the message is one sentence for the user."""


def pinned_version() -> str:
    """JAEGER_VERSION from the build script (one place names the version)."""
    m = re.search(r"^JAEGER_VERSION=(v[0-9.]+)", BUILD_SCRIPT.read_text(), re.M)
    if m is None:
        raise JaegerError(f"{BUILD_SCRIPT} names no JAEGER_VERSION")
    return m.group(1)


def render_config(*, otlp_port: int, zipkin_port: int, query_port: int, query_grpc_port: int,
                  max_traces: int = 100_000) -> str:
    """The collector config: receivers -> batch -> memory storage, queried by jaeger_query."""
    def at(port: int) -> str:
        return f'"127.0.0.1:{port}"'

    return f"""# Written by `tollway up --tracing` on every start; edits are overwritten.
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp, zipkin]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      tollway_memory:
        memory:
          max_traces: {max_traces}
  jaeger_query:
    storage:
      traces: tollway_memory
    http:
      endpoint: {at(query_port)}
    grpc:
      endpoint: {at(query_grpc_port)}
receivers:
  otlp:
    protocols:
      http:
        endpoint: {at(otlp_port)}
  zipkin:
    endpoint: {at(zipkin_port)}
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: tollway_memory
"""


def argv(binary: str, config: Path, setpriv: str | None = None) -> list[str]:
    cmd = [binary, "--config", str(config)]
    return [setpriv, "--pdeathsig", "TERM", "--", *cmd] if setpriv else cmd


async def ensure_built(log_path: Path, echo: Callable[[str], None],
                       env: Mapping[str, str] | None = None) -> Path:
    """Run the build script (instant when cached); the binary's path, or JaegerError."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    run_env = dict(os.environ if env is None else env)
    run_env["PATH"] = run_env.get("PATH", "") + ":/usr/local/go/bin"
    started = time.monotonic()
    tail: list[str] = []
    with open(log_path, "w") as log:
        proc = await asyncio.create_subprocess_exec(
            "bash", str(BUILD_SCRIPT), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env=run_env)
        assert proc.stdout is not None
        while True:
            try:
                raw = await asyncio.wait_for(proc.stdout.readline(), HEARTBEAT)
            except TimeoutError:
                echo(f"tracing: still building Jaeger ({time.monotonic() - started:.0f}s; "
                     f"log {log_path})")
                continue
            if not raw:
                break
            line = raw.decode(errors="replace").rstrip()
            log.write(line + "\n")
            tail = [*tail[-4:], line]
            if line.startswith("build: ") and "jaeger present" not in line:
                echo(f"tracing: {line[len('build: '):]}")
        code = await proc.wait()
    if code != 0:
        raise JaegerError(f"building Jaeger {pinned_version()} failed (exit {code}): "
                          f"{tail[-1] if tail else 'no output'}; full log {log_path}")
    out = await asyncio.create_subprocess_exec(
        "bash", str(BUILD_SCRIPT), "--bin-dir", stdout=asyncio.subprocess.PIPE, env=run_env)
    bin_dir, _ = await out.communicate()
    binary = Path(bin_dir.decode().strip()) / "jaeger"
    if not os.access(binary, os.X_OK):
        raise JaegerError(f"the Jaeger build left no executable at {binary}; see {log_path}")
    return binary


class MeshJaeger:
    """One Jaeger child of `tollway up` (see module doc)."""

    def __init__(self, binary: Path, state_dir: Path, *, query_port: int = DEFAULT_QUERY_PORT,
                 ports: PortAllocator | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.binary = binary
        self.home = state_dir / "jaeger"
        self.log_path = state_dir / "logs" / "jaeger.log"
        self.alloc = ports or PortAllocator()
        self.query_port = query_port if port_free(query_port) else self.alloc.allocate()
        self.query_grpc_port = self.alloc.allocate()
        self.otlp_port = self.alloc.allocate()
        self.zipkin_port = self.alloc.allocate()
        self.env = dict(os.environ if env is None else env)
        self.proc: Proc | None = None

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.query_port}"

    @property
    def otlp_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.otlp_port}/v1/traces"

    @property
    def zipkin_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.zipkin_port}/api/v2/spans"

    @property
    def config_path(self) -> Path:
        return self.home / "config.yaml"

    async def start(self, timeout: float = 60.0, attempts: int = 3) -> None:
        """Start and wait until the query API answers; JaegerError if it does not.

        A port found free may be taken before Jaeger binds it (another `tollway up
        --tracing` starting at the same moment): then every port is chosen again."""
        for attempt in range(attempts):
            log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
            if await self._start_once(timeout):
                return
            text = self.log_path.read_text(errors="replace")[log_start:]
            if "address already in use" not in text or attempt == attempts - 1:
                break
            self.query_port, self.query_grpc_port, self.otlp_port, self.zipkin_port = (
                self.alloc.allocate() for _ in range(4))
        raise JaegerError(f"Jaeger did not answer on {self.query_url} within {timeout:.0f}s; "
                          f"see {self.log_path}")

    async def _start_once(self, timeout: float) -> bool:
        self.home.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(render_config(
            otlp_port=self.otlp_port, zipkin_port=self.zipkin_port,
            query_port=self.query_port, query_grpc_port=self.query_grpc_port))
        try:
            self.proc = await spawn(argv(str(self.binary), self.config_path,
                                         shutil.which("setpriv")),
                                    env=self.env, log_path=self.log_path)
        except OSError as exc:
            raise JaegerError(f"Jaeger did not start ({exc})") from None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await http_ok(self.query_port, "/api/services") and \
                    await port_open(self.otlp_port) and await port_open(self.zipkin_port):
                return True
            if not self.proc.alive():
                break
            await asyncio.sleep(0.1)
        await self.stop()
        return False

    async def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                await self.proc.stop(STOP_GRACE)


def as_default_provider(mesh: MeshConfig | None, otlp_port: int
                        ) -> tuple[MeshConfig, list[str]]:
    """`mesh` with Jaeger as the default tracing provider (module doc), and what changed of
    the user's own settings, one sentence each."""
    mc = mesh or MeshConfig()
    notes = []
    replaced = [n for n in mc.default_providers.tracing if n != PROVIDER]
    if replaced:
        notes.append(f"--tracing replaces defaultProviders.tracing {replaced} of the mesh "
                     f"config with {PROVIDER} (Jaeger)")
    provider = ExtensionProvider.model_validate({"name": PROVIDER, "opentelemetry": {
        "service": "127.0.0.1", "port": otlp_port, "http": {"path": "/v1/traces"}}})
    update: dict[str, object] = {
        "enable_tracing": True,
        "extension_providers": [*(p for p in mc.extension_providers if p.name != PROVIDER),
                                provider],
        "default_providers": mc.default_providers.model_copy(update={"tracing": [PROVIDER]}),
    }
    legacy = mc.default_config.tracing
    if legacy is None or legacy.sampling is None:
        tracing = (legacy or LegacyTracing()).model_copy(update={"sampling": 100.0})
        update["default_config"] = mc.default_config.model_copy(update={"tracing": tracing})
    if not mc.enable_tracing:
        notes.append("--tracing turns on enableTracing, which the mesh config turns off")
    return mc.model_copy(update=update), notes
