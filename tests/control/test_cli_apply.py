"""`tollway apply/delete/get/proxy-status` against a real control plane on loopback."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests import creds
from tollway.cli import credentials
from tollway.cli.main import app
from tollway.control import serve
from tollway.control.plane import ControlPlane
from tollway.control.store import ConfigStore

SVC = "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  ports:\n  - port: 80\n"


@pytest.fixture
def server(fake_compiler: Any, tmp_path_factory: pytest.TempPathFactory,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, ConfigStore]]:
    loop = asyncio.new_event_loop()
    store = ConfigStore()
    started = threading.Event()
    holder: dict[str, Any] = {}

    async def boot() -> None:
        plane = ControlPlane(store, compiler=fake_compiler)
        holder["runner"] = await serve.serve(serve.make_app(plane, guard=creds.guard()),
                                             "127.0.0.1", 0)
        holder["url"] = f"http://127.0.0.1:{holder['runner'].addresses[0][1]}"
        started.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(boot(), loop)
    assert started.wait(10)
    # as `tollway up` does: the admin token left where the CLI on this machine looks
    monkeypatch.setenv("TOLLWAY_CONFIG_DIR", str(tmp_path_factory.mktemp("config")))
    monkeypatch.delenv("TOLLWAY_TOKEN", raising=False)
    credentials.remember(holder["url"], creds.admin())
    yield holder["url"], store
    asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_cli_apply_get_delete_round_trip(server: tuple[str, ConfigStore],
                                         tmp_path: Path) -> None:
    url, store = server
    runner = CliRunner()
    (tmp_path / "a.yaml").write_text(SVC.format(name="a"))
    (tmp_path / "b.yaml").write_text(SVC.format(name="b"))
    out = runner.invoke(app, ["apply", "-f", str(tmp_path), "--server", url])
    assert out.exit_code == 0, out.output
    assert "service/a configured" in out.output and "service/b configured" in out.output
    again = runner.invoke(app, ["apply", "-f", str(tmp_path / "a.yaml"), "--server", url])
    assert "service/a unchanged" in again.output
    got = runner.invoke(app, ["get", "svc", "a", "-o", "json", "--server", url])
    assert got.exit_code == 0 and json.loads(got.output)["metadata"]["generation"] == 1
    gone = runner.invoke(app, ["delete", "-f", str(tmp_path / "b.yaml"), "--server", url])
    assert gone.exit_code == 0 and "service/b deleted" in gone.output
    assert store.get(("Service", "default", "b")) is None


def test_cli_apply_invalid_prints_findings_and_changes_nothing(
    server: tuple[str, ConfigStore], tmp_path: Path
) -> None:
    url, store = server
    (tmp_path / "a.yaml").write_text(SVC.format(name="a"))
    (tmp_path / "bad.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  bogus: 1\n")
    out = CliRunner().invoke(app, ["apply", "-f", str(tmp_path), "--server", url])
    assert out.exit_code == 1
    assert f"{tmp_path / 'bad.yaml'}:" in out.output and ": error: " in out.output
    assert len(store.current()) == 0


def test_cli_unreachable_server_is_one_sentence() -> None:
    out = CliRunner().invoke(app, ["proxy-status", "--server", "http://127.0.0.1:9"])
    assert out.exit_code == 1
    assert "cannot reach the control plane at http://127.0.0.1:9" in out.output


def test_cli_proxy_status_json_lists_proxies(server: tuple[str, ConfigStore]) -> None:
    url, _ = server
    out = CliRunner().invoke(app, ["proxy-status", "-o", "json", "--server", url])
    assert out.exit_code == 0 and json.loads(out.output) == []
