"""The control plane tells its owner of each refusal once per proxy and reason.

`tollway up` prints what it is told (tests/e2e/test_up_port_taken.py): a proxy resending the
same refusal must not flood the terminal, and a new reason must not be swallowed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tollway.control.plane import ControlPlane
from tollway.control.store import ConfigStore


def test_each_reason_is_told_once(fake_compiler: Any) -> None:
    async def run() -> list[tuple[str, str]]:
        plane = ControlPlane(ConfigStore(), compiler=fake_compiler)
        told: list[tuple[str, str]] = []
        plane.on_refused = lambda proxy, reason: told.append((proxy, reason))
        await plane.ack("gw", "v1", "NACK", "port 80 in use")
        await plane.ack("gw", "v1", "NACK", "port 80 in use")  # the same again
        await plane.ack("gw", "v2", "NACK", "port 80 in use")  # a new version, same cause
        await plane.ack("gw", "v3", "NACK", "bad route")
        await plane.ack("gw", "v4", "ACK")
        await plane.ack("side", "v1", "NACK", "port 80 in use")  # another proxy
        plane.close()
        return told

    assert asyncio.run(run()) == [("gw", "port 80 in use"), ("gw", "bad route"),
                                  ("side", "port 80 in use")]
