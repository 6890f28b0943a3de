"""The service graph, in the spirit of Kiali: who calls which service, how much, how badly.

[pure] Input is what every proxy's admin `/stats/prometheus` serves (Istio's standard
`istio_requests_total` and `istio_request_duration_milliseconds`), parsed per proxy and
kept as a history of scrapes; output is plain JSON-ready data for the page.

Why edges come from `reporter="source"`: our destination sidecars do not learn who called
them (there is no metadata exchange, so their reports say `source_workload="unknown"`),
while the caller's sidecar knows itself, the service it called and the endpoint it picked.
So each source report gives two edges: source workload → destination service (what the
caller asked for) and destination service → destination workload (how the mesh split it,
which is where a canary's share shows). Destination reports give each workload's inbound
health instead, traffic from outside the mesh included.

Why rates per proxy: counters are cumulative per proxy process, so a window is the
difference of two scrapes of the *same* proxy. Each proxy gets its own base scrape (about
`window` seconds before the latest, see `base_for`), so one proxy missing from a scrape
or started late does not blur the others; a counter that
went down means the proxy restarted, and its new counts are the window's (as Prometheus'
`rate()` treats resets). Quantiles use Prometheus' own `histogram_quantile`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tollway.rollout.analysis.providers.histogram import histogram_quantile

UNKNOWN = "unknown"
# Kiali's gRPC error (business/metrics.go): grpc_response_status 1-16 with an HTTP status
# that is not itself an error (0, 4xx, 5xx are counted as those)
GRPC_ERRORS = frozenset(str(c) for c in range(1, 17))
GRPC_ERROR = "grpc-error"
WorkloadKey = tuple[str, str]  # (namespace, workload)


@dataclass(frozen=True, slots=True, order=True)
class EdgeKey:
    """One caller → service → endpoint workload triple, as a source report labels it."""

    source_namespace: str
    source_workload: str
    destination_service: str
    destination_namespace: str
    destination_workload: str


@dataclass(slots=True)
class Tally:
    """Cumulative requests by response code and latency buckets (le ms → count)."""

    codes: dict[str, float] = field(default_factory=dict)
    buckets: dict[float, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.codes.values())

    def add(self, other: Tally) -> None:
        for code, n in other.codes.items():
            self.codes[code] = self.codes.get(code, 0.0) + n
        for le, n in other.buckets.items():
            self.buckets[le] = self.buckets.get(le, 0.0) + n

    def minus(self, old: Tally | None) -> Tally:
        """The window's counts; any counter that went down means a restart (then: all)."""
        if old is None:
            return Tally(dict(self.codes), dict(self.buckets))
        codes = {c: n - old.codes.get(c, 0.0) for c, n in self.codes.items()}
        buckets = {le: n - old.buckets.get(le, 0.0) for le, n in self.buckets.items()}
        dropped = (any(v < 0 for v in codes.values()) or any(v < 0 for v in buckets.values())
                   or any(c not in self.codes for c in old.codes))
        if dropped:
            return Tally(dict(self.codes), dict(self.buckets))
        return Tally(codes, buckets)


@dataclass(slots=True)
class ProxyCounts:
    """One proxy's scrape: outbound (source-reported) and inbound (destination) tallies."""

    outbound: dict[EdgeKey, Tally] = field(default_factory=dict)
    inbound: dict[WorkloadKey, Tally] = field(default_factory=dict)
    labels: dict[WorkloadKey, dict[str, str]] = field(default_factory=dict)  # app, version


@dataclass(frozen=True, slots=True)
class Scrape:
    """Every proxy that answered at `at` (monotonic seconds), by admin address."""

    at: float
    proxies: Mapping[str, ProxyCounts]


def _remember(labels: dict[WorkloadKey, dict[str, str]], key: WorkloadKey, app: str,
              version: str) -> None:
    if key[1] in ("", UNKNOWN):
        return
    slot = labels.setdefault(key, {})
    if app and app != UNKNOWN:
        slot.setdefault("app", app)
    if version and version != UNKNOWN:
        slot.setdefault("version", version)


_WANTED = ("istio_requests_total{", "istio_request_duration_milliseconds_bucket{")
_SAMPLE = re.compile(r"^(\w+)\{(.*)\}\s+(\S+)(?:\s+-?\d+)?\s*$")
_LABEL = re.compile(r'\s*(\w+)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    return re.sub(r'\\[\\"n]', lambda m: _ESCAPES[m.group(0)], value)


def _labels(body: str, line: str) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(body):
        m = _LABEL.match(body, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"not a Prometheus sample line: {line[:120]!r}")
        out[m.group(1)] = _unescape(m.group(2))
        pos = m.end()
    return out


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """The two Istio series the graph needs, from Prometheus text; the rest is skipped.

    Why not prometheus_client's parser: it parses every family (the byte-size histograms
    too, three times the text) and costs ~60 ms for one busy proxy; reading only the two
    series keeps a scrape of a whole mesh within a poll. Same escapes, same numbers (a
    test checks it against prometheus_client on what the proxy really renders).
    Raises ValueError on a malformed sample line of those series.
    """
    out: list[tuple[str, dict[str, str], float]] = []
    for line in text.split("\n"):  # the format's only line end; \r may sit in a value
        if not line.startswith(_WANTED):
            continue
        m = _SAMPLE.match(line)
        if m is None:
            raise ValueError(f"not a Prometheus sample line: {line[:120]!r}")
        out.append((m.group(1), _labels(m.group(2), line), float(m.group(3))))
    return out


def parse_proxy(text: str) -> ProxyCounts:
    """Istio's request counters and duration histograms from one proxy's metrics text.

    Raises ValueError when a sample line of those series is malformed.
    """
    out = ProxyCounts()
    for name, lab, value in samples(text):
        dst = (lab.get("destination_workload_namespace", "") or UNKNOWN,
               lab.get("destination_workload", "") or UNKNOWN)
        src = (lab.get("source_workload_namespace", "") or UNKNOWN,
               lab.get("source_workload", "") or UNKNOWN)
        reporter = lab.get("reporter", "")
        tally: Tally
        if reporter == "source":
            key = EdgeKey(src[0], src[1], lab.get("destination_service", "") or UNKNOWN,
                          dst[0], dst[1])
            tally = out.outbound.setdefault(key, Tally())
            _remember(out.labels, src, lab.get("source_app", ""), lab.get("source_version", ""))
        elif reporter == "destination":
            tally = out.inbound.setdefault(dst, Tally())
        else:
            continue
        _remember(out.labels, dst, lab.get("destination_app", ""),
                  lab.get("destination_version", ""))
        if name == "istio_requests_total":
            code = lab.get("response_code", "") or "0"
            if lab.get("grpc_response_status", "") in GRPC_ERRORS and (
                    code_class(code) not in ("4xx", "5xx", "other")):
                code = GRPC_ERROR  # a gRPC error carried in a 200 (Kiali's rule, see below)
            tally.codes[code] = tally.codes.get(code, 0.0) + value
        else:
            le = float(lab.get("le", "inf"))
            tally.buckets[le] = tally.buckets.get(le, 0.0) + value
    return out


def base_for(history: Sequence[Scrape], proxy: str, window: float) -> Scrape | None:
    """The scrape a proxy's window starts from (see the module doc); None: no window yet.

    The newest scrape at least `window` old, unless that one is more than three windows
    old (nobody looked for a while: the page was closed) and a newer one exists; then the
    oldest inside the window, so the rates say what happened lately. `history` is in
    time order.
    """
    if not history:
        return None
    latest_at = history[-1].at
    target = latest_at - window
    before: Scrape | None = None
    after: Scrape | None = None
    for scrape in history[:-1]:
        if proxy not in scrape.proxies or scrape.at >= latest_at:
            continue
        if scrape.at <= target:
            before = scrape
        elif after is None:
            after = scrape
    if before is not None and (after is None or before.at >= latest_at - 3 * window):
        return before
    return after


@dataclass(slots=True)
class Flow:
    """Traffic over the window on one edge or into one workload, summed over proxies."""

    requests: float = 0.0
    rps: float = 0.0
    classes: dict[str, float] = field(default_factory=dict)  # "2xx" → rps
    buckets: dict[float, float] = field(default_factory=dict)  # window counts
    measured: bool = False  # at least one proxy had a base scrape

    def add(self, delta: Tally, seconds: float) -> None:
        self.measured = True
        total = delta.total
        self.requests += total
        self.rps += total / seconds
        for code, n in delta.codes.items():
            cls = code_class(code)
            self.classes[cls] = self.classes.get(cls, 0.0) + n / seconds
        for le, n in delta.buckets.items():
            self.buckets[le] = self.buckets.get(le, 0.0) + n

    @property
    def error_rate(self) -> float | None:
        """The share of 5xx answers and of gRPC calls that ended with a status other than
        OK (Istio's and Kiali's error), None with no requests."""
        if self.rps <= 0:
            return None
        return (self.classes.get("5xx", 0.0) + self.classes.get(GRPC_ERROR, 0.0)) / self.rps

    def quantile(self, q: float) -> float | None:
        if self.requests <= 0:
            return None
        return histogram_quantile(q, self.buckets)

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": _num(self.requests),
            "rps": _num(self.rps) if self.measured else None,
            "errorRate": _num(self.error_rate),
            "p50": _num(self.quantile(0.5)),
            "p99": _num(self.quantile(0.99)),
            "codes": {k: _num(v) for k, v in sorted(self.classes.items())},
        }


def code_class(code: str) -> str:
    """"503" → "5xx"; "0" (no response: the client went away) and junk → "other"; a gRPC
    error in an HTTP success (GRPC_ERROR) stays "grpc-error"."""
    if code == GRPC_ERROR:
        return GRPC_ERROR
    if len(code) == 3 and code.isdigit() and code[0] in "12345":
        return f"{code[0]}xx"
    return "other"


def _num(value: float | None) -> float | None:
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return round(value, 6)


def flows(history: Sequence[Scrape], window: float
          ) -> tuple[dict[EdgeKey, Flow], dict[WorkloadKey, Flow]]:
    """Window traffic per edge key (source reports) and per workload (destination reports).

    Every key the latest scrape has is present, measured or not; counts in a proxy's
    latest scrape without a base scrape are listed but not rated.
    """
    edges: dict[EdgeKey, Flow] = {}
    inbound: dict[WorkloadKey, Flow] = {}
    if not history:
        return edges, inbound
    latest = history[-1]
    for proxy, counts in latest.proxies.items():
        base = base_for(history, proxy, window)
        old = base.proxies[proxy] if base is not None else None
        seconds = latest.at - base.at if base is not None else 0.0
        pairs: list[tuple[dict[Any, Flow], Mapping[Any, Tally], Mapping[Any, Tally]]] = [
            (edges, counts.outbound, old.outbound if old else {}),
            (inbound, counts.inbound, old.inbound if old else {}),
        ]
        for into, now_tallies, old_tallies in pairs:
            for key, tally in now_tallies.items():
                flow = into.setdefault(key, Flow())
                if seconds > 0:
                    flow.add(tally.minus(old_tallies.get(key)), seconds)
    return edges, inbound


# ---- the graph -------------------------------------------------------------------------------


def workload_id(namespace: str, workload: str) -> str:
    return f"workload:{namespace}/{workload}"


def service_id(fqdn: str) -> str:
    return f"service:{fqdn}"


def _service_parts(fqdn: str) -> tuple[str, str]:
    """"web.default.svc.cluster.local" → ("web", "default"); a bare name keeps "" ns."""
    parts = fqdn.split(".")
    return parts[0], (parts[1] if len(parts) > 1 else "")


def build(history: Sequence[Scrape], window: float,
          roles: Mapping[WorkloadKey, str] | None = None,
          tags: Mapping[WorkloadKey, Mapping[str, str]] | None = None) -> dict[str, Any]:
    """The graph the page draws: nodes, edges with rps / error rate / p50 / p99, a layout.

    `roles` names what runs each workload's proxy (client, gateway, sidecar), from the
    control plane's proxy list, so the page can draw the mesh's entry points apart;
    `tags` adds facts known elsewhere (a rollout's canary and stable workloads).
    """
    roles = roles or {}
    tags = tags or {}
    edge_flows, inbound = flows(history, window)
    labels: dict[WorkloadKey, dict[str, str]] = {}
    for scrape in history[-1:]:
        for counts in scrape.proxies.values():
            for key, lab in counts.labels.items():
                labels.setdefault(key, {}).update(lab)
    nodes: dict[str, dict[str, Any]] = {}

    def workload_node(key: WorkloadKey) -> str:
        nid = workload_id(*key)
        if nid not in nodes:
            flow = inbound.get(key)
            nodes[nid] = {"id": nid, "kind": "workload", "name": key[1], "namespace": key[0],
                          "role": roles.get(key, "sidecar" if key in inbound else "workload"),
                          **labels.get(key, {}), **tags.get(key, {}),
                          "inbound": flow.to_json() if flow is not None else None}
        return nid

    def service_node(fqdn: str) -> str:
        nid = service_id(fqdn)
        if nid not in nodes:
            name, ns = _service_parts(fqdn)
            kind = "unknown" if fqdn == UNKNOWN else "service"
            nodes[nid] = {"id": nid, "kind": kind, "name": name, "namespace": ns, "fqdn": fqdn}
        return nid

    requests: dict[tuple[str, str], Flow] = {}
    splits: dict[tuple[str, str], Flow] = {}
    for ek in sorted(edge_flows):
        flow = edge_flows[ek]
        src = workload_node((ek.source_namespace, ek.source_workload))
        svc = service_node(ek.destination_service)
        _merge(requests.setdefault((src, svc), Flow()), flow)
        if ek.destination_workload != UNKNOWN and ek.destination_service != UNKNOWN:
            dst = workload_node((ek.destination_namespace, ek.destination_workload))
            _merge(splits.setdefault((svc, dst), Flow()), flow)
    for wk in sorted(inbound):  # workloads only reached from outside the mesh
        if wk[1] != UNKNOWN:
            workload_node(wk)
    edges = [_edge(s, t, "request", f) for (s, t), f in sorted(requests.items())]
    edges += [_edge(s, t, "split", f) for (s, t), f in sorted(splits.items())]
    measured = any(f.measured for f in (*edge_flows.values(), *inbound.values()))
    spans = [history[-1].at - base.at for base in
             (base_for(history, p, window) for p in history[-1].proxies) if base is not None
             ] if history else []
    return {
        "window": window,
        "seconds": round(max(spans), 3) if spans else None,  # what the rates really span
        "measured": measured,
        "proxies": len(history[-1].proxies) if history else 0,
        "nodes": [nodes[k] for k in sorted(nodes)],
        "edges": edges,
        "layout": layout(sorted(nodes), [(e["source"], e["target"]) for e in edges]),
    }


def _merge(into: Flow, flow: Flow) -> None:
    into.requests += flow.requests
    into.rps += flow.rps
    into.measured = into.measured or flow.measured
    for k, v in flow.classes.items():
        into.classes[k] = into.classes.get(k, 0.0) + v
    for le, n in flow.buckets.items():
        into.buckets[le] = into.buckets.get(le, 0.0) + n


def _edge(source: str, target: str, kind: str, flow: Flow) -> dict[str, Any]:
    return {"id": f"{source}->{target}", "source": source, "target": target, "kind": kind,
            **flow.to_json()}


def layout(nodes: Iterable[str], edges: Iterable[tuple[str, str]]) -> dict[str, list[int]]:
    """Columns by longest path from the callers (cycles broken), rows by barycenter.

    Callers end up left, services in the middle, the workloads behind them right, which
    is how Kiali's left-to-right layout reads. Within a column, nodes are ordered by the
    mean row of their callers (Sugiyama's barycenter heuristic, one sweep left to right),
    so a service's workloads sit beside it and arrows cross less. Returns
    {node: [column, row]}.
    """
    ids = list(dict.fromkeys(nodes))
    out_edges: dict[str, list[str]] = {n: [] for n in ids}
    in_edges: dict[str, list[str]] = {n: [] for n in ids}
    indeg: dict[str, int] = dict.fromkeys(ids, 0)
    for s, t in edges:
        if s in out_edges and t in indeg and s != t:
            out_edges[s].append(t)
            in_edges[t].append(s)
            indeg[t] += 1
    column = dict.fromkeys(ids, 0)
    remaining = dict(indeg)
    ready = [n for n in ids if remaining[n] == 0]
    done: set[str] = set()
    while len(done) < len(ids):
        if not ready:  # a cycle: release the unplaced node with the fewest waiting edges
            ready = [min((n for n in ids if n not in done), key=lambda n: (remaining[n], n))]
        node = ready.pop(0)
        if node in done:
            continue
        done.add(node)
        for t in out_edges[node]:
            if t in done:
                continue
            column[t] = max(column[t], column[node] + 1)
            remaining[t] -= 1
            if remaining[t] == 0:
                ready.append(t)
    placed: dict[str, list[int]] = {}
    for c in sorted(set(column.values())):
        members = sorted(n for n in ids if column[n] == c)

        def barycenter(n: str, c: int = c) -> tuple[float, str]:
            rows = [placed[p][1] for p in in_edges[n] if p in placed and placed[p][0] < c]
            return (sum(rows) / len(rows) if rows else math.inf, n)

        for row, n in enumerate(sorted(members, key=barycenter)):
            placed[n] = [c, row]
    return placed
