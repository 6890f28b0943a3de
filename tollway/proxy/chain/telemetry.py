"""Istio standard metrics counted on the hot path with plain data, rendered at scrape.

Per request: one dict lookup keyed by a small int (label-set index and response code,
for the common flags `-`) or a tuple (other flags, added tags), then native adds on a
`Series`. A gRPC call (`record_grpc`; HTTP/2 or HTTP/1.1) is counted under a label
set of its own - the peer's, with `request_protocol="grpc"` and its
`grpc_response_status` - interned once per (peer, status), so `record` itself is the same
for every request; its messages go to `istio_request_messages_total` /
`istio_response_messages_total`, which carry only the peer labels (reporter ..
destination_cluster), as Istio's do.
The label sets (Istio's full tag list, in istio_stats order) are compiled per snapshot
and interned here for the life of the proxy, so a scrape renders every series ever seen
even after a config change. prometheus-client only runs at scrape time, through a custom
collector.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING, Any, Final

from tollway.proxy.core.grpc import label as grpc_label
from tollway.snapshot import types

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
_NB: Final = len(BUCKETS) + 1
# The same bounds as floats, for a native compare per request (no int/float mix, no
# bisect call); sizes are compared as floats too (exact below 2**53).
_BOUNDS: Final[tuple[float, ...]] = tuple(float(b) for b in BUCKETS)
# A series key for flags `-` and no added tags: label-set index << _CODE_BITS | code.
_CODE_BITS: Final = 10
_CODE_MASK: Final = (1 << _CODE_BITS) - 1


# Istio metric (Telemetry's MetricSelector name) -> the Prometheus family Tollway renders
FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("REQUEST_COUNT", "istio_requests_total", "Total requests."),
    ("REQUEST_DURATION", "istio_request_duration_milliseconds", "Request duration."),
    ("REQUEST_SIZE", "istio_request_bytes", "Request bytes."),
    ("RESPONSE_SIZE", "istio_response_bytes", "Response bytes."),
)
# gRPC only, counters with the 20 peer labels (istio_stats reports them before adding
# request_protocol, response_flags, connection_security_policy and the codes)
MESSAGE_FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("GRPC_REQUEST_MESSAGES", "istio_request_messages_total", "Request messages (gRPC)."),
    ("GRPC_RESPONSE_MESSAGES", "istio_response_messages_total", "Response messages (gRPC)."),
)
TagValue = Callable[["Exchange", float], str]
GrpcRecorder = Callable[["Exchange", float, int, int], None]
# Istio reports a gRPC stream's messages while it is open, every tcp_reporting_duration
# (istio_stats' report timer; 5 s by default), not only at its end
REPORT_INTERVAL = 5.0


class SidePolicy:
    """Telemetry metric overrides for one reporter side, compiled once per snapshot.

    `names`/`values`: the tags added (UPSERT) on any metric of this side and how each is
    computed per request; `adds`/`removes`/`disabled`: applied when a scrape renders."""

    __slots__ = ("adds", "disabled", "names", "removes", "values")

    def __init__(self, overrides: tuple[types.MetricOverride, ...] = ()) -> None:
        from tollway.proxy.chain import expr

        self.adds: dict[str, frozenset[str]] = {
            o.metric: frozenset(t.name for t in o.tags if not t.remove) for o in overrides}
        self.removes: dict[str, frozenset[str]] = {
            o.metric: frozenset(t.name for t in o.tags if t.remove) for o in overrides}
        self.disabled: frozenset[str] = frozenset(o.metric for o in overrides if o.disabled)
        upserts = {t.name: t.value for o in overrides for t in o.tags if not t.remove}
        self.names = tuple(sorted(upserts))
        self.values: tuple[TagValue, ...] = tuple(
            expr.compile_value(upserts[n]) for n in self.names)


class MetricPolicy:
    """Both sides: `source` (client: outbound, gateway) and `destination` (server)."""

    __slots__ = ("sides",)

    def __init__(self, telemetry: types.Telemetry | None = None) -> None:
        t = telemetry or types.Telemetry()
        self.sides = {"source": SidePolicy(t.client_metrics),
                      "destination": SidePolicy(t.server_metrics)}

    def recorder(self, metrics: Metrics, reporter: str) -> Callable[[Exchange, float], None]:
        """What a listener of this side calls per request: the plain `metrics.record`
        unless this side adds tags, then a closure that computes them too."""
        side = self.sides[reporter]
        if not side.names:
            return metrics.record
        names, values, record = side.names, side.values, metrics.record

        def record_tagged(ex: Exchange, now: float) -> None:
            record(ex, now, metrics.intern_extra(names, tuple(v(ex, now) for v in values)))

        return record_tagged

    def grpc_recorder(self, metrics: Metrics, reporter: str) -> GrpcRecorder:
        """`recorder` for gRPC calls: (exchange, now, request messages, response
        messages)."""
        side = self.sides[reporter]
        if not side.names:
            return metrics.record_grpc
        names, values, record = side.names, side.values, metrics.record_grpc

        def record_tagged(ex: Exchange, now: float, req: int, resp: int) -> None:
            extra = metrics.intern_extra(names, tuple(v(ex, now) for v in values))
            record(ex, now, req, resp, extra)

        return record_tagged

    def messages_recorder(self, metrics: Metrics, reporter: str) -> GrpcRecorder:
        """What a gRPC stream still open reports every REPORT_INTERVAL: its new messages
        (exchange, now, request messages, response messages), with this side's tags."""
        side = self.sides[reporter]
        names, values = side.names, side.values

        def report(ex: Exchange, now: float, req: int, resp: int) -> None:
            extra = metrics.intern_extra(names, tuple(v(ex, now) for v in values)) if (
                names) else -1
            metrics.add_messages(ex.label_index, extra, req, resp)

        return report


class Metrics:
    """Counters and histograms for one proxy process (see module doc)."""

    def __init__(self) -> None:
        from tollway.proxy.chain.accesslog import LogWriter

        self.label_sets: list[tuple[str, ...]] = []
        self._index: dict[tuple[str, ...], int] = {}
        # key -> Series; key: label set << _CODE_BITS | code (flags `-`, no added tags),
        # else (label set, code, flags[, extra]) - see record / keyed
        self.series: dict[Any, Series] = {}
        # gRPC messages: (label set, extra or -1) -> [request messages, response messages]
        self.messages: dict[tuple[int, int], list[int]] = {}
        # (peer label set, grpc_response_status) -> the gRPC call's label set
        self._grpc_index: dict[tuple[int, str], int] = {}
        self.extras: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
        self._extra_index: dict[tuple[tuple[str, ...], tuple[str, ...]], int] = {}
        self.policy = MetricPolicy()  # the applied snapshot's (set by ProxyServer.apply)
        self.access_log: IO[str] | None = None  # `tollway proxy --access-log`
        self.logs = LogWriter()

    def intern(self, labels: tuple[str, ...]) -> int:
        """Index of a label set (20 leading Istio tags, without flags/policy/code)."""
        idx = self._index.get(labels)
        if idx is None:
            idx = self._index[labels] = len(self.label_sets)
            self.label_sets.append(labels)
        return idx

    def intern_extra(self, names: tuple[str, ...], values: tuple[str, ...]) -> int:
        key = (names, values)
        idx = self._extra_index.get(key)
        if idx is None:
            idx = self._extra_index[key] = len(self.extras)
            self.extras.append(key)
        return idx

    def record(self, ex: Exchange, now: float, extra: int = -1, labels: int = -1) -> None:
        """Count a finished exchange; called once per request. `labels`: a label set
        other than the exchange's (a gRPC call's, see record_grpc)."""
        index = ex.label_index if labels < 0 else labels
        status = ex.status
        flags = ex.flags
        key: Any
        if extra < 0 and flags == "-" and 0 <= status <= _CODE_MASK:
            key = (index << _CODE_BITS) | status  # the common case: an int key
        elif extra < 0:
            key = (index, status, flags)
        else:
            key = (index, status, flags, extra)
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = Series()
        s.add((now - ex.start) * 1000.0, ex.bytes_in, ex.bytes_out)

    def record_grpc(self, ex: Exchange, now: float, req: int, resp: int, extra: int = -1
                    ) -> None:
        """Count a finished gRPC call (`record`, under its gRPC label set) and the messages
        it carried that were not reported yet (`add_messages`)."""
        peer = ex.label_index
        status = grpc_label(ex.grpc_status)
        index = self._grpc_index.get((peer, status))
        if index is None:  # once per (peer, status) for the life of the proxy
            base = self.label_sets[peer]
            index = self._grpc_index[(peer, status)] = self.intern(
                (*base[:20], "grpc", base[21], status))
        self.record(ex, now, extra, index)
        if req or resp:
            self.add_messages(ex.label_index, extra, req, resp)

    def add_messages(self, label_index: int, extra: int, req: int, resp: int) -> None:
        """gRPC messages seen on a call (at its end, or periodically while it streams)."""
        key = (label_index, extra)
        m = self.messages.get(key)
        if m is None:
            self.messages[key] = [req, resp]
        else:
            m[0] += req
            m[1] += resp

    def totals(self) -> int:
        return sum(s.count for s in self.series.values())

    def keyed(self) -> list[tuple[tuple[Any, ...], Series]]:
        """Every series with its key as a tuple, (label set, code, flags[, extra]): an int
        key (record's common case) spelled out."""
        out: list[tuple[tuple[Any, ...], Series]] = []
        for key, s in list(self.series.items()):
            if isinstance(key, int):
                out.append(((key >> _CODE_BITS, key & _CODE_MASK, "-"), s))
            else:
                out.append((key, s))
        return out


class Series:
    """Counters and histograms of one series: request count, the sums and the per-bucket
    counts of duration (ms), request bytes and response bytes. Native fields when
    compiled: one `add` per request is plain C arithmetic."""

    __slots__ = ("count", "dur_hist", "dur_sum", "req_hist", "req_sum", "resp_hist",
                 "resp_sum")

    def __init__(self) -> None:
        self.count = 0
        self.dur_sum = 0.0
        self.req_sum = 0
        self.resp_sum = 0
        self.dur_hist = [0] * _NB
        self.req_hist = [0] * _NB
        self.resp_hist = [0] * _NB

    def add(self, ms: float, bytes_in: int, bytes_out: int) -> None:
        self.count += 1
        self.dur_sum += ms
        self.req_sum += bytes_in
        self.resp_sum += bytes_out
        self.dur_hist[_bucket(ms)] += 1
        self.req_hist[_bucket(bytes_in)] += 1
        self.resp_hist[_bucket(bytes_out)] += 1


def _bucket(value: float) -> int:
    """bisect_left(BUCKETS, value): the first bound >= value (small values: a few
    compares)."""
    i = 0
    for bound in _BOUNDS:
        if value <= bound:
            return i
        i += 1
    return i


def _labels(base: tuple[str, ...], code: int, flags: str) -> dict[str, str]:
    # base: reporter .. destination_cluster, request_protocol, connection_security_policy
    # [, grpc_response_status: a gRPC call's label set]
    d = dict(zip(LABEL_NAMES[:21], base[:21], strict=True))
    d["response_flags"] = flags
    d["connection_security_policy"] = base[21]
    d["response_code"] = str(code)
    d["grpc_response_status"] = base[22] if len(base) > 22 else ""
    return d


class IstioCollector:
    """Renders Metrics in Prometheus text format (names and labels as Istio's), with the
    applied Telemetry overrides: disabled metrics left out, tags removed or added, series
    that become identical summed.

    prometheus-client is imported at the first scrape, not at start: a proxy nobody
    scrapes does not carry it."""

    def __init__(self, metrics: Metrics, extra: Any = None) -> None:
        self.metrics = metrics
        self.extra = extra

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily, Metric

        m = self.metrics
        policy = m.policy
        # family -> final label tuple -> [count, sum, hist] (hist: per-bucket counts)
        acc: dict[str, dict[tuple[tuple[str, str], ...], list[Any]]] = {
            f[1]: {} for f in FAMILIES}
        for key, s in m.keyed():
            base = m.label_sets[key[0]]
            lab = _labels(base, key[1], key[2])
            side = policy.sides.get(base[0]) or policy.sides["source"]
            extra = m.extras[key[3]] if len(key) == 4 else ((), ())
            count = s.count
            for (metric, family, _), (total, hist) in zip(FAMILIES, (
                    (s.dur_sum, s.dur_hist), (s.dur_sum, s.dur_hist), (s.req_sum, s.req_hist),
                    (s.resp_sum, s.resp_hist)), strict=True):
                if metric in side.disabled:
                    continue
                final = _apply(lab, side, metric, extra)
                row = acc[family].get(final)
                if row is None:
                    acc[family][final] = [count, total, list(hist)]
                else:
                    row[0] += count
                    row[1] += total
                    row[2] = [a + b for a, b in zip(row[2], hist, strict=True)]
        for metric, family, doc in FAMILIES:
            if metric == "REQUEST_COUNT":
                out = Metric(family.removesuffix("_total"), doc, "counter")
                for labels, (count, _, _) in acc[family].items():
                    out.add_sample(family, dict(labels), count)
            else:
                out = Metric(family, doc, "histogram")
                for labels, (count, total, hist) in acc[family].items():
                    d = dict(labels)
                    for le, n in _cumulative(hist):
                        out.add_sample(family + "_bucket", {**d, "le": le}, n)
                    out.add_sample(family + "_count", d, count)
                    out.add_sample(family + "_sum", d, total)
            yield out
        yield from self._messages(Metric)
        build = GaugeMetricFamily("istio_build", "Proxy build.", labels=["component", "tag"])
        build.add_metric(["proxy", "tollway"], 1)
        yield build
        if self.extra is not None:
            yield from self.extra()


    def _messages(self, metric_type: Any) -> Iterator[Any]:
        """istio_request_messages_total / istio_response_messages_total (gRPC)."""
        m = self.metrics
        policy = m.policy
        acc: list[dict[tuple[tuple[str, str], ...], int]] = [{}, {}]
        for (index, extra), counts in list(m.messages.items()):
            base = m.label_sets[index]
            lab = dict(zip(LABEL_NAMES[:20], base[:20], strict=True))
            side = policy.sides.get(base[0]) or policy.sides["source"]
            tags = m.extras[extra] if extra >= 0 else ((), ())
            for i, (metric, _, _) in enumerate(MESSAGE_FAMILIES):
                if metric in side.disabled:
                    continue
                final = _apply(lab, side, metric, tags)
                acc[i][final] = acc[i].get(final, 0) + counts[i]
        for i, (_, family, doc) in enumerate(MESSAGE_FAMILIES):
            if not acc[i]:
                continue
            out = metric_type(family.removesuffix("_total"), doc, "counter")
            for labels, count in acc[i].items():
                out.add_sample(family, dict(labels), count)
            yield out


def _apply(lab: dict[str, str], side: SidePolicy, metric: str,
           extra: tuple[tuple[str, ...], tuple[str, ...]]) -> tuple[tuple[str, str], ...]:
    adds, removes = side.adds.get(metric), side.removes.get(metric)
    if not adds and not removes:
        return tuple(lab.items())
    d = dict(lab)
    if adds:
        for name, value in zip(*extra, strict=True):
            if name in adds:
                d[name] = value
    for name in removes or ():
        d.pop(name, None)
    return tuple(d.items())


def _cumulative(hist: list[int]) -> list[tuple[str, float]]:
    out = []
    acc = 0
    for le, n in zip(_LE, hist, strict=True):
        acc += n
        out.append((le, float(acc)))
    return out


def stdout_log() -> IO[str]:
    return sys.stdout
