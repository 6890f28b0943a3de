"""`tollway demo`: the whole story on one machine, live, in about two minutes.

It writes a small mesh (a Service, a VirtualService route `primary`, a DestinationRule
with `stable`/`canary` subsets, an Argo Rollout of the bundled demo app and an
AnalysisTemplate using Tollway's statistical judge), brings it up through the same code
path as `tollway up`, puts steady load on it through the client proxy, then:
  1. rolls out a healthy v2: steps 20% → judge → 50% → judge → 100%, promoted;
  2. rolls out a faulty v3 (15% errors, +150 ms): the judge fails it within seconds and
     all traffic returns to v2 at once.
Every second it prints who answered, the errors, the weights and each decision. Exits 0
when both outcomes happened as expected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import typer

MANIFESTS = """\
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 8080}]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http:
  - name: primary
    route:
    - destination: {host: web, subset: stable}
      weight: 100
    - destination: {host: web, subset: canary}
      weight: 0
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: web}
spec:
  host: web
  subsets:
  - name: stable
    labels: {app: web}
  - name: canary
    labels: {app: web}
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: canary-judge}
spec:
  metrics:
  - name: canary-vs-stable
    interval: 2s
    count: 1
    provider:
      plugin:
        # A fixed slow-request line (v3 adds 150 ms): one taken from stable's p90 moves
        # with the host's load and can keep a healthy v2 waiting for evidence.
        tollway: {metric: judge, min_requests: 100, quiet_rate: 0.02, quiet_slow_rate: 0.05,
                  latency_threshold_ms: 100}
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: demo:v1
        command: [PYTHON, "-m", "tollway.demo.app"]
        env:
        - {name: VERSION, value: v1}
        - {name: DELAY_MS, value: "2"}
        - {name: DELAY_JITTER_MS, value: "8"}
  strategy:
    canary:
      trafficRouting:
        istio:
          virtualService: {name: web, routes: [primary]}
          destinationRule: {name: web, canarySubsetName: canary, stableSubsetName: stable}
      steps:
      - setWeight: 20
      - pause: {duration: 5s}
      - analysis:
          templates: [{templateName: canary-judge}]
      - setWeight: 50
      - pause: {duration: 5s}
      - analysis:
          templates: [{templateName: canary-judge}]
"""


def _free(port: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])


class Load:
    """Steady load through the client proxy, counting answers per version each second."""

    def __init__(self, client_port: int, rps: float) -> None:
        self.url = f"http://127.0.0.1:{client_port}/"
        self.rps = rps
        self.window: Counter[str] = Counter()
        self.total: Counter[str] = Counter()
        self.stop = asyncio.Event()

    async def run(self) -> None:
        workers = 8
        async with httpx.AsyncClient(timeout=5.0) as client:
            await asyncio.gather(*(self._worker(client, workers) for _ in range(workers)))

    async def _worker(self, client: httpx.AsyncClient, workers: int) -> None:
        gap = workers / self.rps
        nxt = time.monotonic()
        while not self.stop.is_set():
            try:
                r = await client.get(self.url, headers={"Host": "web:8080"})
                version = r.headers.get("x-demo-version", "?")
                key = version if r.status_code < 500 else f"{version} {r.status_code}"
            except httpx.HTTPError as exc:
                key = type(exc).__name__
            self.window[key] += 1
            self.total[key] += 1
            nxt += gap
            await asyncio.sleep(max(0.0, nxt - time.monotonic()))

    def take(self) -> Counter[str]:
        out, self.window = self.window, Counter()
        return out


class Interrupted(Exception):
    """Ctrl-C or SIGTERM during the demo: stop the mesh, exit 128 + the signal."""

    def __init__(self, sig: int) -> None:
        super().__init__(sig)
        self.sig = sig


class Demo:
    def __init__(self, echo: Any, rps: float, api_port: int, client_port: int,
                 keep: bool = False) -> None:
        self.echo = echo
        self.rps = rps
        self.api_port = api_port
        self.client_port = client_port
        self.keep = keep
        self.seen_decisions = 0
        self.last_note = ""
        self.t0 = time.monotonic()
        self.signalled = 0
        self.up: Any = None
        self.up_task: asyncio.Task[int] | None = None
        self.root: Path | None = None

    async def main(self) -> int:
        """The story, with Ctrl-C / SIGTERM stopping the mesh (a second one kills it at once).

        The demo owns the terminal: the mesh runs without `tollway up`'s live table and
        signal handlers, so the story stays on screen and one Ctrl-C ends everything."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig, task)
        try:
            return await self.run()
        except asyncio.CancelledError:
            if not self.signalled:
                raise
            if self.keep and self.signalled == signal.SIGINT and self._story_done:
                return self._kept_code
            return 128 + self.signalled
        finally:
            self._clean_state()

    def _on_signal(self, sig: int, task: asyncio.Task[Any]) -> None:
        if self.signalled:  # the second one: no more waiting for drains
            self.echo("\ntollway demo: killed the mesh at once")
            if self.up is not None:
                self.up.kill_now()
            self._clean_state()
            os._exit(128 + sig)
        self.signalled = sig
        self.echo("\ntollway demo: stopping the mesh (press Ctrl-C again to kill it at once)")
        task.cancel()

    def _clean_state(self) -> None:
        """The temp folder holds the mesh's root CA private key: never leave it behind."""
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)

    _story_done = False
    _kept_code = 0

    async def run(self) -> int:
        from tollway.cli import up as up_mod

        self.root = root = Path(tempfile.mkdtemp(prefix="tollway-demo-"))
        (root / "web.yaml").write_text(MANIFESTS.replace("PYTHON", json.dumps(sys.executable)))
        self.echo(f"tollway demo: mesh in {root}; control plane http://127.0.0.1:{self.api_port}"
                  f" (try `tollway rollout status web --watch --server "
                  f"http://127.0.0.1:{self.api_port}`; dashboard "
                  f"http://127.0.0.1:{self.api_port}/dashboard)")
        self.up = up = up_mod.Up(root, root / ".tollway", self.api_port, self.client_port,
                                 18000, self._mesh_echo, live_view=False, signals=False)
        up_task = asyncio.create_task(up.run())
        self.up_task = up_task
        load = Load(self.client_port, self.rps)
        load_task: asyncio.Task[None] | None = None
        try:
            await self._wait_ready(up, up_task)
            load_task = asyncio.create_task(load.run())
            self.echo("mesh ready: v1 serving; load running at "
                      f"{self.rps:.0f} requests/s through the client proxy")
            await self._watch(up, load, 3, lambda st: False)
            ok2 = await self._release(up, load, "v2", {}, "Healthy")
            ok3 = await self._release(up, load, "v3", {"ERROR_RATE": "0.15", "DELAY_MS": "150"},
                                      "Degraded")
            await self._watch(up, load, 2, lambda st: False)
            before = Counter(load.total)
            await self._watch(up, load, 3, lambda st: False)
            after = {k: v - before.get(k, 0) for k, v in load.total.items()}
            on_v3 = sum(v for k, v in after.items() if k.startswith("v3"))
            self.echo(f"after the rollback, 3 s of traffic: {after} (v3: {on_v3})")
            self.echo(f"all requests: {dict(load.total)}")
            ok = ok2 and ok3 and on_v3 == 0
            self.echo("tollway demo: " + ("healthy v2 promoted, faulty v3 rolled back on its "
                                           "own. Done." if ok else "did not go as expected"))
            code = 0 if ok else 1
            if self.keep:
                self._story_done, self._kept_code = True, code
                await self._keep_up(up_task)
            return code
        finally:
            load.stop.set()
            if load_task:
                with contextlib.suppress(Exception):
                    await load_task
            up.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(up_task, 30)

    def _mesh_echo(self, line: str) -> None:
        """What `tollway up` says, minus what the story already tells."""
        if "ready" in line or line.startswith("applied from"):
            return
        self.echo(line)

    async def _keep_up(self, up_task: asyncio.Task[int]) -> None:
        url = f"http://127.0.0.1:{self.api_port}"
        self.echo(f"\nThe mesh stays up (--keep), with load running:\n"
                  f"  dashboard      {url}/dashboard\n"
                  f"  rollouts       tollway rollout status web --server {url}\n"
                  f"  proxies        tollway proxy-status --server {url}\n"
                  f"  a request      curl -x http://127.0.0.1:{self.client_port} "
                  f"http://web:8080/\n"
                  f"Press Ctrl-C to stop it (its temp folder {self.root} is removed).")
        await up_task

    async def _wait_ready(self, up: Any, up_task: asyncio.Task[int]) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if up_task.done():
                raise RuntimeError("the mesh stopped while starting (see above)")
            sup = up.supervisor
            if sup is not None and up.rollout is not None and sup.members and sup.all_ready():
                st = up.store.status(("Rollout", "default", "web"))
                if st.get("phase") == "Healthy":
                    return
            await asyncio.sleep(0.5)
        raise RuntimeError("the mesh did not become ready within 90 s")

    async def _release(self, up: Any, load: Load, version: str, env: dict[str, str],
                       expect: str) -> bool:
        _code, msg = up.rollout.command("default", "web", "set-image", {
            "image": f"demo:{version}", "env": {"VERSION": version, **env},
            "actor": "demo", "reason": f"release {version}"})
        what = "healthy" if not env else "faulty (" + ", ".join(
            f"{k}={v}" for k, v in env.items()) + ")"
        self.echo(f"\n== rolling out {version}, {what}: {msg}")
        st = await self._watch(up, load, 120, lambda s: s.get("phase") in ("Healthy",
                                                                            "Degraded")
                               and s.get("currentPodHash") and self._settled(s))
        self._evidence(st)
        return bool(st.get("phase") == expect)

    @staticmethod
    def _settled(st: dict[str, Any]) -> bool:
        return bool(st.get("message")) and "template" not in str(st.get("message", ""))[:14]

    async def _watch(self, up: Any, load: Load, seconds: float, done: Any) -> dict[str, Any]:
        end = time.monotonic() + seconds
        st: dict[str, Any] = {}
        while time.monotonic() < end:
            await asyncio.sleep(1.0)
            if self.up_task is not None and self.up_task.done():
                raise RuntimeError("the mesh stopped; the demo cannot go on")
            st = up.store.status(("Rollout", "default", "web"))
            self._line(st, load.take())
            if done(st):
                return st
        return st

    def _line(self, st: dict[str, Any], window: Counter[str]) -> None:
        for d in (st.get("decisions") or [])[self.seen_decisions:]:
            self.echo(f"   decision [{d['actor']}]: {d['reason']}")
        self.seen_decisions = len(st.get("decisions") or [])
        note = self._judge_note(st)
        if note and note != self.last_note:
            self.echo(f"   judge: {note}")
            self.last_note = note
        w = ((st.get("canary") or {}).get("weights") or {})
        seen = " ".join(f"{k}:{v}" for k, v in sorted(window.items()))
        self.echo(f"{time.monotonic() - self.t0:5.0f}s {st.get('phase', '?'):11} "
                  f"stable {w.get('stable', {}).get('weight', 100):>3}% canary "
                  f"{w.get('canary', {}).get('weight', 0):>3}% | last second: {seen}")

    @staticmethod
    def _judge_note(st: dict[str, Any]) -> str:
        """The running judge's latest word (e.g. how many more requests it needs)."""
        for run in (st.get("analysisRuns") or [])[-1:]:
            if run.get("phase") != "Running":
                return ""
            for m in run.get("metricResults") or []:
                for meas in (m.get("measurements") or [])[-1:]:
                    return str(meas.get("message", ""))
        return ""

    def _evidence(self, st: dict[str, Any]) -> None:
        for run in (st.get("analysisRuns") or [])[-1:]:
            for m in run.get("metricResults") or []:
                for meas in m.get("measurements", [])[-1:]:
                    self.echo(f"   judge: {meas.get('message')}")


def _echo(line: str) -> None:
    """Print; a closed terminal must not stop the demo before it stopped the mesh."""
    with contextlib.suppress(OSError):
        typer.echo(line)


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        rps: float = typer.Option(40.0, "--rps", help="Load on the service, requests/s."),
        api_port: int = typer.Option(15010, "--api-port", metavar="PORT",
                                     help="Control plane port (a free one if taken)."),
        client_port: int = typer.Option(15001, "--client-port", metavar="PORT",
                                        help="Client proxy port (a free one if taken)."),
        keep: bool = typer.Option(False, "--keep", help="Keep the mesh and load running "
                                  "after the story, until Ctrl-C (to look around)."),
    ) -> None:
        """Bring up a mesh, roll out a healthy v2 and a faulty v3 (rolled back), live."""
        d = Demo(_echo, rps, _free(api_port), _free(client_port), keep=keep)
        try:
            code = asyncio.run(d.main())
        except RuntimeError as exc:
            typer.echo(f"tollway demo: {exc}", err=True)
            code = 1
        except KeyboardInterrupt:  # a Ctrl-C after the loop let go of its handlers
            code = 128 + signal.SIGINT
        if d.signalled:
            _exit_now(code)
        raise typer.Exit(code)


def _exit_now(code: int) -> None:
    """After a Ctrl-C or SIGTERM the mesh is stopped and its folder gone: leave at once.

    The interpreter's own wind-down (threads, module teardown) takes a few hundred ms and
    puts the default signal actions back part-way through, so a second Ctrl-C typed then
    would end the process by the signal itself (exit -2, no message) instead of with the
    shell's 130. Nothing is left to clean up, so skip the wind-down."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
