"""Trace spans of gRPC calls carry Envoy's gRPC tags: on the SERVER span the request's
(grpc.path, grpc.authority, grpc.content_type, grpc.timeout), on both spans the response's
grpc.status_code and grpc.message as sent, and `error` only for the codes Envoy counts as
upstream errors (RESOURCE_EXHAUSTED yes, NOT_FOUND-like caller mistakes no); http.protocol
says HTTP/2. A real grpcio client and server, through two sidecars, to a local collector."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_app import serve, stubs
from grpc_mesh import inbound, outbound
from proxy_harness import Harness

from tollway.snapshot import types

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.spancollector import Collector


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.close()


def test_grpc_span_tags(harness: Harness, collector: Collector) -> None:
    server, port, _ = serve("v1")
    try:
        side_in = inbound(harness, port, "v1")
        side_out = outbound(
            harness, {"v1": (side_in.listener_address("in")[1], 100)}, retries=None,
            tracing=types.Tracing(provider=types.TracingProvider(
                name="zipkin", kind="zipkin", endpoint=collector.zipkin_url), sampling=100.0))
        with grpc.insecure_channel(
                f"127.0.0.1:{side_out.listener_address('out')[1]}") as ch:
            assert stubs(ch)["unary"](b"a", timeout=20) == b"v1:a"
            with pytest.raises(grpc.RpcError):
                stubs(ch)["fail"](b"", timeout=20)
        collector.wait(4)
    finally:
        server.stop(0)
    assert collector.errors == []
    spans: dict[tuple[str, str], dict[str, Any]] = {}
    for s in collector.zipkin:
        spans[(s["kind"], s["tags"]["grpc.status_code"])] = s["tags"]
    assert set(spans) == {("SERVER", "0"), ("CLIENT", "0"), ("SERVER", "8"), ("CLIENT", "8")}
    ok, failed = spans[("SERVER", "0")], spans[("SERVER", "8")]
    assert ok["grpc.path"] == "/tollway.test.Echo/Unary"
    assert failed["grpc.path"] == "/tollway.test.Echo/Fail"
    assert ok["grpc.content_type"] == "application/grpc"
    assert ok["grpc.authority"] and ok["http.protocol"] == "HTTP/2"
    assert "grpc.timeout" in ok  # grpcio sends its deadline
    assert "error" not in ok and "error" not in spans[("CLIENT", "0")]
    assert failed["grpc.message"] == "no room" and failed["error"] == "true"
    assert spans[("CLIENT", "8")]["error"] == "true"
    assert "grpc.path" not in spans[("CLIENT", "0")]  # request tags: downstream span only
