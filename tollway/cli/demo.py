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
        tollway: {metric: judge, min_requests: 100, quiet_rate: 0.02, quiet_slow_rate: 0.05}
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


class Demo:
    def __init__(self, echo: Any, rps: float, api_port: int, client_port: int) -> None:
        self.echo = echo
        self.rps = rps
        self.api_port = api_port
        self.client_port = client_port
        self.seen_decisions = 0
        self.last_note = ""
        self.t0 = time.monotonic()

    async def run(self) -> int:
        from tollway.cli import up as up_mod

        root = Path(tempfile.mkdtemp(prefix="tollway-demo-"))
        (root / "web.yaml").write_text(MANIFESTS.replace("PYTHON", json.dumps(sys.executable)))
        self.echo(f"tollway demo: mesh in {root}; control plane http://127.0.0.1:{self.api_port}"
                  f" (try `tollway rollout status web --watch --server "
                  f"http://127.0.0.1:{self.api_port}`; dashboard "
                  f"http://127.0.0.1:{self.api_port}/dashboard)")
        up = up_mod.Up(root, root / ".tollway", self.api_port, self.client_port, 18000,
                       lambda _line: None)
        up_task = asyncio.create_task(up.run())
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
            return 0 if ok else 1
        finally:
            load.stop.set()
            if load_task:
                with contextlib.suppress(Exception):
                    await load_task
            up._stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(up_task, 30)

    async def _wait_ready(self, up: Any, up_task: asyncio.Task[int]) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if up_task.done():
                raise RuntimeError("the mesh stopped while starting; see its logs")
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


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        rps: float = typer.Option(40.0, "--rps", help="Load on the service, requests/s."),
        api_port: int = typer.Option(15010, "--api-port"),
        client_port: int = typer.Option(15001, "--client-port"),
    ) -> None:
        """Bring up a mesh, roll out a healthy v2 and a faulty v3 (rolled back), live."""
        d = Demo(typer.echo, rps, _free(api_port), _free(client_port))
        try:
            code = asyncio.run(d.run())
        except RuntimeError as exc:
            typer.echo(f"tollway demo: {exc}", err=True)
            code = 1
        raise typer.Exit(code)
