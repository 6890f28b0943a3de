"""Outlier detection on gRPC status, as Envoy's router feeds it: a grpc-status in the
response *head* (a trailers-only answer: how a gRPC server sends an error before any
message) is told to the detector as the HTTP status it maps to (UNAVAILABLE -> 503), so a
real `grpcio` server answering UNAVAILABLE gets its endpoint ejected though every HTTP
status it sent was 200; a status in the trailers is not fed (Envoy's router says so)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
from grpc_app import serve, stubs
from grpc_mesh import inbound, outbound
from proxy_harness import Harness

from tollway.proxy.main import ProxyServer
from tollway.snapshot import types


@pytest.fixture
def good_and_bad() -> Iterator[tuple[tuple[int, Any], tuple[int, Any]]]:
    (s1, p1, good), (s2, p2, bad) = serve("good"), serve("bad")
    bad.down = True  # every unary call: UNAVAILABLE, trailers-only
    yield (p1, good), (p2, bad)
    s1.stop(0)
    s2.stop(0)


def _mesh(harness: Harness, good: int, bad: int, od: types.OutlierDetection) -> ProxyServer:
    """One subset with two endpoints - an inbound sidecar per server - round robin, no
    retries (each failure reaches the client and the detector once)."""
    bad_in = inbound(harness, bad, "bad").listener_address("in")[1]
    good_in = inbound(harness, good, "good").listener_address("in")[1]
    return outbound(harness, {"v1": (bad_in, 100)}, retries=None, outlier=od,
                    endpoints={"v1": (bad_in, good_in)},
                    load_balancer=types.LoadBalancer(simple="ROUND_ROBIN"))


def _ejected(p: ProxyServer) -> list[bool]:
    view = httpx.get("http://{}:{}/clusters".format(*p.admin_address), timeout=10).json()
    return [h["ejected"] for h in view["clusters"][0]["hosts"]]


@pytest.mark.parametrize("od", [
    types.OutlierDetection(consecutive_5xx=3, max_ejection_percent=100),
    types.OutlierDetection(consecutive_5xx=None, consecutive_gateway=3,
                           max_ejection_percent=100),
], ids=["consecutive5xxErrors", "consecutiveGatewayErrors"])
def test_a_grpc_server_answering_unavailable_is_ejected(
        harness: Harness, good_and_bad: Any, od: types.OutlierDetection) -> None:
    (good_port, good), (bad_port, bad) = good_and_bad
    p = _mesh(harness, good_port, bad_port, od)
    codes = []
    with grpc.insecure_channel(f"127.0.0.1:{p.listener_address('out')[1]}") as ch:
        unary = stubs(ch)["unary"]
        for i in range(30):
            try:
                unary(b"%d" % i, timeout=20)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as e:
                codes.append(e.code())
    assert bad.failed == 3  # three in a row, then no more calls reach it
    assert codes.count(grpc.StatusCode.UNAVAILABLE) == 3
    assert codes[-20:] == [grpc.StatusCode.OK] * 20
    assert good.calls == 27
    assert _ejected(p) == [True, False]


def test_unavailable_in_the_trailers_is_not_fed(harness: Harness, good_and_bad: Any) -> None:
    """A stream that sent a message and then failed UNAVAILABLE: the status is in the
    trailers, which Envoy's router does not feed to outlier detection - no ejection."""
    (good_port, _), (bad_port, bad) = good_and_bad
    p = _mesh(harness, good_port, bad_port,
              types.OutlierDetection(consecutive_5xx=2, max_ejection_percent=100))
    with grpc.insecure_channel(f"127.0.0.1:{p.listener_address('out')[1]}") as ch:
        broken = stubs(ch)["stream_then_fail"]
        for _ in range(8):
            with pytest.raises(grpc.RpcError) as failed:
                list(broken(b"", timeout=20))
            assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert bad.calls == 4  # round robin went on sending it its share
    assert _ejected(p) == [False, False]
