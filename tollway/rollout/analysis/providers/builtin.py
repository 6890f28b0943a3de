"""Flagger's built-in metrics from the mesh's own counts (no Prometheus needed).

request-success-rate: percentage of non-5xx responses of the canary workload over the
metric's interval (Flagger's Istio query: `... response_code!~"5.*" / ... * 100`).
request-duration: P99 in milliseconds of the same requests (histogram_quantile 0.99).
No requests in the window → None, which Flagger counts as a failed check.
"""

from __future__ import annotations

from tollway.rollout.analysis.providers.histogram import Counts, histogram_quantile

BUILTINS = ("request-success-rate", "request-duration")


def value(name: str, window: Counts) -> float | None:
    if name == "request-success-rate":
        rate = window.success_rate
        return None if rate is None else rate * 100.0
    if name == "request-duration":
        if window.total <= 0:
            return None
        return histogram_quantile(0.99, window.buckets)
    raise ValueError(f"unknown built-in metric {name!r}; Flagger's are {', '.join(BUILTINS)}")
