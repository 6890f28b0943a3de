"""gRPC through two sidecars with the real `grpcio` client and server.

client --h2c--> outbound sidecar --HTTP/2 (h2c, or inside mTLS)--> inbound sidecar
--h2c--> gRPC server. All four call shapes, statuses and trailing metadata, a message past
every flow-control window, and a canary split 80/20 whose canary answers every other call
UNAVAILABLE: Istio's default retry policy (`unavailable` among its retryOn) hides it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_app import Echo, serve, stubs
from grpc_mesh import inbound, mtls_pair, outbound
from proxy_harness import Harness

from tollway.proxy import tls
from tollway.snapshot import types


def _inbound(harness: Harness, app_port: int, name: str, creds: tls.Credentials | None = None
             ) -> int:
    return inbound(harness, app_port, name, creds).listener_address("in")[1]


def _outbound(harness: Harness, backends: dict[str, tuple[int, int]],
              creds: tls.Credentials | None = None) -> int:
    """backends: subset name -> (inbound sidecar port, weight)."""
    return outbound(harness, backends, creds).listener_address("out")[1]


@pytest.fixture
def echo_servers() -> Iterator[dict[str, tuple[int, Echo]]]:
    started: dict[str, tuple[Any, int, Echo]] = {}
    for name in ("v1", "v2"):
        started[name] = serve(name)
    yield {name: (port, echo) for name, (_, port, echo) in started.items()}
    for server, _, _ in started.values():
        server.stop(0)


def _all_shapes(channel: grpc.Channel) -> None:
    s = stubs(channel)
    reply, call = s["unary"].with_call(b"hello", timeout=20)
    assert reply == b"v1:hello"
    assert ("x-served-by", "v1") in tuple((m.key, m.value) for m in call.trailing_metadata())
    assert list(s["server_stream"](b"4", timeout=20)) == [b"v1:0", b"v1:1", b"v1:2", b"v1:3"]
    assert s["client_stream"](iter([b"ab", b"cde", b"f"]), timeout=20) == b"6"
    assert list(s["bidi"](iter([b"abc", b"xyz"]), timeout=20)) == [b"cba", b"zyx"]
    with pytest.raises(grpc.RpcError) as failed:
        s["fail"](b"", timeout=20)
    assert failed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert failed.value.details() == "no room"
    assert len(s["unary"](b"z" * 3_000_000, timeout=30)) == 3_000_003  # past every window


def test_grpc_through_two_sidecars_plaintext(harness: Harness, echo_servers: Any) -> None:
    port, _ = echo_servers["v1"]
    inbound = _inbound(harness, port, "v1")
    outbound = _outbound(harness, {"v1": (inbound, 100)})
    with grpc.insecure_channel(f"127.0.0.1:{outbound}") as channel:
        _all_shapes(channel)
        # many calls share the sidecars' HTTP/2 connections
        futures = [stubs(channel)["unary"].future(b"%d" % i, timeout=20) for i in range(50)]
        assert sorted(f.result() for f in futures) == sorted(b"v1:%d" % i for i in range(50))


def test_grpc_through_two_sidecars_over_mtls(harness: Harness, echo_servers: Any) -> None:
    server_creds, client_creds = mtls_pair()
    port, _ = echo_servers["v1"]
    in_port = _inbound(harness, port, "v1", server_creds)
    out_port = _outbound(harness, {"v1": (in_port, 100)}, client_creds)
    with grpc.insecure_channel(f"127.0.0.1:{out_port}") as channel:
        _all_shapes(channel)
    # the hop between the sidecars was HTTP/2 inside mTLS, on one shared connection
    pools = [p for p in harness.proxies if "outbound|50051|v1|echo" in
             (p.snapshot.clusters if p.snapshot else {})]
    cluster = pools[0].snapshot.clusters["outbound|50051|v1|echo"]  # type: ignore[union-attr]
    stats = harness.lt.call(lambda: cluster.pools[0].statistics())
    assert stats["cx_total"] == 1, stats


def test_grpc_canary_split_80_20_retried_on_unavailable(harness: Harness,
                                                         echo_servers: Any) -> None:
    (p1, _), (p2, canary) = echo_servers["v1"], echo_servers["v2"]
    canary.flaky = True  # every other call to the canary fails UNAVAILABLE
    outbound = _outbound(harness, {"v1": (_inbound(harness, p1, "v1"), 80),
                                   "v2": (_inbound(harness, p2, "v2"), 20)})
    seen: Counter[bytes] = Counter()
    with grpc.insecure_channel(f"127.0.0.1:{outbound}") as channel:
        unary = stubs(channel)["unary"]
        for i in range(300):
            seen[unary(b"%d" % i, timeout=20).split(b":")[0]] += 1  # none fails
    assert canary.failed >= 20  # it did fail, and every failure was retried
    assert seen[b"v1"] + seen[b"v2"] == 300
    assert 30 <= seen[b"v2"] <= 95, seen  # 20% of 300 = 60 (retries may move a few)


def test_grpc_local_reply_is_a_grpc_status(harness: Harness) -> None:
    """No endpoint at all: the sidecar's own 503 reaches the gRPC client as UNAVAILABLE."""
    outbound = _outbound(harness, {"v1": (1, 100)})  # nothing listens on port 1
    with grpc.insecure_channel(f"127.0.0.1:{outbound}") as channel, \
            pytest.raises(grpc.RpcError) as failed:
        stubs(channel)["unary"](b"x", timeout=20)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "upstream connect error" in (failed.value.details() or "")


def test_fault_abort_grpc_status(harness: Harness, echo_servers: Any) -> None:
    """VirtualService fault.abort.grpcStatus: the caller reads that gRPC status (HTTP 200,
    grpc-status in the head) and the app never sees the call."""
    port, echo = echo_servers["v1"]
    inbound = _inbound(harness, port, "v1")
    cluster = types.Cluster(name="outbound|50051|v1|echo", service="echo", port=50051,
                            protocol="http2",
                            endpoints=(types.Endpoint(address="127.0.0.1", port=inbound),))
    route = types.Route(clusters=(types.WeightedCluster(cluster=cluster.name, weight=100),),
                        fault=types.Fault(abort_status=200, abort_percent=100.0,
                                          abort_grpc_status=14))
    cfg = types.ProxyConfig(
        version="f", node=types.Node(name="c-0", workload="c"),
        listeners=(types.Listener(name="out", kind="outbound", address="127.0.0.1", port=0,
                                  route_table="out"),),
        route_tables=(types.RouteTable(name="out", virtual_hosts=(types.VirtualHost(
            name="vh", domains=("*",), routes=(route,)),)),),
        clusters=(cluster,))
    outbound = harness.proxy(cfg).listener_address("out")[1]
    with grpc.insecure_channel(f"127.0.0.1:{outbound}") as channel, \
            pytest.raises(grpc.RpcError) as failed:
        stubs(channel)["unary"](b"x", timeout=20)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert failed.value.details() == "fault filter abort"
    assert echo.calls == 0


def test_grpc_timeout_header_bounds_the_call(harness: Harness) -> None:
    """A gRPC deadline travels as `grpc-timeout`; the sidecar ends the call when it passes
    (Istio's route: the header is the timeout) with Envoy's 504 as a gRPC status, though
    the client itself would wait longer."""
    import socket
    import time

    from h2client import H2Client

    silent = socket.socket()  # an upstream that accepts and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    outbound = _outbound(harness, {"v1": (silent.getsockname()[1], 100)})
    c = H2Client(("127.0.0.1", outbound))
    started = time.monotonic()
    reply = c.get("/tollway.test.Echo/Unary", method="POST", body=b"\0\0\0\0\0", headers=[
        ("content-type", "application/grpc"), ("te", "trailers"), ("grpc-timeout", "300m")])
    took = time.monotonic() - started
    assert reply.status == 200 and reply.headers["grpc-status"] == "14"  # 504 -> UNAVAILABLE
    assert "timeout" in reply.headers["grpc-message"]
    assert 0.25 < took < 10
    c.close()
    silent.close()
