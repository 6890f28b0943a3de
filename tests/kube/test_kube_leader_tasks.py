"""What rides on the Lease: leader tasks (the rollout controller) run only while this
replica leads, are cancelled when it stops, and a failing one is restarted."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tollway.kube import run as run_mod
from tollway.kube.run import KubePlane


def test_leader_tasks_start_when_leading_and_stop_when_not(tmp_path: Path,
                                                           monkeypatch: Any) -> None:
    monkeypatch.setattr(run_mod.asyncio, "sleep", _fast_sleep)

    async def main() -> list[str]:
        seen: list[str] = []
        started = asyncio.Event()
        cancelled = asyncio.Event()
        attempts = 0

        async def controller() -> None:
            nonlocal attempts
            attempts += 1
            if attempts == 1:
                seen.append("failed once")
                raise RuntimeError("first try fails")
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

        kp = KubePlane(api=None, state_dir=tmp_path, echo=seen.append)  # type: ignore[arg-type]
        kp.leader_tasks.append(controller)
        await asyncio.sleep(0)
        assert not started.is_set()  # not leading: nothing runs
        kp._leading(True)
        await asyncio.wait_for(started.wait(), 10)
        seen.append("running")
        kp._leading(False)
        await asyncio.wait_for(cancelled.wait(), 10)
        seen.append("cancelled")
        return seen

    seen = asyncio.run(main())
    assert [s for s in seen if not s.startswith("tollway control-plane")] == [
        "failed once", "running", "cancelled"]
    assert any("leads" in s for s in seen) and any("does not lead" in s for s in seen)


_real_sleep = asyncio.sleep


async def _fast_sleep(delay: float, *args: Any) -> Any:
    return await _real_sleep(min(delay, 0.01), *args)
