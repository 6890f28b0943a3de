"""A replica is an endpoint only while its sidecar and its app listen; and once the
supervisor says every replica is ready, every proxy already has them as endpoints.

Real processes (demo apps beside stand-in sidecars): every time the control plane builds
the world that snapshots (and so every proxy's endpoints) come from, each replica in it
must accept connections on its sidecar's inbound port and on its app's port. A replica
published as soon as the supervisor registers it (before its processes even started) is
what made clients see 503 "connection refused" whenever a rollout scaled a routed set up.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path
from typing import Any

from test_supervisor_lifecycle import FAKE_SIDECAR, ListenerCompiler, _deployment, _until

from tests import creds
from tollway.config.resource import ResourceSet
from tollway.control import push, serve
from tollway.control.local import plan as plan_mod
from tollway.control.local.supervisor import Supervisor
from tollway.control.plane import ControlPlane
from tollway.control.proxies import ProxyEntry
from tollway.control.registry import Replica
from tollway.control.store import ConfigStore
from tollway.snapshot import types


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


class CheckingCompiler(ListenerCompiler):
    """ListenerCompiler that notes every replica a world holds whose ports refuse."""

    def __init__(self) -> None:
        self.refused: list[str] = []
        self.seen: set[str] = set()

    def world(self, resources: Any, replicas: Any) -> Any:
        for r in replicas:
            self.seen.add(r.name)
            for what, port in (("inbound", r.port), ("app", r.app_port)):
                if not _accepts(port):
                    self.refused.append(f"{r.name}: {what} port {port} refuses")
        return super().world(resources, replicas)


def test_replicas_become_endpoints_only_once_they_listen(
    tmp_path: Path, make_resource: Any
) -> None:
    async def main() -> None:
        compiler = CheckingCompiler()
        plane = ControlPlane(ConfigStore(validator=lambda _r: []), compiler=compiler,
                             debounce=push.Debouncer(0.005, 0.02))
        runner = await serve.serve(serve.make_app(plane, guard=creds.guard()), "127.0.0.1", 0)
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        engine = asyncio.create_task(plane.run())
        sup = Supervisor(plane, control_url=url, state_dir=tmp_path, workdir=tmp_path,
                         sidecar_argv=lambda e, u: [sys.executable, FAKE_SIDECAR, u, e.name])
        try:
            await sup.reconcile(plan_mod.plan(ResourceSet([_deployment(make_resource, 2)])))
            assert await sup.wait_all_ready(60)
            # "ready" means every proxy already holds a snapshot with every ready replica
            names = {m.name for m in sup.members.values() if m.plan}
            assert set(plane.world) == names
            assert all(plane.ledger.row(n).current for n in names)
            for replicas, version in ((3, "v1"), (2, "v2")):
                await sup.reconcile(plan_mod.plan(ResourceSet(
                    [_deployment(make_resource, replicas, version)])))
                await _until(lambda n=replicas, v=version: sup.all_ready() and [
                    m.plan.env[0][1] for m in sup.members.values() if m.plan] == [v] * n, 60)
                await asyncio.sleep(0.1)  # the last recompute has run
        finally:
            await sup.stop_all()
            engine.cancel()
            await runner.cleanup()
        assert len(compiler.seen) == 5  # 3 of v1, 2 of v2: every one was checked
        assert compiler.refused == []

    asyncio.run(main())


def test_a_registered_vm_is_an_endpoint_and_a_local_entry_is_not() -> None:
    async def main() -> None:
        plane = ControlPlane(ConfigStore(validator=lambda _r: []))
        node = types.Node(name="web-0.default", workload="web", labels={"app": "web"})
        ports = {"inbound": 15006, "app": 8080, "outbound": 15001, "admin": 15000}
        plane.register(ProxyEntry(node, admin="127.0.0.1:15000", inbound="127.0.0.1:15006",
                                  ports=ports))
        assert plane.replicas == {}  # tollway up publishes it with set_replica once ready
        plane.set_replica(Replica(workload="web", kind="Deployment", namespace="default",
                                  labels={"app": "web"}, service_account="default",
                                  address="127.0.0.1", port=15006, app_port=8080,
                                  name=node.name))
        assert set(plane.replicas) == {node.name}
        plane.unregister(node.name)
        assert plane.replicas == {}

        vm = types.Node(name="web-vm.default", workload="web", labels={"app": "web"})
        plane.register(ProxyEntry(vm, admin="10.0.0.5:15000", inbound="10.0.0.5:15006",
                                  address="10.0.0.5", ports=ports, origin="vm"))
        assert plane.replicas[vm.name].port == 15006
        plane.close()

    asyncio.run(main())
