"""Seed 08 through the controller and a real store: the -primary copy, Flagger's ticks,
failed checks over the run, rollback to primary; a healthy canary is promoted."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.rollout.conftest import SEED
from tollway.config import load
from tollway.control.store import ConfigStore
from tollway.kit.clock import FakeClock
from tollway.rollout.analysis.providers.histogram import Counts
from tollway.rollout.service import RolloutService

TARGET = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  replicas: 2
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
      - {name: api, image: api:v1, command: [tollway, demo-app]}
"""
KEY = ("Canary", "default", "api")


async def _setup(tmp: Path) -> tuple[FakeClock, ConfigStore, RolloutService]:
    clock = FakeClock()
    res = load.load_text((SEED / "08-flagger-canary.yaml").read_text() + "\n---\n" + TARGET)
    assert res.ok
    store = ConfigStore(clock=clock)
    assert store.apply(list(res.resources), actor="folder").ok
    svc = RolloutService(store, clock=clock, state_dir=tmp, scrape_targets=list,
                         client_proxy="127.0.0.1:1", wait_for_replicas=False)
    await svc.start(run_loops=False)
    return clock, store, svc


class Traffic:
    def __init__(self, svc: RolloutService, clock: FakeClock) -> None:
        self.svc, self.clock = svc, clock
        self.c = [0.0, 0.0, 0.0, 0.0]

    def minute(self, canary_err: float) -> None:
        self.clock.advance(60)
        self.c[0] += 600
        self.c[1] += 600 * canary_err
        self.c[2] += 2400
        self.c[3] += 2
        buckets = {100.0: self.c[0], float("inf"): self.c[0]}
        self.svc.mesh.add(self.clock.monotonic(), {
            ("default", "api"): Counts(self.c[0], self.c[1], buckets),
            ("default", "api-primary"): Counts(self.c[2], self.c[3], {})})


def _weights(store: ConfigStore) -> list[tuple[str, int]]:
    vs = store.get(("VirtualService", "default", "api"))
    assert vs is not None
    return [(r["destination"]["host"], r["weight"]) for r in vs.spec["http"][-1]["route"]]


def test_flagger_seed08_rolls_back_after_five_failed_checks(tmp_path: Path) -> None:
    async def go() -> None:
        clock, store, svc = await _setup(tmp_path)
        await svc.sync_all()
        st = store.status(KEY)
        assert st["phase"] == "Initialized"
        assert store.get(("Deployment", "default", "api-primary")) is not None
        assert _weights(store) == [("api-primary", 100), ("api-canary", 0)]
        svc.command("default", "api", "set-image", {"image": "api:v2"})
        await svc.sync_all()
        st = store.status(KEY)
        assert st["phase"] == "Progressing" and st["canaryWeight"] == 10
        t = Traffic(svc, clock)
        for i in range(5):
            t.minute(0.05)
            await svc.sync_all()
            st = store.status(KEY)
            assert st["failedChecks"] == i + 1 and st["canaryWeight"] == 10
        assert "request-success-rate 95 < 99" in st["checks"][-1]["detail"]
        t.minute(0.05)
        await svc.sync_all()
        st = store.status(KEY)
        assert st["phase"] == "Failed"
        assert _weights(store) == [("api-primary", 100), ("api-canary", 0)]
        await svc.stop()

    asyncio.run(go())


def test_flagger_seed08_promotes_a_healthy_canary(tmp_path: Path) -> None:
    async def go() -> None:
        clock, store, svc = await _setup(tmp_path)
        await svc.sync_all()
        primary_before = store.get(("Deployment", "default", "api-primary"))
        svc.command("default", "api", "set-image", {"image": "api:v2"})
        await svc.sync_all()
        t = Traffic(svc, clock)
        seen: list[Any] = []
        for _ in range(8):
            t.minute(0.0)
            await svc.sync_all()
            st = store.status(KEY)
            seen.append((st["phase"], st["canaryWeight"]))
        assert seen[:5] == [("Progressing", 20), ("Progressing", 30), ("Progressing", 40),
                            ("Progressing", 50), ("Promoting", 50)]
        assert seen[5:7] == [("Finalising", 0), ("Succeeded", 0)]
        primary = store.get(("Deployment", "default", "api-primary"))
        assert primary is not None and primary_before is not None
        image = primary.spec["template"]["spec"]["containers"][0]["image"]
        assert image == "api:v2"
        await svc.stop()

    asyncio.run(go())


def test_flagger_confirm_promotion_webhook_gates_promotion(tmp_path: Path) -> None:
    from aiohttp import web

    async def go() -> None:
        gate = {"open": False, "calls": 0, "events": 0}

        async def confirm(_r: web.Request) -> web.Response:
            gate["calls"] += 1
            return web.Response(status=200 if gate["open"] else 403)

        async def event(_r: web.Request) -> web.Response:
            gate["events"] += 1
            return web.Response(status=202)

        app = web.Application()
        app.router.add_post("/confirm", confirm)
        app.router.add_post("/event", event)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        extra = f"""
    - name: approve
      type: confirm-promotion
      url: http://127.0.0.1:{port}/confirm
    - name: events
      type: event
      url: http://127.0.0.1:{port}/event
"""
        text = (SEED / "08-flagger-canary.yaml").read_text().rstrip() + extra + "---\n" + TARGET
        res = load.load_text(text)
        assert res.ok, [f.message for f in res.findings]
        clock = FakeClock()
        store = ConfigStore(clock=clock)
        assert store.apply(list(res.resources), actor="folder").ok
        svc = RolloutService(store, clock=clock, state_dir=tmp_path, scrape_targets=list,
                             client_proxy="127.0.0.1:1", wait_for_replicas=False)
        await svc.start(run_loops=False)
        try:
            await svc.sync_all()
            svc.command("default", "api", "set-image", {"image": "api:v2"})
            await svc.sync_all()
            t = Traffic(svc, clock)
            for _ in range(6):
                t.minute(0.0)
                await svc.sync_all()
            st = store.status(KEY)
            assert st["phase"] == "WaitingPromotion" and gate["calls"] > 0
            gate["open"] = True
            t.minute(0.0)
            await svc.sync_all()
            assert store.status(KEY)["phase"] == "Promoting"
            assert gate["events"] >= 3
        finally:
            await svc.stop()
            await runner.cleanup()

    asyncio.run(go())


def _replicas(store: ConfigStore, name: str) -> int:
    dep = store.get(("Deployment", "default", name))
    assert dep is not None
    return int(dep.spec["replicas"])


def test_flagger_target_runs_only_while_a_revision_is_analysed(tmp_path: Path) -> None:
    async def go() -> None:
        clock, store, svc = await _setup(tmp_path)
        await svc.sync_all()
        assert (_replicas(store, "api"), _replicas(store, "api-primary")) == (0, 2)
        svc.command("default", "api", "set-image", {"image": "api:v2"})
        await svc.sync_all()
        assert store.status(KEY)["phase"] == "Progressing"
        assert (_replicas(store, "api"), _replicas(store, "api-primary")) == (2, 2)
        t = Traffic(svc, clock)
        for _ in range(7):
            t.minute(0.0)
            await svc.sync_all()
        assert store.status(KEY)["phase"] == "Succeeded"
        assert (_replicas(store, "api"), _replicas(store, "api-primary")) == (0, 2)
        target = store.get(("Deployment", "default", "api"))
        assert target is not None  # our scale never reverted the user's template
        assert target.spec["template"]["spec"]["containers"][0]["image"] == "api:v2"
        svc.command("default", "api", "set-image", {"image": "api:v3"})
        await svc.sync_all()
        assert _replicas(store, "api") == 2
        for _ in range(6):
            t.minute(0.5)
            await svc.sync_all()
        assert store.status(KEY)["phase"] == "Failed"
        assert (_replicas(store, "api"), _replicas(store, "api-primary")) == (0, 2)
        await svc.stop()

    asyncio.run(go())


def test_flagger_waits_for_the_primary_then_the_canary_to_be_ready(tmp_path: Path) -> None:
    async def go() -> None:
        clock = FakeClock()
        text = (SEED / "08-flagger-canary.yaml").read_text() + "\n---\n" + TARGET
        res = load.load_text(text.replace("maxWeight: 50", "maxWeight: 50\n    interval: 10s")
                             .replace("interval: 1m\n    threshold", "threshold"))
        assert res.ok, [f.message for f in res.findings]
        store = ConfigStore(clock=clock)
        assert store.apply(list(res.resources), actor="folder").ok
        ready: dict[tuple[str, str], int] = {}
        svc = RolloutService(store, clock=clock, state_dir=tmp_path, scrape_targets=list,
                             client_proxy="127.0.0.1:1", replica_ready=lambda: ready)
        await svc.start(run_loops=False)
        await svc.sync_all()
        assert store.status(KEY)["phase"] == "Initializing"
        assert (_replicas(store, "api"), _replicas(store, "api-primary")) == (2, 2)
        assert store.get(("VirtualService", "default", "api")) is None  # not before it is up
        ready[("default", "api-primary")] = 2
        clock.advance(1)
        await svc.sync_all()
        assert store.status(KEY)["phase"] == "Initialized" and _replicas(store, "api") == 0
        svc.command("default", "api", "set-image", {"image": "api:v2"})
        clock.advance(1)
        await svc.sync_all()
        st = store.status(KEY)
        assert st["phase"] == "Progressing" and st["canaryWeight"] == 0
        assert _replicas(store, "api") == 2
        ready[("default", "api")] = 1  # one of two: not ready at the 100% threshold
        clock.advance(5)
        await svc.sync_all()
        assert store.status(KEY)["canaryWeight"] == 0
        ready[("default", "api")] = 2
        clock.advance(1)
        await svc.sync_all()
        assert store.status(KEY)["canaryWeight"] == 10
        await svc.stop()

    asyncio.run(go())


def test_flagger_skip_analysis_promotes_through_the_store(tmp_path: Path) -> None:
    async def go() -> None:
        clock = FakeClock()
        text = (SEED / "08-flagger-canary.yaml").read_text().replace(
            "spec:\n  targetRef", "spec:\n  skipAnalysis: true\n  targetRef", 1)
        res = load.load_text(text + "\n---\n" + TARGET)
        assert res.ok, [f.message for f in res.findings]
        store = ConfigStore(clock=clock)
        assert store.apply(list(res.resources), actor="folder").ok
        svc = RolloutService(store, clock=clock, state_dir=tmp_path, scrape_targets=list,
                             client_proxy="127.0.0.1:1", wait_for_replicas=False)
        await svc.start(run_loops=False)
        await svc.sync_all()
        svc.command("default", "api", "set-image", {"image": "api:v2"})
        await svc.sync_all()
        st = store.status(KEY)
        assert st["phase"] == "Succeeded" and st["canaryWeight"] == 0
        primary = store.get(("Deployment", "default", "api-primary"))
        assert primary is not None
        assert primary.spec["template"]["spec"]["containers"][0]["image"] == "api:v2"
        assert _replicas(store, "api") == 0
        await svc.stop()

    asyncio.run(go())
