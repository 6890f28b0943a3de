"""The live view of `tollway up`: one row per proxy (replica, client, gateway).

On a terminal it is a rich table refreshed every second; otherwise (logs, tests) it
prints one line whenever a member becomes ready or not ready, or restarts.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from tollway.control.local.supervisor import Supervisor
from tollway.control.plane import ControlPlane


def rows(supervisor: Supervisor | None, plane: ControlPlane | None) -> list[dict[str, Any]]:
    if supervisor is None or plane is None:
        return []
    out = []
    for name, m in sorted(supervisor.members.items()):
        sync = plane.ledger.row(name)
        out.append({
            "name": name,
            "workload": m.entry.node.workload,
            "namespace": m.entry.node.namespace,
            "kind": m.entry.node.kind,
            "ready": m.ready,
            "stopping": m.stopping,
            "restarts": m.restarts,
            "last_exit": m.last_exit,
            "ports": dict(m.entry.ports),
            "address": m.entry.address,  # its netns' IP under --intercept, else 127.0.0.1
            "acked": sync.acked,
            "pid": m.app.pid if m.app else (m.sidecar.pid if m.sidecar else None),
        })
    return out


def _table(supervisor: Supervisor, plane: ControlPlane) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("proxy", "ready", "restarts", "app port", "inbound", "config"):
        table.add_column(col)
    for row in rows(supervisor, plane):
        ports = row["ports"]
        ready = "[green]yes[/]" if row["ready"] else "[yellow]no[/]"
        table.add_row(row["name"], ready, str(row["restarts"]), str(ports.get("app", "-")),
                      str(ports.get("inbound", ports.get("outbound", "-"))),
                      row["acked"][:8] or "-")
    stats = plane.statistics()
    table.caption = (f"{stats.current}/{stats.proxies} proxies current, "
                     f"revision {plane.store.revision}, Ctrl-C stops")
    return table


async def show(supervisor: Supervisor, plane: ControlPlane | None,
               echo: Callable[[str], None]) -> None:
    if plane is None:
        return
    if sys.stdout.isatty():
        with Live(_table(supervisor, plane), console=Console(), refresh_per_second=2) as live:
            while True:
                await asyncio.sleep(1.0)
                live.update(_table(supervisor, plane))
    seen: dict[str, tuple[bool, int]] = {}
    while True:
        for row in rows(supervisor, plane):
            state = (row["ready"], row["restarts"])
            if seen.get(row["name"]) != state:
                if row["name"] in seen or not row["ready"]:
                    word = "ready" if row["ready"] else "not ready"
                    echo(f"  {row['name']}: {word} (restarts {row['restarts']})")
                seen[row["name"]] = state
        await asyncio.sleep(0.5)
