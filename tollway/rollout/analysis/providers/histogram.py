"""Request counts and latency histograms per workload, as the mesh's metrics give them.

Pure helpers shared by the mesh provider and Flagger's built-in metrics: Istio's standard
series parsed from Prometheus text, window deltas from two cumulative scrapes, and
Prometheus' own histogram_quantile interpolation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families


@dataclass(slots=True)
class Counts:
    """Requests to one workload: total, 5xx, and cumulative latency buckets (ms)."""

    total: float = 0.0
    errors: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)

    def add(self, other: Counts) -> None:
        self.total += other.total
        self.errors += other.errors
        for le, c in other.buckets.items():
            self.buckets[le] = self.buckets.get(le, 0.0) + c

    def minus(self, old: Counts) -> Counts:
        """Counts in the window between two scrapes; a counter reset restarts from zero."""
        if self.total < old.total or self.errors < old.errors:
            return Counts(self.total, self.errors, dict(self.buckets))
        buckets = {le: c - old.buckets.get(le, 0.0) for le, c in self.buckets.items()}
        if any(v < 0 for v in buckets.values()):
            buckets = dict(self.buckets)
        return Counts(self.total - old.total, self.errors - old.errors, buckets)

    @property
    def success_rate(self) -> float | None:
        return None if self.total <= 0 else (self.total - self.errors) / self.total


Key = tuple[str, str]  # (namespace, workload)


def parse_istio(text: str, reporter: str = "destination") -> dict[Key, Counts]:
    """istio_requests_total and istio_request_duration_milliseconds per destination workload."""
    out: dict[Key, Counts] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in ("istio_requests", "istio_request_duration_milliseconds"):
            continue
        for sample in family.samples:
            labels = sample.labels
            if labels.get("reporter") != reporter:
                continue
            key = (labels.get("destination_workload_namespace", ""),
                   labels.get("destination_workload", ""))
            counts = out.setdefault(key, Counts())
            if sample.name == "istio_requests_total":
                counts.total += sample.value
                if labels.get("response_code", "").startswith("5"):
                    counts.errors += sample.value
            elif sample.name == "istio_request_duration_milliseconds_bucket":
                le = float(labels["le"])
                counts.buckets[le] = counts.buckets.get(le, 0.0) + sample.value
    return out


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket."""
    if not buckets:
        return None
    ordered = sorted(buckets.items())
    total = ordered[-1][1]
    if total <= 0:
        return None
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in ordered:
        if count >= rank:
            if math.isinf(le):
                return prev_le
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return prev_le
