"""Istio standard metrics counted on the hot path with plain data, rendered at scrape.

Per request: one dict lookup keyed by (label-set index, response code, flags) and a few
list increments. The label sets (Istio's full tag list, in istio_stats order) are
compiled per snapshot and interned here for the life of the proxy, so a scrape renders
every series ever seen even after a config change. prometheus-client only runs at scrape
time, through a custom collector.
"""

from __future__ import annotations

import json
import sys
import time
from bisect import bisect_left
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tollway.proxy.chain.stream import Exchange

LABEL_NAMES: tuple[str, ...] = (
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_canonical_service",
    "source_canonical_revision",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_cluster",
    "request_protocol",
    "response_flags",
    "connection_security_policy",
    "response_code",
    "grpc_response_status",
)
# Envoy's default histogram buckets (ms for durations, bytes for sizes)
BUCKETS: tuple[float, ...] = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
    300000, 600000, 1800000, 3600000,
)  # fmt: skip
_LE = (*tuple(f"{b:.32g}" for b in BUCKETS), "+Inf")
_NB = len(BUCKETS) + 1


class Metrics:
    """Counters and histograms for one proxy process (see module doc)."""

    def __init__(self) -> None:
        self.label_sets: list[tuple[str, ...]] = []
        self._index: dict[tuple[str, ...], int] = {}
        # key -> [count, dur_sum, req_sum, resp_sum, dur_hist, req_hist, resp_hist]
        self.series: dict[tuple[int, int, str], list[Any]] = {}
        self.access_log: IO[str] | None = None

    def intern(self, labels: tuple[str, ...]) -> int:
        """Index of a label set (20 leading Istio tags, without flags/policy/code)."""
        idx = self._index.get(labels)
        if idx is None:
            idx = self._index[labels] = len(self.label_sets)
            self.label_sets.append(labels)
        return idx

    def record(self, ex: Exchange, now: float) -> None:
        """Count a finished exchange; called once per request."""
        key = (ex.label_index, ex.status, ex.flags)
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = [0, 0.0, 0, 0, [0] * _NB, [0] * _NB, [0] * _NB]
        ms = (now - ex.start) * 1000.0
        s[0] += 1
        s[1] += ms
        s[2] += ex.bytes_in
        s[3] += ex.bytes_out
        s[4][bisect_left(BUCKETS, ms)] += 1
        s[5][bisect_left(BUCKETS, ex.bytes_in)] += 1
        s[6][bisect_left(BUCKETS, ex.bytes_out)] += 1
        if self.access_log is not None:
            self.log(ex, now)

    def log(self, ex: Exchange, now: float) -> None:
        """One JSON line with the fields of Envoy's default access-log format."""
        assert self.access_log is not None
        duration = (now - ex.start) * 1000.0
        started = time.gmtime(time.time() - duration / 1000)
        line = {
            "start_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", started),
            "method": ex.method,
            "path": ex.path,
            "protocol": "HTTP/1.1" if ex.http11 else "HTTP/1.0",
            "response_code": ex.status,
            "response_flags": ex.flags,
            "bytes_received": ex.bytes_in,
            "bytes_sent": ex.bytes_out,
            "duration": round(duration, 3),
            "upstream_service_time": (
                round(ex.upstream_time * 1000.0, 3) if ex.upstream_time >= 0 else None
            ),
            "x_forwarded_for": ex.headers.get("x-forwarded-for"),
            "user_agent": ex.headers.get("user-agent"),
            "request_id": ex.request_id or ex.headers.get("x-request-id"),
            "authority": ex.authority,
            "upstream_host": ex.upstream_host or None,
            "upstream_cluster": ex.cluster_name or None,
            "route_name": ex.route_name or None,
            "downstream_remote_address": f"{ex.source_ip}:{ex.source_port}",
        }
        self.access_log.write(json.dumps(line) + "\n")
        self.access_log.flush()

    def totals(self) -> int:
        return sum(s[0] for s in self.series.values())


def _labels(base: tuple[str, ...], code: int, flags: str) -> dict[str, str]:
    # base: reporter .. destination_cluster, request_protocol, connection_security_policy
    d = dict(zip(LABEL_NAMES[:21], base[:21], strict=True))
    d["response_flags"] = flags
    d["connection_security_policy"] = base[21]
    d["response_code"] = str(code)
    d["grpc_response_status"] = ""
    return d


class IstioCollector:
    """Renders Metrics in Prometheus text format (names and labels as Istio's).

    prometheus-client is imported at the first scrape, not at start: a proxy nobody
    scrapes does not carry it."""

    def __init__(self, metrics: Metrics, extra: Any = None) -> None:
        self.metrics = metrics
        self.extra = extra

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        m = self.metrics
        names = list(LABEL_NAMES)
        total = CounterMetricFamily("istio_requests_total", "Total requests.", labels=names)
        dur = HistogramMetricFamily(
            "istio_request_duration_milliseconds", "Request duration.", labels=names
        )
        req = HistogramMetricFamily("istio_request_bytes", "Request bytes.", labels=names)
        resp = HistogramMetricFamily("istio_response_bytes", "Response bytes.", labels=names)
        for (idx, code, flags), s in list(m.series.items()):
            lab = _labels(m.label_sets[idx], code, flags)
            values = [lab[n] for n in names]
            total.add_metric(values, s[0])
            dur.add_metric(values, _cumulative(s[4]), s[1])
            req.add_metric(values, _cumulative(s[5]), s[2])
            resp.add_metric(values, _cumulative(s[6]), s[3])
        yield total
        yield dur
        yield req
        yield resp
        build = GaugeMetricFamily("istio_build", "Proxy build.", labels=["component", "tag"])
        build.add_metric(["proxy", "tollway"], 1)
        yield build
        if self.extra is not None:
            yield from self.extra()


def _cumulative(hist: list[int]) -> list[tuple[str, float]]:
    out = []
    acc = 0
    for le, n in zip(_LE, hist, strict=True):
        acc += n
        out.append((le, float(acc)))
    return out


def stdout_log() -> IO[str]:
    return sys.stdout
