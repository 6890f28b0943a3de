"""A Deployment's template change with real processes: the supervisor replaces replicas
within `strategy.rollingUpdate` (maxSurge 1, maxUnavailable 0 of 4 replicas)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from tests import creds
from tests.control.test_supervisor_lifecycle import FAKE_SIDECAR, ListenerCompiler
from tollway.config.resource import ResourceSet
from tollway.control import push, serve
from tollway.control.local import plan as plan_mod
from tollway.control.local.supervisor import Supervisor
from tollway.control.plane import ControlPlane
from tollway.control.store import ConfigStore


def _web(make_resource: Any, version: str) -> Any:
    container = {"name": "app", "command": [sys.executable, "-m", "tollway.demo.app"],
                 "env": [{"name": "VERSION", "value": version}]}
    return make_resource("Deployment", "web", {
        "replicas": 4,
        "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "template": {"metadata": {"labels": {"app": "web"}},
                     "spec": {"containers": [container]}},
    })


def test_rolling_update_keeps_within_max_surge_and_max_unavailable(
    tmp_path: Path, make_resource: Any,
) -> None:
    async def main() -> None:
        store = ConfigStore(validator=lambda _r: [])
        plane = ControlPlane(store, compiler=ListenerCompiler(),
                             debounce=push.Debouncer(0.005, 0.02))
        runner = await serve.serve(serve.make_app(plane, guard=creds.guard()), "127.0.0.1", 0)
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        engine = asyncio.create_task(plane.run())
        sup = Supervisor(plane, control_url=url, state_dir=tmp_path, workdir=tmp_path,
                         sidecar_argv=lambda e, u: [sys.executable, FAKE_SIDECAR, u, e.name])
        seen: list[tuple[int, int]] = []  # (replicas that should run, ready ones)

        def version(m: Any) -> str:
            return str(dict(m.plan.env)["VERSION"])

        async def watch() -> None:
            while True:
                live = [m for m in sup.members.values() if m.plan is not None and not m.stopping]
                seen.append((len(live), sum(m.ready for m in live)))
                await asyncio.sleep(0.01)

        try:
            await sup.reconcile(plan_mod.plan(ResourceSet([_web(make_resource, "v1")])))
            assert await sup.wait_all_ready(60)
            watcher = asyncio.create_task(watch())
            await sup.reconcile(plan_mod.plan(ResourceSet([_web(make_resource, "v2")])))

            def done() -> bool:
                live = [m for m in sup.members.values() if m.plan is not None]
                return len(live) == 4 and all(m.ready and version(m) == "v2" for m in live)

            async def until_done() -> None:
                while not done():
                    await asyncio.sleep(0.05)

            await asyncio.wait_for(until_done(), 90)
            watcher.cancel()
        finally:
            await sup.stop_all()
            engine.cancel()
            await runner.cleanup()
        assert max(n for n, _ in seen) == 5  # it did surge, by one
        assert min(r for _, r in seen) >= 4  # and never had fewer than 4 ready
        assert any(n == 5 and r == 4 for n, r in seen)  # one new replica at a time

    asyncio.run(main())
