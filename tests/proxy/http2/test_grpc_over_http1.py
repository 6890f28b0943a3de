"""A gRPC call that reaches a sidecar over HTTP/1.1 is measured as gRPC, as Istio does.

Istio's stats filter tells gRPC by the request headers (Envoy's isGrpcRequestHeaders:
content-type application/grpc or application/grpc+..., not grpc-web), whatever the
protocol. An HTTP/1.1 client (httpx) posts framed gRPC messages to the client's sidecar,
which forwards them over HTTP/2 to the server's sidecar and the real grpcio server; the
client's sidecar labels them `request_protocol="grpc"` with the call's status (from the
upstream's trailers, which HTTP/1.1 does not relay, or from a trailers-only head), counts
the messages both ways, and answers its own replies as gRPC (HTTP 200 + grpc-status).
"""

from __future__ import annotations

import struct
from typing import Any

import httpx
from grpc_mesh import inbound, outbound
from proxy_harness import Harness
from test_grpc_telemetry import scrape, total

GRPC = {"content-type": "application/grpc", "te": "trailers"}


def frame(payload: bytes) -> bytes:
    return b"\0" + struct.pack(">I", len(payload)) + payload


def unframe(body: bytes) -> list[bytes]:
    out = []
    while body:
        size = struct.unpack(">I", body[1:5])[0]
        out.append(body[5:5 + size])
        body = body[5 + size:]
    return out


def test_grpc_over_http1_is_labelled_grpc_with_its_status_and_messages(
        harness: Harness, echo: tuple[int, Any]) -> None:
    side_in = inbound(harness, echo[0], "v1")
    side_out = outbound(harness, {"v1": (side_in.listener_address("in")[1], 100)})
    base = "http://127.0.0.1:{}/tollway.test.Echo/".format(side_out.listener_address("out")[1])
    with httpx.Client(http1=True, http2=False, timeout=30) as c:
        r = c.post(base + "Unary", content=frame(b"z"), headers=GRPC)
        assert r.http_version == "HTTP/1.1" and r.status_code == 200
        assert unframe(r.content) == [b"v1:z"]  # grpc-status 0 went in the trailers
        r = c.post(base + "ServerStream", content=frame(b"4"), headers=GRPC)
        assert unframe(r.content) == [b"v1:%d" % i for i in range(4)]
        r = c.post(base + "Fail", content=frame(b""), headers=GRPC)  # trailers-only: head
        assert r.headers["grpc-status"] == "8"
        r = c.post(base + "StreamThenFail", content=frame(b""), headers=GRPC)
        assert unframe(r.content) == [b"v1"]  # UNAVAILABLE came in the trailers, not relayed
        # grpc-web is not gRPC (Envoy's rule); the app refuses it, the label stays http
        web = c.post(base + "Unary", content=frame(b"z"),
                     headers={"content-type": "application/grpc-web"})
    m = scrape(side_out)
    grpc_rq = {"reporter": "source", "request_protocol": "grpc", "response_code": "200"}
    assert total(m, "istio_requests_total", **grpc_rq, grpc_response_status="0") == 2
    assert total(m, "istio_requests_total", **grpc_rq, grpc_response_status="8") == 1
    assert total(m, "istio_requests_total", **grpc_rq, grpc_response_status="14") == 1
    assert total(m, "istio_requests_total", request_protocol="http", grpc_response_status="",
                 response_code=str(web.status_code)) == 1
    assert total(m, "istio_requests_total") == 5
    for family in ("istio_request_duration_milliseconds_count", "istio_request_bytes_count",
                   "istio_response_bytes_count"):
        assert total(m, family, request_protocol="grpc") == 4
    # 4 calls, one message each way in; out: 1 + 4 + 0 + 1
    assert total(m, "istio_request_messages_total") == 4
    assert total(m, "istio_response_messages_total") == 6
    # the server's sidecar got HTTP/2 streams: the same calls, the same statuses
    m = scrape(side_in)
    assert total(m, "istio_requests_total", request_protocol="grpc",
                 grpc_response_status="14") == 1
    assert total(m, "istio_requests_total", request_protocol="grpc") == 4


def test_the_sidecars_own_reply_to_grpc_over_http1_is_a_grpc_answer(harness: Harness) -> None:
    """No endpoint: as on a stream, HTTP 200 + grpc-status 14 to the client, and the metric
    keeps the sidecar's 503 (UF) with grpc_response_status 14."""
    dead = outbound(harness, {"v1": (1, 100)})  # nothing listens on port 1
    url = "http://127.0.0.1:{}/tollway.test.Echo/Unary".format(dead.listener_address("out")[1])
    with httpx.Client(http1=True, http2=False, timeout=30) as c:
        r = c.post(url, content=frame(b"x"), headers=GRPC)
        again = c.post(url, content=frame(b"x"), headers=GRPC)  # the connection stays usable
    assert r.status_code == 200 and again.status_code == 200
    assert r.headers["content-type"] == "application/grpc"
    assert r.headers["grpc-status"] == "14" and r.headers["grpc-message"]
    assert r.content == b""
    (labels, count), = scrape(dead)["istio_requests_total"]
    assert count == 2 and "UF" in labels["response_flags"].split(",")
    assert (labels["request_protocol"], labels["response_code"],
            labels["grpc_response_status"]) == ("grpc", "503", "14")


def test_a_fault_abort_grpc_status_over_http1(harness: Harness) -> None:
    """abort.grpcStatus answers a gRPC call over HTTP/1.1 as over HTTP/2: HTTP 200 with
    the status in grpc-status, labelled with it (flag FI)."""
    from tollway.snapshot import types

    aborting = outbound(harness, {"v1": (1, 100)}, fault=types.Fault(
        abort_status=200, abort_percent=100.0, abort_grpc_status=8))
    url = "http://127.0.0.1:{}/tollway.test.Echo/Unary".format(
        aborting.listener_address("out")[1])
    with httpx.Client(http1=True, http2=False, timeout=30) as c:
        r = c.post(url, content=frame(b"x"), headers=GRPC)
    assert r.status_code == 200 and r.headers["grpc-status"] == "8"
    (labels, count), = scrape(aborting)["istio_requests_total"]
    assert count == 1
    assert (labels["request_protocol"], labels["response_code"], labels["grpc_response_status"],
            labels["response_flags"]) == ("grpc", "200", "8", "FI")
