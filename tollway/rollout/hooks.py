"""Flagger webhooks and the bundled load tester.

A webhook gets Flagger's payload `{name, namespace, phase, checksum, metadata}` by POST;
2xx passes. A webhook whose `metadata.cmd` is a `hey` command is run by Tollway's own load
tester instead (Flagger's flagger-loadtester URL names an in-cluster service), sending
through the mesh's client proxy so `http://api:8080/...` reaches the service by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import httpx

from tollway.loadtest import hey
from tollway.loadtest import run as load_run

log = logging.getLogger(__name__)
GATES = ("confirm-rollout", "confirm-traffic-increase", "confirm-promotion", "rollback")


def hook_type(hook: Mapping[str, Any]) -> str:
    return str(hook.get("type", "rollout"))


def load_command(hook: Mapping[str, Any]) -> str | None:
    cmd = str((hook.get("metadata") or {}).get("cmd", "")).strip()
    return cmd if cmd.split(" ", 1)[0].endswith("hey") else None


async def call(client: httpx.AsyncClient, hook: Mapping[str, Any],
               payload: Mapping[str, Any]) -> tuple[bool, str]:
    """POST the payload; (passed, why)."""
    url = str(hook.get("url", ""))
    timeout = float(str(hook.get("timeout", "10s")).rstrip("s") or 10)
    try:
        resp = await client.post(url, json=dict(payload), timeout=timeout)
    except httpx.HTTPError as exc:
        return False, f"webhook {hook.get('name')}: {url} unreachable ({type(exc).__name__})"
    ok = 200 <= resp.status_code < 300
    return ok, f"webhook {hook.get('name')}: {resp.status_code}"


class LoadTester:
    """Keeps each load-test command running (restarted when it ends) until stopped."""

    def __init__(self, via: str | None) -> None:
        self.via = via
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.last: dict[str, str] = {}

    def ensure(self, key: str, cmd: str) -> str:
        task = self.tasks.get(key)
        if task is not None and not task.done():
            return f"load test running: {cmd}"
        try:
            spec = hey.parse(cmd)
        except hey.HeyError as exc:
            return f"load test not started: {exc}"
        self.tasks[key] = asyncio.create_task(self._loop(key, spec))
        return f"load test started: {cmd}"

    async def _loop(self, key: str, spec: hey.LoadSpec) -> None:
        while True:
            summary = await load_run.run(spec, via=self.via, max_seconds=spec.duration or 60)
            self.last[key] = summary.render()
            if spec.duration is None:
                return

    async def stop(self, key: str | None = None) -> None:
        keys = [key] if key else list(self.tasks)
        for k in keys:
            task = self.tasks.pop(k, None)
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


async def gates(client: httpx.AsyncClient, hooks: tuple[Mapping[str, Any], ...],
                payload: Mapping[str, Any]) -> dict[str, bool]:
    """Ask every confirm-*/rollback webhook; a missing hook leaves its gate open."""
    out: dict[str, bool] = {}
    for hook in hooks:
        kind = hook_type(hook)
        if kind in GATES:
            ok, _ = await call(client, hook, payload)
            out[kind] = ok
    return out
