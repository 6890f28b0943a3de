"""A basic canary (no trafficRouting) through the controller and a real store, on a fake
clock, against a simulated cluster whose replicas get ready one per sync: the replica
sets move toward each weight within maxSurge/maxUnavailable, the weight is reached only
with every replica ready, and promotion and abort are paced the same way."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tollway.config import load
from tollway.control.store import ConfigStore
from tollway.kit.clock import FakeClock
from tollway.rollout import traffic
from tollway.rollout.service import RolloutService

ROLLOUT = """
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: web:v1, command: [tollway, demo-app]}
  strategy:
    canary:
      maxSurge: 1
      maxUnavailable: 0
      steps:
      - setWeight: 50
      - pause: {}
"""
KEY = ("Rollout", "default", "web")


class Cluster:
    """Ready replicas per generated Deployment: one more gets ready per `tick`; a set that
    shrinks loses its not-ready replicas first."""

    def __init__(self, store: ConfigStore) -> None:
        self.store = store
        self.ready: dict[str, int] = {}

    def counts(self) -> dict[tuple[str, str], int]:
        return {("default", w): n for w, n in self.ready.items()}

    def sets(self) -> dict[str, int]:
        return {r.name: int(r.spec.get("replicas", 0))
                for r in self.store.current().of_kind("Deployment")
                if r.annotations.get(traffic.OWNER) == "Rollout/default/web"}

    def tick(self) -> None:
        spec = self.sets()
        self.ready = {w: min(n, self.ready.get(w, 0) + 1) for w, n in spec.items()}

    def available(self) -> int:
        spec = self.sets()
        return sum(min(self.ready.get(w, 0), n) for w, n in spec.items())


def _setup(tmp: Path) -> tuple[FakeClock, ConfigStore, Cluster, RolloutService]:
    clock = FakeClock()
    res = load.load_text(ROLLOUT)
    assert res.ok, [f.message for f in res.findings]
    store = ConfigStore(clock=clock)
    assert store.apply(list(res.resources), actor="folder").ok
    cluster = Cluster(store)
    svc = RolloutService(store, clock=clock, state_dir=tmp, scrape_targets=list,
                         client_proxy="127.0.0.1:1", replica_ready=cluster.counts)
    return clock, store, cluster, svc


def test_basic_canary_paces_by_readiness_within_surge_and_unavailable(tmp_path: Path) -> None:
    async def go() -> None:
        clock, store, cluster, svc = _setup(tmp_path)
        await svc.start(run_loops=False)
        history: list[tuple[str, int, dict[str, int]]] = []

        async def sync() -> dict[str, Any]:
            clock.advance(1)
            await svc.sync_all()
            st = store.status(KEY)
            sets = cluster.sets()
            history.append((st["phase"], st["canary"]["weights"]["canary"]["weight"], sets))
            assert sum(sets.values()) <= 5, sets  # replicas + maxSurge
            if len(sets) > 1:  # a rollout under way
                assert cluster.available() >= 4, (sets, cluster.ready)  # - maxUnavailable
            cluster.tick()
            return st

        for _ in range(6):
            await sync()
        (stable,) = cluster.sets()
        assert cluster.sets() == {stable: 4} and cluster.available() == 4

        assert svc.command("default", "web", "set-image", {"image": "web:v2"})[0] == 200
        for _ in range(30):
            st = await sync()
            if st["phase"] == "Paused":
                break
        assert st["phase"] == "Paused"
        canary = next(w for w in cluster.sets() if w != stable)
        assert cluster.sets() == {stable: 2, canary: 2}
        # the weight was set only once the sets were at 2 + 2 with every replica ready
        first_50 = next(i for i, h in enumerate(history) if h[1] == 50)
        assert history[first_50 - 1][2] == {stable: 2, canary: 2}
        assert any(h[2] == {stable: 4, canary: 1} for h in history)  # it surged by one

        svc.command("default", "web", "promote", {})
        for _ in range(30):
            st = await sync()
            if cluster.sets() == {canary: 4} and cluster.available() == 4:
                break
        assert st["phase"] == "Healthy" and cluster.sets() == {canary: 4}
        await svc.stop()

    asyncio.run(go())


def test_basic_canary_abort_drains_the_canary_as_the_stable_grows(tmp_path: Path) -> None:
    async def go() -> None:
        clock, store, cluster, svc = _setup(tmp_path)
        await svc.start(run_loops=False)

        async def sync() -> dict[str, Any]:
            clock.advance(1)
            await svc.sync_all()
            assert sum(cluster.sets().values()) <= 5
            cluster.tick()
            return store.status(KEY)

        for _ in range(6):
            await sync()
        (stable,) = cluster.sets()
        svc.command("default", "web", "set-image", {"image": "web:v2"})
        for _ in range(30):
            if (await sync())["phase"] == "Paused":
                break
        svc.command("default", "web", "abort", {})
        for _ in range(30):
            st = await sync()
            assert cluster.available() >= 4
            if cluster.sets() == {stable: 4} and cluster.available() == 4:
                break
        assert st["phase"] == "Degraded" and st["abort"] is True
        assert cluster.sets() == {stable: 4}
        await svc.stop()

    asyncio.run(go())


def test_counts_survive_a_controller_restart(tmp_path: Path) -> None:
    async def go() -> None:
        clock, store, cluster, svc = _setup(tmp_path)
        await svc.start(run_loops=False)
        for _ in range(6):
            clock.advance(1)
            await svc.sync_all()
            cluster.tick()
        svc.command("default", "web", "set-image", {"image": "web:v2"})
        for _ in range(3):
            clock.advance(1)
            await svc.sync_all()
            cluster.tick()
        before = cluster.sets()
        assert len(before) == 2
        await svc.stop()
        again = RolloutService(store, clock=clock, state_dir=tmp_path, scrape_targets=list,
                               client_proxy="127.0.0.1:1",
                               replica_ready=lambda: {})  # nothing ready: nothing may shrink
        await again.start(run_loops=False)
        await again.sync_all()
        assert cluster.sets() == before
        await again.stop()

    asyncio.run(go())
