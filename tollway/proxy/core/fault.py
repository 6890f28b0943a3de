"""Fault injection decision (Istio HTTPFaultInjection): delay and/or abort by percentage.

Delay and abort are decided independently from two draws. A percentage of 0 (or absent,
as Istio compiles it) never fires. The common no-fault answer is a shared constant so the
hot path allocates nothing.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from tollway.snapshot import types


class FaultDecision(NamedTuple):
    delay: float | None = None  # seconds to wait before forwarding (flag DI)
    abort_status: int | None = None  # answer locally with this status (flag FI)


NO_FAULT: Final = FaultDecision()


def decide(fault: types.Fault | None, r_delay: float, r_abort: float) -> FaultDecision:
    """Draws r_* are uniform in [0, 1); percentages are 0..100."""
    if fault is None:
        return NO_FAULT
    delay = (
        fault.delay
        if fault.delay is not None and r_delay * 100.0 < fault.delay_percent
        else None
    )
    abort = (
        fault.abort_status
        if fault.abort_status is not None and r_abort * 100.0 < fault.abort_percent
        else None
    )
    if delay is None and abort is None:
        return NO_FAULT
    return FaultDecision(delay, abort)
