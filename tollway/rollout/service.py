"""RolloutService: the rollout controller as `tollway up` runs it, plus its HTTP API.

`RolloutService(store, clock=, state_dir=, scrape_targets=, replica_ready=)`;
`replica_ready` (ready replicas per (namespace, workload), e.g. the local supervisor's
`ready_counts`) is what rollouts pace by; without it the sidecars' `/ready` is probed.
`error_retry` (else $TOLLWAY_ANALYSIS_ERROR_RETRY, else Argo's 10 s) is how long an
analysis metric waits after an Error measurement before it is measured again.
`await start()` begins
scraping the proxies' metrics and runs one task per Rollout/Canary in the store;
`routes()` mounts the API the CLI and dashboard use:

  GET  /v1/rollouts                         list: kind, namespace, name, phase, weight, step
  GET  /v1/rollouts/{namespace}/{name}      the resource with its Argo/Flagger-shaped status
  POST /v1/rollouts/{namespace}/{name}/{action}   promote (body {"full": true} for
       promote --full), abort, retry, pause, resume, restart, set-image
       ({"image": ..., "container": ..., "env": {...}}), set-weight ({"weight": N},
       sets the canary weight and holds there); body may carry {"actor", "reason"}.

Commands never edit the spec GitOps owns (except set-image, which is a spec change by
definition); each is recorded in the rollout's decisions with who and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from tollway.config import load
from tollway.control.store import Change, ConfigStore, Key
from tollway.kit.clock import Clock
from tollway.kit.durations import parse_duration
from tollway.rollout import hooks
from tollway.rollout.analysis import runs
from tollway.rollout.analysis.providers import ProviderError
from tollway.rollout.analysis.providers.mesh import MeshMetrics, MeshScraper, Target
from tollway.rollout.controller import Worker
from tollway.rollout.persist import StateFile

log = logging.getLogger(__name__)
KINDS = ("Rollout", "Canary")
ACTIONS = ("promote", "abort", "retry", "pause", "resume", "restart", "set-image",
           "set-weight")


ERROR_RETRY_ENV = "TOLLWAY_ANALYSIS_ERROR_RETRY"


def error_retry_setting(given: float | None) -> float:
    """Seconds before an analysis metric is measured again after an Error: Argo's
    DefaultErrorRetryInterval (10 s) unless set, by the constructor or by
    $TOLLWAY_ANALYSIS_ERROR_RETRY (a duration, e.g. `2s`: for quick tests and demos). A
    value that cannot be read is said in one line and the default is kept."""
    if given is not None:
        return float(given)
    raw = os.environ.get(ERROR_RETRY_ENV, "").strip()
    if not raw:
        return runs.ERROR_RETRY_SECONDS
    try:
        value = float(raw) if raw.replace(".", "", 1).isdigit() else parse_duration(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        log.error("%s=%r is not a positive duration (e.g. 2s); using Argo's %gs",
                  ERROR_RETRY_ENV, raw, runs.ERROR_RETRY_SECONDS)
        return runs.ERROR_RETRY_SECONDS
    return value


class RolloutService:
    def __init__(self, store: ConfigStore, *, clock: Clock, state_dir: Path,
                 scrape_targets: Callable[[], list[Target]],
                 prometheus_url: str | None = None, client_proxy: str | None = None,
                 scrape_interval: float = 1.0, wait_for_replicas: bool = True,
                 replica_ready: Callable[[], Mapping[tuple[str, str], int]] | None = None,
                 error_retry: float | None = None) -> None:
        self.wait_for_replicas = wait_for_replicas
        self.error_retry = error_retry_setting(error_retry)
        self.replica_ready = replica_ready
        self.store = store
        self.clock = clock
        self.state_dir = Path(state_dir) / "rollouts"
        self.scrape_targets = scrape_targets
        self.prometheus_url = prometheus_url or os.environ.get("TOLLWAY_PROMETHEUS_URL")
        via = client_proxy or os.environ.get("TOLLWAY_CLIENT_PROXY", "127.0.0.1:15001")
        self.loadtester = hooks.LoadTester(via)
        self.scrape_interval = scrape_interval
        self.mesh = MeshMetrics()
        self.client: httpx.AsyncClient | None = None
        self.workers: dict[Key, Worker] = {}
        self._tasks: dict[Key, asyncio.Task[None]] = {}
        self._wake: dict[Key, asyncio.Event] = {}
        self._bg: list[asyncio.Task[None]] = []
        self._unsubscribe: Callable[[], None] | None = None

    # ---- lifecycle -----------------------------------------------------------------------

    async def start(self, run_loops: bool = True) -> None:
        self.client = httpx.AsyncClient()
        self._discover()
        if not run_loops:
            return
        self._unsubscribe = self.store.subscribe(self._on_change)
        self._bg.append(asyncio.create_task(self._scrape_loop()))
        for key in self.workers:
            self._spawn(key)

    async def stop(self) -> None:
        if self._unsubscribe:
            self._unsubscribe()
        tasks = [*self._bg, *self._tasks.values()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._bg.clear()
        await self.loadtester.stop()
        if self.client is not None:
            await self.client.aclose()

    def _on_change(self, change: Change) -> None:
        for key in self._discover():
            self._spawn(key)
        for key, event in self._wake.items():
            if key in change.changed or key[0] in KINDS:
                event.set()

    def _discover(self) -> list[Key]:
        assert self.client is not None
        new = []
        current = self.store.current()
        for kind in KINDS:
            for res in current.of_kind(kind):
                if res.key not in self.workers:
                    file = StateFile(self.state_dir, *res.key)
                    self.workers[res.key] = Worker(res.key, self.store, self.clock, file,
                                                   self.client, self.mesh, self.prometheus_url,
                                                   self.loadtester,
                                                   self.scrape_targets
                                                   if self.wait_for_replicas else None,
                                                   self.replica_ready
                                                   if self.wait_for_replicas else None,
                                                   self.error_retry)
                    new.append(res.key)
        return new

    def _spawn(self, key: Key) -> None:
        if key in self._tasks or self.client is None or not self._bg:
            return
        self._wake[key] = asyncio.Event()
        self._tasks[key] = asyncio.create_task(self._worker_loop(key))

    async def _worker_loop(self, key: Key) -> None:
        worker, event = self.workers[key], self._wake[key]
        while True:
            try:
                wake_at = await worker.sync()
            except Exception:  # one bad rollout must not stop the others
                log.exception("rollout %s: sync failed", key)
                wake_at = self.clock.monotonic() + 5.0
            if self.store.get(key) is None and worker.record.state is None:
                return
            delay = max(0.05, wake_at - self.clock.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout=delay)
            event.clear()

    async def _scrape_loop(self) -> None:
        assert self.client is not None
        scraper = MeshScraper(self.scrape_targets, self.client, self.mesh)
        while True:
            with contextlib.suppress(ProviderError):
                await scraper.tick(self.clock.monotonic())
            await asyncio.sleep(self.scrape_interval)

    async def sync_all(self) -> None:
        """One pass over every rollout (tests drive this on a FakeClock)."""
        self._discover()
        for worker in list(self.workers.values()):
            await worker.sync()

    # ---- commands ------------------------------------------------------------------------

    def find(self, namespace: str, name: str) -> Worker | None:
        for kind in KINDS:
            w = self.workers.get((kind, namespace, name))
            if w is not None:
                return w
        return None

    def command(self, namespace: str, name: str, action: str, body: dict[str, Any]
                ) -> tuple[int, str]:
        worker = self.find(namespace, name)
        if worker is None:
            return 404, f"no Rollout or Canary {namespace}/{name}"
        actor = str(body.get("actor") or "api")
        why = str(body.get("reason") or "")
        if action not in ACTIONS:
            return 400, f"unknown action {action!r}; use one of {', '.join(ACTIONS)}"
        if action == "set-image":
            return self._set_image(worker, body, actor, why)
        cmd = "promote-full" if action == "promote" and body.get("full") else action
        weight = None
        if action == "set-weight":
            try:
                weight = int(body["weight"])
            except (KeyError, TypeError, ValueError):
                return 400, "set-weight needs {\"weight\": 0..100}"
            if not 0 <= weight <= 100:
                return 400, "set-weight needs a weight between 0 and 100"
        worker.command(cmd, actor, why, weight)
        event = self._wake.get(worker.key)
        if event is not None:
            event.set()
        return 202, f"{cmd} requested for {worker.kind} {namespace}/{name} by {actor}"

    def _set_image(self, worker: Worker, body: dict[str, Any], actor: str, why: str
                   ) -> tuple[int, str]:
        image = str(body.get("image") or "")
        if not image:
            return 400, "set-image needs {\"image\": ...}"
        res = self.store.get(worker.key)
        if res is None:
            return 404, "gone"
        target = res
        if worker.kind == "Canary":
            ref = str((res.spec.get("targetRef") or {}).get("name", res.name))
            dep = self.store.get(("Deployment", res.namespace, ref))
            if dep is None:
                return 404, f"target Deployment {ref} not found"
            target = dep
        raw = json.loads(json.dumps(dict(target.raw)))
        containers = raw["spec"]["template"]["spec"]["containers"]
        wanted = body.get("container")
        hit = [c for c in containers if not wanted or c.get("name") == wanted]
        if not hit:
            return 400, f"no container named {wanted}"
        for c in hit:
            c["image"] = image
            for k, v in (body.get("env") or {}).items():
                env = [e for e in c.get("env") or [] if e.get("name") != k]
                c["env"] = [*env, {"name": str(k), "value": str(v)}]
        loaded = load.load_text(json.dumps(raw), file="<set-image>")
        result = self.store.apply(list(loaded.resources), actor=actor,
                                  reason=why or f"set image {image}")
        if not loaded.ok or not result.ok:
            msgs = [f.message for f in (*loaded.errors, *result.findings) if f.is_error]
            return 400, "; ".join(msgs) or "refused"
        return 200, f"{target.kind} {target.name}: image set to {image}"

    # ---- HTTP ------------------------------------------------------------------------------

    def summary(self) -> list[dict[str, Any]]:
        out = []
        current = self.store.current()
        for kind in KINDS:
            for res in current.of_kind(kind):
                st = self.store.status(res.key)
                weights = (st.get("canary") or {}).get("weights") or {}
                out.append({"kind": kind, "namespace": res.namespace, "name": res.name,
                            "phase": st.get("phase", "Pending"),
                            "weight": st.get("canaryWeight",
                                             (weights.get("canary") or {}).get("weight", 0)),
                            "step": st.get("currentStepIndex"),
                            "steps": len(st.get("steps") or []),
                            "message": st.get("message", "")})
        return out

    def metrics_text(self) -> str:
        """Prometheus text: phase, weight, step, failed checks and the judge's evidence."""
        lines = ["# TYPE tollway_rollout_info gauge", "# TYPE tollway_rollout_canary_weight gauge",
                 "# TYPE tollway_rollout_judge_log_likelihood_ratio gauge"]
        current = self.store.current()
        for kind in KINDS:
            for res in current.of_kind(kind):
                st = self.store.status(res.key)
                base = f'kind="{kind}",namespace="{res.namespace}",name="{res.name}"'
                weights = (st.get("canary") or {}).get("weights") or {}
                weight = st.get("canaryWeight", (weights.get("canary") or {}).get("weight", 0))
                lines.append(f'tollway_rollout_info{{{base},phase="{st.get("phase", "")}"}} 1')
                lines.append(f"tollway_rollout_canary_weight{{{base}}} {weight or 0}")
                lines.append(f"tollway_rollout_aborted{{{base}}} {int(bool(st.get('abort')))}")
                if "failedChecks" in st:
                    lines.append(f"tollway_rollout_failed_checks{{{base}}} {st['failedChecks']}")
                for ev in _judge_evidence(st):
                    for sig in ev.get("signals", []):
                        lines.append(
                            f'tollway_rollout_judge_log_likelihood_ratio{{{base},'
                            f'signal="{sig["name"]}",verdict="{sig["verdict"]}"}} '
                            f'{sig["log_likelihood_ratio"]:.6g}')
        return "\n".join(lines) + "\n"

    def detail(self, namespace: str, name: str) -> dict[str, Any] | None:
        for kind in KINDS:
            res = self.store.get((kind, namespace, name))
            if res is not None:
                return {"apiVersion": res.api_version, "kind": kind,
                        "metadata": {"name": name, "namespace": namespace},
                        "spec": res.spec, "status": self.store.status(res.key)}
        return None

    def routes(self) -> list[web.RouteDef]:
        async def listing(_req: web.Request) -> web.Response:
            return web.json_response({"items": self.summary()})

        async def get_one(req: web.Request) -> web.Response:
            body = self.detail(req.match_info["namespace"], req.match_info["name"])
            if body is None:
                return web.json_response({"error": "not found"}, status=404)
            return web.json_response(body)

        async def act(req: web.Request) -> web.Response:
            try:
                body = await req.json() if req.can_read_body else {}
            except ValueError:
                return web.json_response({"error": "body must be JSON"}, status=400)
            code, message = self.command(req.match_info["namespace"], req.match_info["name"],
                                         req.match_info["action"], dict(body or {}))
            key = "message" if code < 400 else "error"
            return web.json_response({key: message}, status=code)

        async def metrics(_req: web.Request) -> web.Response:
            return web.Response(text=self.metrics_text(),
                                content_type="text/plain", charset="utf-8")

        return [web.get("/v1/rollouts", listing),
                web.get("/v1/rollouts/metrics", metrics),
                web.get("/v1/rollouts/{namespace}/{name}", get_one),
                web.post("/v1/rollouts/{namespace}/{name}/{action}", act)]


def _judge_evidence(status: dict[str, Any]) -> list[dict[str, Any]]:
    """The latest judge verdict of each running analysis metric, if any."""
    out = []
    for run in (status.get("analysisRuns") or [])[-1:]:
        for metric in run.get("metricResults") or []:
            for m in (metric.get("measurements") or [])[-1:]:
                value = m.get("value")
                if isinstance(value, dict) and "signals" in value:
                    out.append(value)
    return out
