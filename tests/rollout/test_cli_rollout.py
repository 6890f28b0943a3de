"""`tollway rollout ...` against the real API served over loopback."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from typer.testing import CliRunner

from tests.conftest import free_port
from tests.rollout.test_controller_store import _store
from tollway.cli.main import app
from tollway.kit.clock import FakeClock
from tollway.rollout.service import RolloutService


class Server:
    def __init__(self, tmp: Path) -> None:
        self.clock = FakeClock()
        self.store = _store(self.clock)
        self.loop = asyncio.new_event_loop()
        self.port = free_port()
        self.svc = RolloutService(self.store, clock=self.clock, state_dir=tmp,
                                  scrape_targets=list,
                                  wait_for_replicas=False)
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            await self.svc.start(run_loops=False)
            await self.svc.sync_all()
            webapp = web.Application()
            webapp.add_routes(self.svc.routes())
            self.runner = web.AppRunner(webapp)
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
            self.ready.set()

        self.loop.run_until_complete(main())
        self.loop.run_forever()

    def sync(self) -> None:
        asyncio.run_coroutine_threadsafe(self.svc.sync_all(), self.loop).result(10)

    def stop(self) -> None:
        async def down() -> None:
            await self.runner.cleanup()
            await self.svc.stop()

        asyncio.run_coroutine_threadsafe(down(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path)
    s.thread.start()
    assert s.ready.wait(10)
    yield s
    s.stop()


def _cli(server: Server, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, [*args, "--server", f"http://127.0.0.1:{server.port}"])
    return result.exit_code, result.output


def test_cli_rollout_list_status_setimage_abort(server: Server) -> None:
    code, out = _cli(server, "rollout", "list")
    assert code == 0 and "payment-service" in out and "Healthy" in out
    code, out = _cli(server, "rollout", "set-image", "payment-service", "payment-service:v3",
                     "--actor", "ci", "--reason", "release 3")
    assert code == 0 and "image set" in out
    server.sync()
    code, out = _cli(server, "rollout", "status", "payment-service")
    assert code == 0
    # Steps count from 1 in the CLI, as Argo's `Step: 2/10` and the dashboard do.
    assert "Paused" in out and "->  2. pause: 300s" in out and "canary 5%" in out
    assert "  step: 2/10" in out, out
    code, out = _cli(server, "rollout", "status", "payment-service", "-o", "json")
    body = json.loads(out)
    assert body["kind"] == "Rollout" and body["status"]["currentStepIndex"] == 1
    code, out = _cli(server, "rollout", "abort", "payment-service", "--actor", "bob",
                     "--reason", "pager")
    assert code == 0 and "abort requested" in out
    server.sync()
    _, out = _cli(server, "rollout", "status", "payment-service")
    assert "Degraded  (aborted)" in out and "[bob]" in out and "pager" in out


def test_cli_rollout_errors_are_one_sentence(server: Server) -> None:
    code, out = _cli(server, "rollout", "status", "nope")
    assert code == 1 and "no Rollout or Canary named nope" in out
    code, out = _cli(server, "rollout", "status", "payment-service", "-o", "yaml")
    assert code == 2
    result = CliRunner().invoke(app, ["rollout", "list", "--server",
                                      f"http://127.0.0.1:{free_port()}"])
    assert result.exit_code == 1 and "cannot reach the control plane" in result.output
