"""The mesh's own Prometheus for `tollway up`: a child process scraping every sidecar.

Argo and Flagger templates query Prometheus (seed 15 names `prometheus.monitoring:9090`,
or no address at all). On one machine that Prometheus must exist, so `tollway up` runs one
when the `prometheus` binary is installed (Debian: `apt-get install prometheus`) and the
`prometheus` analysis provider sends in-cluster or omitted addresses to it. It discovers
the sidecars exactly as a user's own Prometheus would: through the control plane's HTTP
service discovery `GET /v1/sd/prometheus` (every proxy's admin address and
`/stats/prometheus`).

Intervals, and why they are short (`SCRAPE_INTERVAL`, `SD_REFRESH`):
- scrape every 1 s: local rollouts and tests run analysis every few seconds, and `rate()`
  needs two samples of a series inside its window, so a sample per second keeps a
  measurement at most ~1 s behind the traffic. Each scrape is one small HTTP GET per
  sidecar (a few kB of text); the rollout controller already reads the same endpoint
  every second for the `tollway` provider.
- service discovery every 2 s: a new replica (the canary) is scraped within ~2 s of
  becoming ready and has a rate ~1 s later; the control plane answers from memory, so
  asking often costs next to nothing.
Retention is kept small (1 day, 512 MB) because local mode is for developing and testing
rollouts, whose queries look back minutes; the TSDB lives in `STATE/prometheus/data` so a
restarted `tollway up` keeps its history.

It must not outlive `tollway up`: on Linux it is started under `setpriv --pdeathsig TERM`,
so the kernel stops it if `tollway up` dies, even by SIGKILL (sidecars, by contrast,
survive to be adopted). Its pid is recorded in `STATE/prometheus/pid.json`; a `tollway up`
started on the same folder stops a Prometheus still recorded there (checking by pid and
its command line that it is ours) before starting its own, so the TSDB lock and the port
are free again: a clean restart rather than adoption, since the new `tollway up` may
listen on another API port and Prometheus would scrape the wrong service discovery.

`decide()`, `render_config()` and `argv()` are pure; `MeshPrometheus` is the process
runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tollway.control.local.procs import (
    PortAllocator,
    Proc,
    http_ok,
    pid_alive,
    port_free,
    spawn,
)
from tollway.kit.backoff import Backoff

log = logging.getLogger(__name__)

DEFAULT_PORT = 9090
ENV_URL = "TOLLWAY_PROMETHEUS_URL"
INSTALL_HINT = "apt-get install prometheus"
SCRAPE_INTERVAL = 1.0
SD_REFRESH = 2.0
RETENTION_TIME = "1d"
RETENTION_SIZE = "512MB"
JOB = "tollway-sidecars"
STOP_GRACE = 10.0  # Prometheus flushes its head block on SIGTERM; a small TSDB takes < 1 s


@dataclass(frozen=True)
class Decision:
    """Which Prometheus the mesh's analysis uses, and one sentence for the user if any."""

    mode: Literal["external", "run", "none"]
    url: str | None = None
    binary: str | None = None
    note: str = ""


def decide(*, env_url: str | None, port: int | None, binary: str | None) -> Decision:
    """`$TOLLWAY_PROMETHEUS_URL` wins (run none); `port=None` means --no-prometheus."""
    if env_url and env_url.strip():
        return Decision("external", url=env_url.strip().rstrip("/"))
    if port is None:
        return Decision("none")
    if binary is None:
        return Decision("none", note=(
            "no `prometheus` binary found, so the mesh runs without Prometheus: analysis "
            f"templates with a prometheus provider fail until you `{INSTALL_HINT}` and "
            "restart `tollway up` (the `tollway` provider needs no Prometheus)"))
    return Decision("run", binary=binary)


def _seconds(value: float) -> str:
    ms = round(value * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _quoted(text: str) -> str:
    """A YAML double-quoted scalar: printable ASCII as is, everything else escaped.

    (JSON quoting is not enough: it writes astral characters as surrogate pairs, which
    YAML does not join, and leaves U+2028 and U+0085 raw, which YAML folds as line breaks.)
    """
    out = []
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= code < 0x7F:
            out.append(ch)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def render_config(sd_url: str, *, scrape_interval: float = SCRAPE_INTERVAL,
                  sd_refresh: float = SD_REFRESH) -> str:
    """prometheus.yml: one job scraping every sidecar found by the control plane's http_sd.

    Strings are double-quoted with escapes, so YAML reads them back exactly.
    The scrape timeout equals the interval (Prometheus refuses a longer one).
    """
    every = _seconds(scrape_interval)
    return (
        "# Written by `tollway up` on every start; edits are overwritten.\n"
        "global:\n"
        f"  scrape_interval: {every}\n"
        f"  scrape_timeout: {every}\n"
        f"  evaluation_interval: {every}\n"
        "scrape_configs:\n"
        f"- job_name: {_quoted(JOB)}\n"
        "  http_sd_configs:\n"
        f"  - url: {_quoted(sd_url)}\n"
        f"    refresh_interval: {_seconds(sd_refresh)}\n"
    )


def argv(binary: str, config: Path, data: Path, port: int,
         setpriv: str | None = None) -> list[str]:
    """The command line; under `setpriv --pdeathsig TERM` when `setpriv` is given."""
    cmd = [binary, f"--config.file={config}", f"--storage.tsdb.path={data}",
           f"--web.listen-address=127.0.0.1:{port}",
           f"--storage.tsdb.retention.time={RETENTION_TIME}",
           f"--storage.tsdb.retention.size={RETENTION_SIZE}"]
    return [setpriv, "--pdeathsig", "TERM", "--", *cmd] if setpriv else cmd


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


class MeshPrometheus:
    """One Prometheus child of `tollway up`: prepare (port), start, wait ready, stop.

    `prepare()` stops a Prometheus a killed `tollway up` left recorded in the state dir,
    then settles the port: `port` when free, else a free one (said in one sentence).
    """

    def __init__(self, binary: str, state_dir: Path, port: int, sd_url: str, *,
                 echo: Callable[[str], None] = lambda _line: None,
                 env: Mapping[str, str] | None = None) -> None:
        self.binary = binary
        self.home = state_dir / "prometheus"
        self.log_path = state_dir / "logs" / "prometheus.log"
        self.wanted_port = port
        self.port = port
        self.sd_url = sd_url
        self.echo = echo
        self.env = dict(os.environ if env is None else env)
        self.proc: Proc | None = None
        self._stopping = False
        self._watch: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.home / "prometheus.yml"

    @property
    def pid_path(self) -> Path:
        return self.home / "pid.json"

    def recorded(self) -> int | None:
        """The pid of a Prometheus of ours still running from an earlier `tollway up`."""
        try:
            row = json.loads(self.pid_path.read_text())
            pid = int(row["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not pid_alive(pid):
            return None
        cmd = _cmdline(pid)
        ours = any(a == f"--config.file={self.config_path}" for a in cmd)
        return pid if ours else None

    async def prepare(self) -> None:
        stale = self.recorded()
        if stale is not None:
            log.info("stopping the Prometheus (pid %d) an earlier tollway up left", stale)
            await Proc(stale).stop(STOP_GRACE)
        with contextlib.suppress(OSError):
            self.pid_path.unlink()
        if not port_free(self.wanted_port):
            self.port = PortAllocator([self.wanted_port]).allocate()
            self.echo(f"tollway: port {self.wanted_port} is in use, so the mesh's Prometheus "
                      f"listens on 127.0.0.1:{self.port} (pass --prometheus-port to choose)")

    async def start(self) -> bool:
        """Write the config and start the process; a watcher restarts it if it dies.

        False (said in one sentence) when it cannot even be started; the mesh runs on.
        """
        try:
            self.home.mkdir(parents=True, exist_ok=True)
            self.config_path.write_text(render_config(self.sd_url))
            await self._spawn()
        except OSError as exc:
            log.exception("starting Prometheus failed")
            self.echo(f"tollway: the mesh's Prometheus did not start ({exc}); the mesh runs "
                      "without it")
            return False
        self._watch = asyncio.create_task(self._keep_running())
        return True

    async def _spawn(self) -> None:
        cmd = argv(self.binary, self.config_path, self.home / "data", self.port,
                   shutil.which("setpriv"))
        self.proc = await spawn(cmd, env=self.env, log_path=self.log_path)
        tmp = self.pid_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": self.proc.pid, "port": self.port,
                                   "started": time.time()}))
        tmp.replace(self.pid_path)

    async def _keep_running(self) -> None:
        backoff = Backoff(base=1.0, cap=30.0)
        while not self._stopping:
            assert self.proc is not None
            started = time.monotonic()
            code = await self.proc.wait()
            if self._stopping:
                return
            if time.monotonic() - started > 60:
                backoff.reset()
            delay = backoff.next_delay()
            log.warning("Prometheus exited (%s); starting it again in %.1fs, see %s",
                        code, delay, self.log_path)
            await asyncio.sleep(delay)
            if not self._stopping:
                await self._spawn()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()

    async def wait_ready(self, timeout: float) -> bool:
        """True once `/-/ready` answers 200; False if it exited or takes longer."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await http_ok(self.port, "/-/ready"):
                return True
            if not self.alive():
                return False
            await asyncio.sleep(0.1)
        return False

    def last_log_line(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1][-200:] if lines else ""

    async def stop(self) -> None:
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self.proc is not None:
            await self.proc.stop(STOP_GRACE)
        with contextlib.suppress(OSError):
            self.pid_path.unlink()


async def prepare_for_up(state_dir: Path, port: int | None, sd_url: str,
                         echo: Callable[[str], None], *,
                         env: Mapping[str, str] | None = None,
                         which: Callable[[str], str | None] = shutil.which,
                         ) -> tuple[MeshPrometheus | None, str | None]:
    """What `tollway up` runs, and the URL analysis queries go to (None: no Prometheus).

    Called before the rollout controller is built, so its URL is settled first.
    """
    env = os.environ if env is None else env
    choice = decide(env_url=env.get(ENV_URL), port=port, binary=which("prometheus"))
    if choice.note:
        echo("tollway: " + choice.note)
    if choice.mode != "run" or choice.binary is None or port is None:
        return None, choice.url
    prom = MeshPrometheus(choice.binary, state_dir, port, sd_url, echo=echo, env=env)
    await prom.prepare()
    return prom, prom.url


async def ready_suffix(prom: MeshPrometheus | None, url: str | None,
                       timeout: float = 30.0) -> str:
    """`; prometheus URL` for the ready line, once ours answers (or the external one's)."""
    if prom is None:
        return f"; prometheus {url}" if url else ""
    if await prom.wait_ready(timeout):
        return f"; prometheus {prom.url}"
    prom.echo(f"tollway: the mesh's Prometheus does not answer on {prom.url}; analysis with "
              f"a prometheus provider fails until it does, see {prom.log_path}")
    return ""
