"""A snapshot that replaces an HTTP/2 cluster while its connections are open.

A rollout moves a gRPC route from one subset cluster to another many times; each push
retires the clusters that left the config. Retiring an HTTP/2 cluster once raised inside
`ProxyServer.apply` (its pool's `idle` is a stream picker, not a list), after the new
snapshot was in place: the sidecar's control-plane task died with it and the proxy never
took another snapshot. Here: the swap goes through, traffic follows each new config, the
old connection closes once idle, and one busy with a stream closes after that stream ends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_app import Echo, serve, stubs
from proxy_harness import Harness

from tollway.snapshot import types


def _config(version: str, clusters: dict[str, int], weights: dict[str, int]
            ) -> types.ProxyConfig:
    """One outbound listener; cluster name -> upstream port; route weights by name."""
    route = types.Route(clusters=tuple(types.WeightedCluster(cluster=n, weight=w)
                                       for n, w in weights.items()))
    return types.ProxyConfig(
        version=version, node=types.Node(name="c-0", workload="c"),
        listeners=(types.Listener(name="out", kind="outbound", address="127.0.0.1", port=0,
                                  route_table="out"),),
        route_tables=(types.RouteTable(name="out", virtual_hosts=(types.VirtualHost(
            name="vh", domains=("*",), routes=(route,)),)),),
        clusters=tuple(types.Cluster(name=n, service="echo", port=50051, protocol="http2",
                                     endpoints=(types.Endpoint(address="127.0.0.1", port=p),))
                       for n, p in clusters.items()))


@pytest.fixture
def echoes() -> Iterator[dict[str, tuple[int, Echo]]]:
    started = {name: serve(name) for name in ("v1", "v2")}
    yield {name: (port, echo) for name, (_, port, echo) in started.items()}
    for server, _, _ in started.values():
        server.stop(0)


def _wait(cond: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_retiring_an_http2_cluster_keeps_the_proxy_taking_snapshots(
        harness: Harness, echoes: Any) -> None:
    (p1, _), (p2, _) = echoes["v1"], echoes["v2"]
    proxy = harness.proxy(_config("a", {"one": p1}, {"one": 100}))
    old = proxy.snapshot.clusters["one"]  # type: ignore[union-attr]
    port = proxy.listener_address("out")[1]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        unary = stubs(channel)["unary"]
        assert unary(b"x", timeout=20) == b"v1:x"  # an HTTP/2 connection to v1 is open
        assert harness.lt.call(lambda: old.pools[0].statistics())["cx_active"] == 1
        # the route moves to a new cluster: "one" leaves the config with its connection
        harness.apply(proxy, _config("b", {"two": p2}, {"two": 100}))
        assert proxy.snapshot.version == "b"  # type: ignore[union-attr]
        assert unary(b"y", timeout=20) == b"v2:y"
        _wait(lambda: harness.lt.call(lambda: old.pools[0].statistics())["cx_active"] == 0,
              "the retired cluster's idle connection to close")
        # and the proxy takes the next snapshots as well (back, then 50/50)
        harness.apply(proxy, _config("c", {"one": p1}, {"one": 100}))
        assert unary(b"z", timeout=20) == b"v1:z"
        harness.apply(proxy, _config("d", {"one": p1, "two": p2}, {"one": 50, "two": 50}))
        seen = {unary(b"%d" % i, timeout=20).split(b":")[0] for i in range(40)}
        assert seen == {b"v1", b"v2"}


def test_a_stream_in_flight_finishes_on_a_retired_cluster(harness: Harness,
                                                          echoes: Any) -> None:
    (p1, _), (p2, _) = echoes["v1"], echoes["v2"]
    proxy = harness.proxy(_config("a", {"one": p1}, {"one": 100}))
    old = proxy.snapshot.clusters["one"]  # type: ignore[union-attr]
    port = proxy.listener_address("out")[1]
    release = threading.Event()

    def slow_requests() -> Iterator[bytes]:
        yield b"ab"
        release.wait(20)
        yield b"cde"

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        s = stubs(channel)
        call = s["client_stream"].future(slow_requests(), timeout=30)
        _wait(lambda: harness.lt.call(lambda: old.pools[0].statistics())["rq_active_streams"]
              == 1, "the client stream to be open upstream")
        harness.apply(proxy, _config("b", {"two": p2}, {"two": 100}))
        assert s["unary"](b"y", timeout=20) == b"v2:y"  # new calls: the new cluster
        assert harness.lt.call(lambda: old.pools[0].statistics())["cx_active"] == 1
        release.set()
        assert call.result(timeout=20) == b"5"  # the call in flight ended normally
        _wait(lambda: harness.lt.call(lambda: old.pools[0].statistics())["cx_active"] == 0,
              "the retired connection to close after its last stream")
