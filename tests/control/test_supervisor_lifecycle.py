"""The supervisor with real processes: demo apps beside stand-in sidecars (no routing)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from tests import creds
from tollway.config.resource import ResourceSet
from tollway.control import push, serve
from tollway.control.local import plan as plan_mod
from tollway.control.local.procs import PortAllocator
from tollway.control.local.supervisor import Supervisor
from tollway.control.plane import ControlPlane
from tollway.control.store import ConfigStore
from tollway.kit.hashing import content_hash
from tollway.snapshot import types

FAKE_SIDECAR = str(Path(__file__).with_name("fake_sidecar.py"))


class ListenerCompiler:
    """Snapshots that only declare the entry's listeners; version changes with replicas."""

    def world(self, resources: Any, replicas: Any) -> Any:
        return tuple(sorted(r.name for r in replicas))

    def config(self, world: Any, entry: Any) -> types.ProxyConfig:
        listeners = tuple(
            types.Listener(name=k, kind="inbound" if k == "inbound" else "outbound",
                           port=entry.ports[k])
            for k in ("inbound", "outbound") if k in entry.ports)
        return types.ProxyConfig(version=content_hash([world, entry.name, dict(entry.ports)]),
                                 node=entry.node,
                                 listeners=listeners)

    def endpoints(self, world: Any) -> dict[str, Any]:
        return {}


def _deployment(make_resource: Any, replicas: int, version: str = "v1") -> Any:
    container = {"name": "app", "command": [sys.executable, "-m", "tollway.demo.app"],
                 "env": [{"name": "VERSION", "value": version}]}
    return make_resource("Deployment", "web", {
        "replicas": replicas,
        "template": {"metadata": {"labels": {"app": "web"}},
                     "spec": {"containers": [container]}},
    })


async def _until(cond: Any, timeout: float = 20.0) -> None:
    async def loop() -> None:
        while not cond():
            await asyncio.sleep(0.05)

    await asyncio.wait_for(loop(), timeout)


def test_supervisor_scales_restarts_and_stops(tmp_path: Path, make_resource: Any) -> None:
    async def main() -> None:
        store = ConfigStore(validator=lambda _r: [])
        plane = ControlPlane(store, compiler=ListenerCompiler(),
                             debounce=push.Debouncer(0.005, 0.02))
        runner = await serve.serve(serve.make_app(plane, guard=creds.guard()), "127.0.0.1", 0)
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        engine = asyncio.create_task(plane.run())
        sup = Supervisor(plane, control_url=url, state_dir=tmp_path, workdir=tmp_path,
                         sidecar_argv=lambda e, u: [sys.executable, FAKE_SIDECAR, u, e.name])
        try:
            await sup.reconcile(plan_mod.plan(ResourceSet([_deployment(make_resource, 2)])))
            assert await sup.wait_all_ready(30)
            assert len(plane.replicas) == 2  # ready replicas are endpoints

            victim = next(iter(sup.members.values()))
            assert victim.app is not None
            os.kill(victim.app.pid, signal.SIGKILL)
            await _until(lambda: victim.restarts == 1 and victim.ready)
            assert "app exited" in victim.last_exit

            await sup.reconcile(plan_mod.plan(ResourceSet([_deployment(make_resource, 1)])))
            await _until(lambda: len(sup.members) == 1 and len(plane.replicas) == 1)
            assert plane.book.get(victim.name) is None or len(plane.book.all()) == 1

            await sup.reconcile(plan_mod.plan(ResourceSet([_deployment(make_resource, 1, "v2")])))
            await _until(lambda: len(sup.members) == 1 and sup.all_ready()
                         and next(iter(sup.members.values())).plan.env[0][1] == "v2")
            pids = [m.app.pid for m in sup.members.values() if m.app]
        finally:
            await sup.stop_all()
            engine.cancel()
            await runner.cleanup()
        assert not sup.members
        assert all(not Path(f"/proc/{p}").exists() for p in pids)
        assert (tmp_path / "logs").is_dir()

    asyncio.run(main())


class _TakenSecond(PortAllocator):
    """Hands out an occupied port as the second one (a replica's inbound listener)."""

    def __init__(self, taken: int) -> None:
        super().__init__()
        self.taken = taken
        self.calls = 0

    def allocate(self) -> int:
        self.calls += 1
        return self.taken if self.calls == 2 else super().allocate()


def test_supervisor_moves_a_sidecar_off_a_taken_port(tmp_path: Path, make_resource: Any) -> None:
    async def main() -> None:
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        store = ConfigStore(validator=lambda _r: [])
        plane = ControlPlane(store, compiler=ListenerCompiler(),
                             debounce=push.Debouncer(0.005, 0.02))
        runner = await serve.serve(serve.make_app(plane, guard=creds.guard()), "127.0.0.1", 0)
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        engine = asyncio.create_task(plane.run())
        sup = Supervisor(plane, control_url=url, state_dir=tmp_path, workdir=tmp_path,
                         ports=_TakenSecond(taken),
                         sidecar_argv=lambda e, u: [sys.executable, FAKE_SIDECAR, u, e.name])
        try:
            await sup.reconcile(plan_mod.plan(ResourceSet([_deployment(make_resource, 1)])))
            assert await sup.wait_all_ready(30)
            member = next(iter(sup.members.values()))
            assert member.entry.ports["inbound"] != taken
            assert member.reallocated_for
        finally:
            await sup.stop_all()
            engine.cancel()
            await runner.cleanup()
            blocker.close()

    asyncio.run(main())
