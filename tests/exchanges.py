"""A finished exchange for tests that feed the proxy's Metrics directly.

The per-request classes may be compiled by mypyc (tollway/native.py), and a compiled
`Metrics.record` takes a real `Exchange`, not a look-alike. Only the listener plan is bare:
the three fields `Exchange.__init__` reads from it are set by hand, the rest of a plan
(snapshot, matcher, filters) plays no part in recording.
"""

from __future__ import annotations

from tollway.proxy.chain.build import ListenerPlan
from tollway.proxy.chain.stream import Exchange


def finished(label_index: int, status: int, start: float, *, flags: str = "-",
             bytes_in: int = 0, bytes_out: int = 0) -> Exchange:
    """An exchange answered with `status` that began at `start`, as the listener records it."""
    plan = ListenerPlan.__new__(ListenerPlan)
    plan.kind = "outbound"
    plan.port = 0
    plan.default_label = label_index
    ex = Exchange(plan, "GET", "/", "/", "", {}, [], start, bytes_in=bytes_in)
    ex.status = status
    ex.flags = flags
    ex.bytes_out = bytes_out
    return ex
