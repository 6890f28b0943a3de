"""The service graph's arithmetic, without sockets: parsing what the proxy really renders,
rates from two scrapes, resets, per-proxy windows, quantiles and the layout."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from tests.exchanges import finished
from tollway.dashboard import graph
from tollway.dashboard.graph import EdgeKey, ProxyCounts, Scrape, Tally
from tollway.proxy.chain.telemetry import BUCKETS, IstioCollector, Metrics

SVC = "web.default.svc.cluster.local"
CLIENT = ("default", "tollway-client")


def _labels(reporter: str, src: tuple[str, str], svc: str, dst: tuple[str, str],
            version: str = "v1") -> tuple[str, ...]:
    """A label set in the proxy's own order (see telemetry.LABEL_NAMES and build.py)."""
    src_ns, src_wl = src
    dst_ns, dst_wl = dst
    return (reporter, src_wl, src_ns, "unknown", src_wl, "unknown", src_wl, "latest",
            "Kubernetes", dst_wl, dst_ns, "unknown", "web", version, svc, svc.split(".")[0],
            dst_ns, "web", version, "Kubernetes", "http", "unknown")


def _render(records: list[tuple[tuple[str, ...], int, float]]) -> str:
    """Prometheus text exactly as a proxy's admin /stats/prometheus serves it."""
    metrics = Metrics()
    for labels, code, ms in records:
        ex = finished(metrics.intern(labels), code, 100.0 - ms / 1000.0,
                      bytes_in=10, bytes_out=20)
        metrics.record(ex, 100.0)
    registry = CollectorRegistry()
    registry.register(IstioCollector(metrics))
    return generate_latest(registry).decode()


def test_parse_reads_what_the_proxy_renders() -> None:
    out = _labels("source", CLIENT, SVC, ("default", "web-abc"))
    inb = _labels("destination", ("unknown", "unknown"), SVC, ("default", "web-abc"))
    text = _render([(out, 200, 3.0), (out, 200, 30.0), (out, 503, 700.0), (inb, 200, 2.0)])
    counts = graph.parse_proxy(text)
    key = EdgeKey("default", "tollway-client", SVC, "default", "web-abc")
    assert set(counts.outbound) == {key}
    assert counts.outbound[key].codes == {"200": 2.0, "503": 1.0}
    assert counts.outbound[key].buckets[math.inf] == 3.0
    assert counts.outbound[key].buckets[5.0] == 1.0  # 3 ms is under 5 ms, 30 and 700 are not
    assert counts.inbound[("default", "web-abc")].codes == {"200": 1.0}
    assert counts.labels[("default", "web-abc")] == {"app": "web", "version": "v1"}


def _reference(text: str) -> list[tuple[str, dict[str, str], float]]:
    """The same two series read by prometheus_client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    return [(smp.name, dict(smp.labels), float(smp.value))
            for fam in text_string_to_metric_families(text) for smp in fam.samples
            if smp.name in ("istio_requests_total", "istio_request_duration_milliseconds_bucket")]


@settings(max_examples=40, deadline=None)
@given(names=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=2),
       codes=st.lists(st.sampled_from([200, 404, 503, 0]), min_size=1, max_size=3))
def test_the_fast_reader_agrees_with_prometheus_client(names: list[str],
                                                       codes: list[int]) -> None:
    """Any label value (quotes, backslashes, newlines, braces, unicode) reads back the same."""
    records = [(_labels("source", ("default", name), SVC, ("default", name)), code, 7.0)
               for name in names for code in codes]
    text = _render(records)
    assert graph.samples(text) == _reference(text)


def test_parse_refuses_text_that_is_not_prometheus() -> None:
    with pytest.raises(ValueError):
        graph.parse_proxy("istio_requests_total{reporter=\"source\" 12\n")


def _history(*scrapes: tuple[float, dict[str, ProxyCounts]]) -> list[Scrape]:
    return [Scrape(at, proxies) for at, proxies in scrapes]


def _one(key: EdgeKey, codes: dict[str, float], buckets: dict[float, float] | None = None
         ) -> ProxyCounts:
    return ProxyCounts(outbound={key: Tally(dict(codes), dict(buckets or {}))})


KEY = EdgeKey("default", "tollway-client", SVC, "default", "web-v1")


def test_two_scrapes_give_rate_error_rate_and_quantiles() -> None:
    before = _one(KEY, {"200": 100, "503": 0}, {5.0: 50, 10.0: 100, math.inf: 100})
    after = _one(KEY, {"200": 190, "503": 10}, {5.0: 100, 10.0: 190, math.inf: 200})
    g = graph.build(_history((10.0, {"p": before}), (20.0, {"p": after})), window=10)
    request = next(e for e in g["edges"] if e["kind"] == "request")
    assert request["source"] == "workload:default/tollway-client"
    assert request["target"] == f"service:{SVC}"
    assert request["rps"] == pytest.approx(10.0)
    assert request["errorRate"] == pytest.approx(0.1)
    assert request["requests"] == 100
    # window buckets: 50 under 5 ms, 90 under 10 ms, 100 in all → p50 = 5 ms exactly
    assert request["p50"] == pytest.approx(5.0)
    assert request["p99"] > 5.0
    split = next(e for e in g["edges"] if e["kind"] == "split")
    assert split["target"] == "workload:default/web-v1" and split["rps"] == request["rps"]
    assert g["measured"] is True


def test_a_single_scrape_lists_edges_but_does_not_rate_them() -> None:
    g = graph.build(_history((5.0, {"p": _one(KEY, {"200": 7})})), window=10)
    assert [e["rps"] for e in g["edges"]] == [None, None]
    assert g["measured"] is False and len(g["nodes"]) == 3


def test_no_scrape_no_graph() -> None:
    g = graph.build([], window=10)
    assert g == {"window": 10, "seconds": None, "measured": False, "proxies": 0, "nodes": [],
                 "edges": [], "layout": {}}


def test_a_restarted_proxy_counts_from_zero_not_negative() -> None:
    before = _one(KEY, {"200": 1000})
    after = _one(KEY, {"200": 30})  # the proxy restarted and has served 30 since
    g = graph.build(_history((0.0, {"p": before}), (10.0, {"p": after})), window=10)
    assert g["edges"][0]["rps"] == pytest.approx(3.0)


def test_each_proxy_gets_its_own_base_scrape() -> None:
    other = EdgeKey("default", "gateway", SVC, "default", "web-v1")
    history = _history(
        (0.0, {"a": _one(KEY, {"200": 0})}),
        (5.0, {"a": _one(KEY, {"200": 50}), "b": _one(other, {"200": 0})}),  # b is new
        (10.0, {"a": _one(KEY, {"200": 100}), "b": _one(other, {"200": 10})}),
    )
    edges = {e["id"]: e for e in graph.build(history, window=10)["edges"]}
    assert edges[f"workload:default/tollway-client->service:{SVC}"]["rps"] == pytest.approx(10)
    assert edges[f"workload:default/gateway->service:{SVC}"]["rps"] == pytest.approx(2)
    # with a 5 s window, a's base is the scrape at 5 s
    assert graph.base_for(history, "a", 5.0) is history[1]
    assert graph.base_for(history, "b", 60.0) is history[1]
    assert graph.base_for(history[:1], "a", 5.0) is None


def test_after_nobody_looked_for_a_while_rates_are_recent() -> None:
    history = _history((0.0, {"a": _one(KEY, {"200": 0})}),
                       (200.0, {"a": _one(KEY, {"200": 1000})}),
                       (202.0, {"a": _one(KEY, {"200": 1040})}))
    assert graph.base_for(history, "a", 10.0) is history[1]
    g = graph.build(history, window=10)
    assert g["seconds"] == 2.0 and g["edges"][0]["rps"] == pytest.approx(20.0)
    # a base up to three windows old is still the honest one
    assert graph.base_for(history, "a", 100.0) is history[0]


def test_unknown_destinations_are_a_node_and_not_a_split() -> None:
    nowhere = EdgeKey("default", "tollway-client", "unknown", "unknown", "unknown")
    g = graph.build(_history((0.0, {"p": _one(nowhere, {"404": 0})}),
                             (1.0, {"p": _one(nowhere, {"404": 4})})), window=10)
    assert [(e["kind"], e["target"]) for e in g["edges"]] == [("request", "service:unknown")]
    node = next(n for n in g["nodes"] if n["id"] == "service:unknown")
    assert node["kind"] == "unknown"
    assert g["edges"][0]["codes"] == {"4xx": 4.0} and g["edges"][0]["errorRate"] == 0.0


def test_roles_and_rollout_tracks_mark_the_nodes() -> None:
    g = graph.build(_history((0.0, {"p": _one(KEY, {"200": 1})})), 10,
                    roles={CLIENT: "client"},
                    tags={("default", "web-v1"): {"track": "canary", "rollout": "web"}})
    nodes = {n["id"]: n for n in g["nodes"]}
    assert nodes["workload:default/tollway-client"]["role"] == "client"
    assert nodes["workload:default/web-v1"]["track"] == "canary"


@pytest.mark.parametrize(("code", "cls"), [("200", "2xx"), ("503", "5xx"), ("404", "4xx"),
                                           ("0", "other"), ("99", "other"), ("abc", "other"),
                                           ("600", "other")])
def test_code_class(code: str, cls: str) -> None:
    assert graph.code_class(code) == cls


# ---- properties over wide inputs ------------------------------------------------------------

WORKLOADS = st.sampled_from(["a", "b", "c", "unknown"])
CODES = st.sampled_from(["200", "201", "302", "404", "500", "503", "0"])
edge_keys = st.builds(lambda s, svc, d: EdgeKey("ns", s, f"{svc}.ns.svc.cluster.local"
                                                if svc != "unknown" else "unknown", "ns", d),
                      WORKLOADS.filter(lambda w: w != "unknown"),
                      st.sampled_from(["x", "y", "unknown"]), WORKLOADS)
# per proxy: {edge key: {code: (count before, increment)}}
proxy_growth = st.dictionaries(
    edge_keys, st.dictionaries(CODES, st.tuples(st.integers(0, 10**6), st.integers(0, 10**4)),
                               min_size=1, max_size=4), min_size=1, max_size=5)


@settings(max_examples=150, deadline=None)
@given(proxies=st.dictionaries(st.sampled_from(["p1", "p2", "p3"]), proxy_growth,
                               min_size=1, max_size=3),
       dt=st.floats(0.5, 600.0))
def test_rates_are_the_increments_over_the_window(
        proxies: dict[str, dict[EdgeKey, dict[str, tuple[int, int]]]], dt: float) -> None:
    before = {p: ProxyCounts(outbound={k: Tally({c: float(b) for c, (b, _) in codes.items()})
                                       for k, codes in edges.items()})
              for p, edges in proxies.items()}
    after = {p: ProxyCounts(outbound={k: Tally({c: float(b + i) for c, (b, i) in codes.items()})
                                      for k, codes in edges.items()})
             for p, edges in proxies.items()}
    g = graph.build(_history((0.0, before), (dt, after)), window=dt)
    want: dict[str, float] = {}
    want_5xx: dict[str, float] = {}
    for edges in proxies.values():
        for k, codes in edges.items():
            eid = (f"{graph.workload_id(k.source_namespace, k.source_workload)}->"
                   f"{graph.service_id(k.destination_service)}")
            want[eid] = want.get(eid, 0.0) + sum(i for _, i in codes.values())
            want_5xx[eid] = want_5xx.get(eid, 0.0) + sum(
                i for c, (_, i) in codes.items() if c.startswith("5"))
    got = {e["id"]: e for e in g["edges"] if e["kind"] == "request"}
    assert set(got) == set(want)
    for eid, n in want.items():
        assert got[eid]["rps"] == pytest.approx(n / dt, rel=1e-6, abs=1e-6)
        if n:
            assert got[eid]["errorRate"] == pytest.approx(want_5xx[eid] / n, abs=1e-6)
        else:
            assert got[eid]["errorRate"] is None
    # what the mesh split never exceeds what was asked of the service
    for e in g["edges"]:
        if e["kind"] == "split":
            asking = [r["rps"] for r in got.values() if r["target"] == e["source"]]
            # every rate is rounded to 6 decimals, so each term may be off by 5e-7
            assert e["rps"] <= sum(asking) + 5e-7 * (len(asking) + 1)


@settings(max_examples=150, deadline=None)
@given(old=st.dictionaries(CODES, st.integers(0, 10**6), max_size=4),
       new=st.dictionaries(CODES, st.integers(0, 10**6), max_size=4))
def test_a_window_is_never_negative(old: dict[str, int], new: dict[str, int]) -> None:
    delta = Tally({c: float(n) for c, n in new.items()}).minus(
        Tally({c: float(n) for c, n in old.items()}))
    assert all(v >= 0 for v in delta.codes.values())
    assert delta.total <= sum(new.values())


bucket_counts = st.lists(st.integers(0, 1000), min_size=len(BUCKETS) + 1,
                         max_size=len(BUCKETS) + 1)


@settings(max_examples=150, deadline=None)
@given(counts=bucket_counts)
def test_p50_is_at_most_p99_and_inside_the_buckets(counts: list[int]) -> None:
    cumulative, acc = {}, 0
    for le, n in zip((*BUCKETS, math.inf), counts, strict=True):
        acc += n
        cumulative[le] = float(acc)
    flow = graph.Flow()
    flow.add(Tally({"200": float(acc)}, cumulative), 1.0)
    p50, p99 = flow.quantile(0.5), flow.quantile(0.99)
    if acc == 0:
        assert p50 is None and p99 is None
        return
    assert p50 is not None and p99 is not None
    assert 0.0 <= p50 <= p99 <= BUCKETS[-1]


@settings(max_examples=100, deadline=None)
@given(records=st.lists(st.tuples(st.sampled_from(["source", "destination"]),
                                  st.sampled_from(["a", "b"]), st.sampled_from(["v1", "v2"]),
                                  st.sampled_from([200, 404, 503]),
                                  st.floats(0.0, 5000.0)), min_size=1, max_size=30))
def test_parse_counts_every_request_the_proxy_recorded(
        records: list[tuple[str, str, str, int, float]]) -> None:
    rendered = [(_labels(rep, (("default", src) if rep == "source" else ("unknown", "unknown")),
                         SVC, ("default", f"web-{ver}"), ver), code, ms)
                for rep, src, ver, code, ms in records]
    counts = graph.parse_proxy(_render(rendered))
    out = sum(t.total for t in counts.outbound.values())
    inb = sum(t.total for t in counts.inbound.values())
    assert out == sum(1 for r in records if r[0] == "source")
    assert inb == sum(1 for r in records if r[0] == "destination")
    for tally in (*counts.outbound.values(), *counts.inbound.values()):
        assert tally.buckets[math.inf] == tally.total


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 12), pairs=st.lists(st.tuples(st.integers(0, 11), st.integers(0, 11)),
                                            max_size=40))
def test_layout_places_every_node_once_and_calls_flow_left_to_right(
        n: int, pairs: list[tuple[int, int]]) -> None:
    nodes = [f"n{i}" for i in range(n)]
    edges = [(f"n{a}", f"n{b}") for a, b in pairs if a < n and b < n]
    placed = graph.layout(nodes, edges)
    assert set(placed) == set(nodes)
    assert len({tuple(v) for v in placed.values()}) == n
    if all(int(s[1:]) < int(t[1:]) for s, t in edges):  # acyclic: every arrow goes right
        for s, t in edges:
            assert placed[s][0] < placed[t][0]


def test_pure_modules_do_no_io() -> None:
    """graph.py, rollouts.py and mesh.py are [pure]: no sockets, no asyncio, no httpx."""
    io = {"asyncio", "socket", "ssl", "subprocess", "httpx", "aiohttp", "threading"}
    root = Path(graph.__file__).parent
    for name in ("graph.py", "rollouts.py", "mesh.py"):
        tree = ast.parse((root / name).read_text())
        used = {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for a in node.names}
        used |= {str(node.module).split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom)}
        assert not used & io, f"{name} imports {used & io}"


def test_layout_puts_each_services_workloads_beside_it() -> None:
    """Barycenter rows: b's workloads (named to sort first) are drawn level with b, not a."""
    edges = [("client", "svc-a"), ("client", "svc-b"), ("svc-a", "z-a1"), ("svc-a", "z-a2"),
             ("svc-b", "a-b1")]
    placed = graph.layout(["client", "svc-a", "svc-b", "z-a1", "z-a2", "a-b1"], edges)
    assert placed["svc-a"] == [1, 0] and placed["svc-b"] == [1, 1]
    assert [placed[n][1] for n in ("z-a1", "z-a2", "a-b1")] == [0, 1, 2]


def test_grpc_errors_in_a_200_count_as_errors() -> None:
    """Kiali's rule: a gRPC call that ended with grpc_response_status 1-16 is an error
    though its HTTP status was 200; status 0 is a success, and an HTTP error keeps its
    class (counted once). The text is what `Metrics.record_grpc` renders."""
    out = _labels("source", CLIENT, SVC, ("default", "web-v1"))
    metrics = Metrics()
    index = metrics.intern(out)
    for status, code, n in ((200, 0, 7), (200, 14, 2), (503, 14, 1)):
        for _ in range(n):
            ex = finished(index, status, 99.99)
            ex.grpc, ex.grpc_status = True, code
            metrics.record_grpc(ex, 100.0, 1, 1)
    registry = CollectorRegistry()
    registry.register(IstioCollector(metrics))
    text = generate_latest(registry).decode()
    assert 'request_protocol="grpc"' in text and 'grpc_response_status="14"' in text
    counts = graph.parse_proxy(text)
    key = EdgeKey("default", "tollway-client", SVC, "default", "web-v1")
    assert counts.outbound[key].codes == {"200": 7.0, graph.GRPC_ERROR: 2.0, "503": 1.0}
    g = graph.build(_history((10.0, {"p": ProxyCounts()}), (20.0, {"p": counts})), window=10)
    request = next(e for e in g["edges"] if e["kind"] == "request")
    assert request["errorRate"] == pytest.approx(0.3)
    assert request["codes"] == {"2xx": 0.7, "5xx": 0.1, graph.GRPC_ERROR: 0.2}
