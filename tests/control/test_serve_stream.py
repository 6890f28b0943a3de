"""The proxy ↔ control plane wire over real loopback sockets (fake translation)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx

from tests import creds
from tollway.control import push, serve
from tollway.control.plane import ControlPlane
from tollway.control.proxies import ProxyEntry
from tollway.control.store import ConfigStore
from tollway.proxy import subscriber
from tollway.snapshot import types


def _no_checks(_r: Any) -> list[Any]:
    return []


@contextlib.asynccontextmanager
async def running_plane(compiler: Any, port: int = 0) -> AsyncIterator[tuple[ControlPlane, str]]:
    store = ConfigStore(validator=_no_checks)
    plane = ControlPlane(store, compiler=compiler, debounce=push.Debouncer(0.005, 0.02))
    app = serve.make_app(plane, guard=creds.guard(), heartbeat=0.2)
    runner = await serve.serve(app, "127.0.0.1", port)
    task = asyncio.create_task(plane.run())
    bound = runner.addresses[0][1]
    try:
        yield plane, f"http://127.0.0.1:{bound}"
    finally:
        task.cancel()
        plane.close()
        await runner.cleanup()


async def _until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    async def loop() -> None:
        while not cond():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(loop(), timeout)


async def _get(url: str) -> Any:
    async with httpx.AsyncClient(headers=creds.admin_headers()) as client:
        return (await client.get(url)).json()


def _run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 20))  # type: ignore[arg-type]


def test_stream_pushes_and_acks_each_change(fake_compiler: Any, fake_server_cls: Any,
                                            make_resource: Any) -> None:
    async def main() -> None:
        async with running_plane(fake_compiler) as (plane, url):
            node = types.Node(name="a-0.default", workload="a")
            plane.register(ProxyEntry(node, admin="127.0.0.1:1"))
            server = fake_server_cls()
            follow = asyncio.create_task(
                subscriber.follow(server, url, node, admin="127.0.0.1:1", inbound=None,
                    token=creds.for_node(node)))
            await _until(lambda: plane.ledger.row(node.name).current)
            first = server.version
            plane.store.apply([make_resource("Service", "s1")])
            await _until(lambda: server.version != first and plane.ledger.row(node.name).current)
            assert [t.name for t in server.applied[-1].route_tables] == ["s1"]
            rows = (await _get(url + "/v1/proxies"))
            assert rows[0]["name"] == node.name and rows[0]["status"] == "SYNCED"
            follow.cancel()

    _run(main())


def test_stream_nack_keeps_last_and_reports_reason(fake_compiler: Any, fake_server_cls: Any,
                                                   make_resource: Any) -> None:
    async def main() -> None:
        async with running_plane(fake_compiler) as (plane, url):
            node = types.Node(name="a-0.default")
            plane.register(ProxyEntry(node, admin="127.0.0.1:1"))
            server = fake_server_cls()
            follow = asyncio.create_task(
                subscriber.follow(server, url, node, admin="127.0.0.1:1", inbound=None,
                    token=creds.for_node(node)))
            await _until(lambda: plane.ledger.row(node.name).current)
            good = server.version
            plane.store.apply([make_resource("Service", "bad")])
            await _until(lambda: bool(plane.ledger.row(node.name).nacked))
            row = plane.ledger.row(node.name)
            assert "route table 'bad' refused" in row.nack_reason
            assert server.version == good and row.acked == good
            status = (await _get(url + "/v1/proxies"))[0]["status"]
            assert status == "NACKED"
            follow.cancel()

    _run(main())


def test_unknown_proxy_registers_then_streams(fake_compiler: Any, fake_server_cls: Any) -> None:
    async def main() -> None:
        async with running_plane(fake_compiler) as (plane, url):
            node = types.Node(name="vm-1.default", workload="vm", labels={"app": "vm"})
            server = fake_server_cls()
            follow = asyncio.create_task(subscriber.follow(
                server, url, node, admin="127.0.0.1:9901", inbound="127.0.0.1:15006",
                token=creds.for_node(node)))
            await _until(lambda: server.version is not None)
            entry = plane.book.get(node.name)
            assert entry is not None and entry.origin == "vm"
            assert node.name in plane.replicas  # a VM sidecar backs its hosts
            sd = (await _get(url + "/v1/sd/prometheus"))
            assert sd == [{"targets": ["127.0.0.1:9901"], "labels": {
                "namespace": "default", "workload": "vm", "proxy": node.name,
                "kind": "sidecar", "__metrics_path__": "/stats/prometheus", "app": "vm"}}]
            follow.cancel()

    _run(main())


def test_proxy_keeps_config_and_resyncs_after_control_plane_restart(
    fake_compiler: Any, fake_server_cls: Any, make_resource: Any
) -> None:
    async def main() -> None:
        node = types.Node(name="a-0.default")
        server = fake_server_cls()
        async with running_plane(fake_compiler) as (plane, url):
            port = int(url.rsplit(":", 1)[1])
            follow = asyncio.create_task(subscriber.follow(
                server, url, node, admin="127.0.0.1:1", inbound=None, token=creds.for_node(node)))
            await _until(lambda: plane.ledger.row(node.name).current)
            kept = server.version
        assert server.version == kept  # control plane gone: last snapshot stays
        async with running_plane(fake_compiler, port) as (plane2, _):
            plane2.store.apply([make_resource("Service", "s2")])
            await _until(lambda: plane2.ledger.row(node.name).current)
            assert server.version != kept
        follow.cancel()

    _run(main())


def test_apply_and_get_over_http(fake_compiler: Any) -> None:
    async def main() -> None:
        async with running_plane(fake_compiler) as (plane, url), httpx.AsyncClient(
            base_url=url, headers=creds.admin_headers()
        ) as client:
            text = ("apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n"
                    "  ports:\n  - port: 80\n")
            ok = await client.post("/v1/apply", json={"text": text, "filename": "s.yaml"})
            assert ok.status_code == 200 and ok.json()["changed"] == ["Service/default/s"]
            got = (await client.get("/v1/resources/svc/s")).json()["items"][0]
            assert got["metadata"]["generation"] == 1 and got["spec"]["ports"][0]["port"] == 80
            bad = await client.post("/v1/apply", json={
                "text": "apiVersion: v1\nkind: Service\nmetadata:\n  name: t\nspec:\n"
                        "  bogus: 1\n", "filename": "t.yaml"})
            assert bad.status_code == 422 and bad.json()["exit"] == 1
            assert bad.json()["findings"][0].startswith("t.yaml:")
            assert plane.store.get(("Service", "default", "t")) is None
            gone = await client.post("/v1/delete", json={"text": text, "filename": "s.yaml"})
            assert gone.json()["deleted"] == ["Service/default/s"]
            missing = await client.get("/v1/resources/Service/s")
            assert missing.status_code == 404

    _run(main())


def test_debug_views_show_config_registry_and_sync(fake_compiler: Any,
                                                    fake_server_cls: Any) -> None:
    async def main() -> None:
        async with running_plane(fake_compiler) as (plane, url):
            node = types.Node(name="a-0.default")
            plane.register(ProxyEntry(node, admin="127.0.0.1:1"))
            follow = asyncio.create_task(subscriber.follow(
                fake_server_cls(), url, node, admin="127.0.0.1:1", inbound=None,
                token=creds.for_node(node)))
            await _until(lambda: plane.ledger.row(node.name).current)
            configz = await _get(url + "/debug/configz")
            assert configz[node.name]["version"] == plane.configs[node.name].version
            syncz = await _get(url + "/debug/syncz")
            assert syncz["statistics"]["current"] == 1
            registryz = await _get(url + "/debug/registryz")
            assert "endpoints" in registryz and registryz["replicas"] == []
            follow.cancel()

    _run(main())


def test_outbox_coalesces_to_the_newest_snapshot() -> None:
    from tollway.control.plane import Outbox

    async def main() -> None:
        box = Outbox()
        box.put(b"v1\n")
        box.put(b"v2\n")
        assert await box.take(1.0) == b"v2\n"
        assert await box.take(0.01) is None  # nothing new: time for a heartbeat
        box.close()
        assert box.closed

    _run(main())


def test_plane_pushes_only_when_the_version_changes(fake_compiler: Any,
                                                    make_resource: Any) -> None:
    async def main() -> None:
        store = ConfigStore(validator=_no_checks)
        plane = ControlPlane(store, compiler=fake_compiler)
        node = types.Node(name="p")
        plane.register(ProxyEntry(node))
        box = plane.open_stream("p")
        plane.recompute()
        assert (await box.take(1.0) or b"").startswith(b'{"version":"')
        plane.touch()  # inputs "changed" but the snapshot is the same
        plane.recompute()
        assert await box.take(0.01) is None
        store.apply([make_resource("Service", "s")])
        plane.recompute()
        assert await box.take(1.0) is not None
        assert plane.ledger.row("p").pushes == 2

    _run(main())


def test_a_bug_while_applying_does_not_leave_the_proxy_deaf(
    fake_compiler: Any, fake_server_cls: Any, make_resource: Any
) -> None:
    """An unexpected exception from `apply` (once: retiring an HTTP/2 cluster raised
    TypeError after the swap) must not end `follow`: it reconnects and takes the next
    snapshot, as after any broken stream."""

    class Buggy(fake_server_cls):  # type: ignore[misc,valid-type]
        def apply(self, config: Any) -> None:
            super().apply(config)  # in place, then the bug
            if any(t.name == "boom" for t in config.route_tables):
                raise TypeError("'_Streams' object is not iterable")

    async def main() -> None:
        async with running_plane(fake_compiler) as (plane, url):
            node = types.Node(name="a-0.default")
            plane.register(ProxyEntry(node, admin="127.0.0.1:1"))
            server = Buggy()
            follow = asyncio.create_task(subscriber.follow(
                server, url, node, admin="127.0.0.1:1", inbound=None,
                token=creds.for_node(node)))
            await _until(lambda: plane.ledger.row(node.name).current)
            plane.store.apply([make_resource("Service", "boom")])
            await _until(lambda: any(t.name == "boom" for t in server.applied[-1].route_tables))
            plane.store.apply([make_resource("Service", "after")])
            await _until(lambda: any(t.name == "after" for t in server.applied[-1].route_tables)
                         and plane.ledger.row(node.name).current)
            assert not follow.done()
            follow.cancel()

    _run(main())
