"""Istio's gRPC metrics, scraped from both sidecars' Prometheus endpoints after real
`grpcio` calls through them (plaintext and mTLS).

- istio_requests_total and the three histograms carry `request_protocol="grpc"` and
  `grpc_response_status` (the code from the trailers, from a trailers-only head, or the one
  the proxy made up for its own reply), `""` for a plain HTTP request;
- istio_request_messages_total / istio_response_messages_total count the length-prefixed
  messages of every call shape, streaming included, with the 20 peer labels only.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_app import stubs
from grpc_mesh import SERVICE, inbound, mtls_pair, outbound
from prometheus_client.parser import text_string_to_metric_families
from proxy_harness import Harness

from tollway.proxy.main import ProxyServer
from tollway.snapshot import types

Sample = tuple[dict[str, str], float]


def scrape(p: ProxyServer) -> dict[str, list[Sample]]:
    """Sample name -> (labels, value) of the sidecar's /stats/prometheus (parsed by
    prometheus-client's own text parser)."""
    text = httpx.get("http://{}:{}/stats/prometheus".format(*p.admin_address),
                     timeout=10).text
    out: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def total(samples: dict[str, list[Sample]], name: str, **match: str) -> float:
    return sum(v for labels, v in samples.get(name, ())
               if all(labels.get(k) == want for k, want in match.items()))


def _calls(channel: grpc.Channel) -> None:
    """6 calls that succeed and 2 that fail RESOURCE_EXHAUSTED (8): 11 request messages
    and 10 response messages in all."""
    s = stubs(channel)
    for i in range(3):
        assert s["unary"](b"%d" % i, timeout=20) == b"v1:%d" % i  # 1 -> 1 each
    for _ in range(2):
        with pytest.raises(grpc.RpcError) as failed:
            s["fail"](b"", timeout=20)  # 1 -> 0 (trailers-only answer)
        assert failed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert len(list(s["server_stream"](b"4", timeout=20))) == 4  # 1 -> 4
    assert s["client_stream"](iter([b"ab", b"cde", b"f"]), timeout=20) == b"6"  # 3 -> 1
    assert list(s["bidi"](iter([b"abc", b"xyz"]), timeout=20)) == [b"cba", b"zyx"]  # 2 -> 2


@pytest.mark.parametrize("mtls", [False, True], ids=["plaintext", "mtls"])
def test_grpc_status_label_and_message_counters_on_both_sidecars(
        harness: Harness, echo: tuple[int, Any], mtls: bool) -> None:
    server_creds, client_creds = mtls_pair() if mtls else (None, None)
    side_in = inbound(harness, echo[0], "v1", server_creds)
    side_out = outbound(harness, {"v1": (side_in.listener_address("in")[1], 100)},
                        client_creds)
    with grpc.insecure_channel(f"127.0.0.1:{side_out.listener_address('out')[1]}") as ch:
        _calls(ch)
    for proxy, reporter in ((side_out, "source"), (side_in, "destination")):
        m = scrape(proxy)
        grpc_rq = {"reporter": reporter, "request_protocol": "grpc", "response_code": "200"}
        assert total(m, "istio_requests_total", **grpc_rq, grpc_response_status="0") == 6
        assert total(m, "istio_requests_total", **grpc_rq, grpc_response_status="8") == 2
        assert total(m, "istio_requests_total", reporter=reporter) == 8  # nothing else
        # the histograms carry the label too (Istio's istio_stats: one tag set for all)
        for family in ("istio_request_duration_milliseconds_count",
                       "istio_request_bytes_count", "istio_response_bytes_count"):
            assert total(m, family, grpc_response_status="8", request_protocol="grpc") == 2
        req = m["istio_request_messages_total"]
        resp = m["istio_response_messages_total"]
        assert sum(v for _, v in req) == 11 and sum(v for _, v in resp) == 10
        for labels, _ in req + resp:  # the peer labels only, as Istio's
            assert labels["reporter"] == reporter
            assert labels["destination_service"] == SERVICE
            assert not {"response_code", "grpc_response_status", "request_protocol",
                        "response_flags"} & labels.keys()


def test_statuses_the_proxy_makes_up(harness: Harness, echo: tuple[int, Any]) -> None:
    """No endpoint (the sidecar's own 503 -> UNAVAILABLE, 14), a fault abort.grpcStatus
    and a gRPC deadline passing at the sidecar (504 -> 14): labelled with the status the
    client was given; a plain
    HTTP/2 request through the same sidecar keeps grpc_response_status="" and
    request_protocol="http"."""
    from h2client import H2Client

    dead = outbound(harness, {"v1": (1, 100)})  # nothing listens on port 1
    with grpc.insecure_channel(f"127.0.0.1:{dead.listener_address('out')[1]}") as ch, \
            pytest.raises(grpc.RpcError) as failed:
        stubs(ch)["unary"](b"x", timeout=20)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    (labels, count), = scrape(dead)["istio_requests_total"]
    assert count == 1 and "UF" in labels["response_flags"].split(",")
    assert (labels["request_protocol"], labels["response_code"],
            labels["grpc_response_status"]) == ("grpc", "503", "14")

    aborting = outbound(harness, {"v1": (1, 100)}, fault=types.Fault(
        abort_status=200, abort_percent=100.0, abort_grpc_status=8))  # abort.grpcStatus
    with grpc.insecure_channel(f"127.0.0.1:{aborting.listener_address('out')[1]}") as ch, \
            pytest.raises(grpc.RpcError) as failed:
        stubs(ch)["unary"](b"x", timeout=20)
    assert failed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    (labels, count), = scrape(aborting)["istio_requests_total"]
    assert (labels["response_code"], labels["grpc_response_status"], labels["response_flags"]
            ) == ("200", "8", "FI")

    silent = socket.socket()  # accepts, never answers: the grpc-timeout passes
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    slow = outbound(harness, {"v1": (silent.getsockname()[1], 100)})
    c = H2Client(("127.0.0.1", slow.listener_address("out")[1]))
    reply = c.get("/tollway.test.Echo/Unary", method="POST", body=b"\0\0\0\0\0", headers=[
        ("content-type", "application/grpc"), ("te", "trailers"), ("grpc-timeout", "200m")])
    c.close()
    silent.close()
    assert reply.headers["grpc-status"] == "14"
    (labels, count), = scrape(slow)["istio_requests_total"]
    assert (labels["response_code"], labels["grpc_response_status"], labels["response_flags"]
            ) == ("504", "14", "UT")

    side_in = inbound(harness, echo[0], "v1")
    side_out = outbound(harness, {"v1": (side_in.listener_address("in")[1], 100)})
    c = H2Client(("127.0.0.1", side_out.listener_address("out")[1]))
    reply = c.get("/tollway.test.Echo/Unary", method="POST", body=b"\0\0\0\0\x01z",
                  headers=[("content-type", "application/grpc"), ("te", "trailers")])
    assert reply.status == 200 and reply.body.endswith(b"v1:z")
    plain = c.get("/plain", method="GET")  # the gRPC app answers 404 to a plain GET
    c.close()
    m = scrape(side_out)
    assert total(m, "istio_requests_total", request_protocol="grpc",
                 grpc_response_status="0") == 1
    assert total(m, "istio_requests_total", request_protocol="http", grpc_response_status="",
                 response_code=str(plain.status)) == 1
    assert total(m, "istio_request_messages_total") == 1
    assert total(m, "istio_response_messages_total") == 1


def test_access_log_grpc_status_operators(harness: Harness, echo: tuple[int, Any],
                                          tmp_path: Path) -> None:
    """%GRPC_STATUS% (CAMEL_STRING by default), its SNAKE_STRING / NUMBER forms and
    %GRPC_STATUS_NUMBER%, as Envoy writes them: "-" for a request that is not gRPC; a
    Telemetry tag from `response.grpc_status` (CEL) sees the same status."""
    log = tmp_path / "access.log"
    fmt = ("%REQ(:PATH)% %PROTOCOL% %RESPONSE_CODE% %GRPC_STATUS% %GRPC_STATUS(SNAKE_STRING)% "
           "%GRPC_STATUS(NUMBER)% %GRPC_STATUS_NUMBER%\n")
    tel = types.Telemetry(
        access_logs=(types.AccessLog(path=str(log), text_format=fmt),),
        client_metrics=(types.MetricOverride(metric="REQUEST_COUNT", tags=(
            types.TagOverride(name="cel_grpc", value="string(response.grpc_status)"),)),))
    side_in = inbound(harness, echo[0], "v1")
    side_out = outbound(harness, {"v1": (side_in.listener_address("in")[1], 100)},
                        telemetry=tel)
    with grpc.insecure_channel(f"127.0.0.1:{side_out.listener_address('out')[1]}") as ch:
        stubs(ch)["unary"](b"a", timeout=20)
        with pytest.raises(grpc.RpcError):
            stubs(ch)["fail"](b"", timeout=20)
    r = httpx.get(f"http://127.0.0.1:{side_out.listener_address('out')[1]}/plain", timeout=10)
    lines: list[str] = []
    for _ in range(100):
        lines = log.read_text().splitlines() if log.exists() else []
        if len(lines) == 3:
            break
        time.sleep(0.1)
    assert sorted(lines) == sorted([
        "/tollway.test.Echo/Unary HTTP/2 200 Ok OK 0 0",
        "/tollway.test.Echo/Fail HTTP/2 200 ResourceExhausted RESOURCE_EXHAUSTED 8 8",
        f"/plain HTTP/1.1 {r.status_code} - - - -",
    ])
    m = scrape(side_out)
    assert total(m, "istio_requests_total", cel_grpc="8", grpc_response_status="8") == 1
    assert total(m, "istio_requests_total", cel_grpc="0", grpc_response_status="0") == 1


def test_a_grpc_status_format_tollway_does_not_know_is_refused() -> None:
    from tollway.snapshot import logformat

    assert logformat.check("%GRPC_STATUS(NUMBER)%") is None
    assert "CAMEL_STRING, SNAKE_STRING or NUMBER" in (logformat.check("%GRPC_STATUS(X)%") or "")


def test_a_long_stream_reports_its_messages_while_open(harness: Harness,
                                                       echo: tuple[int, Any]) -> None:
    """Istio reports a gRPC stream's message counts every few seconds, not only at its
    end: a bidi stream held open shows its first messages on both sidecars, then the
    rest once it ends (each message counted once)."""
    side_in = inbound(harness, echo[0], "v1")
    side_out = outbound(harness, {"v1": (side_in.listener_address("in")[1], 100)})
    release = threading.Event()

    def requests() -> Iterator[bytes]:
        yield b"ab"
        yield b"cd"
        release.wait(60)
        yield b"ef"

    def messages(p: ProxyServer) -> tuple[float, float]:
        m = scrape(p)
        return (total(m, "istio_request_messages_total"),
                total(m, "istio_response_messages_total"))

    with grpc.insecure_channel(f"127.0.0.1:{side_out.listener_address('out')[1]}") as ch:
        replies = stubs(ch)["bidi"](requests(), timeout=60)
        assert next(replies) == b"ba" and next(replies) == b"dc"
        deadline = time.monotonic() + 30
        while messages(side_out) != (2, 2) or messages(side_in) != (2, 2):
            assert time.monotonic() < deadline, (messages(side_out), messages(side_in))
            time.sleep(0.5)
        assert total(scrape(side_out), "istio_requests_total") == 0  # the call is open
        release.set()
        assert list(replies) == [b"fe"]
    deadline = time.monotonic() + 10
    while messages(side_out) != (3, 3) or messages(side_in) != (3, 3):
        assert time.monotonic() < deadline, (messages(side_out), messages(side_in))
        time.sleep(0.2)


def test_telemetry_overrides_apply_to_the_message_counters(harness: Harness,
                                                           echo: tuple[int, Any]) -> None:
    """Telemetry's GRPC_REQUEST_MESSAGES / GRPC_RESPONSE_MESSAGES selectors: a tag added
    from CEL on one, the other disabled (Istio's metric names)."""
    tel = types.Telemetry(client_metrics=(
        types.MetricOverride(metric="GRPC_REQUEST_MESSAGES", tags=(
            types.TagOverride(name="method", value="request.url_path"),)),
        types.MetricOverride(metric="GRPC_RESPONSE_MESSAGES", disabled=True)))
    side_in = inbound(harness, echo[0], "v1")
    side_out = outbound(harness, {"v1": (side_in.listener_address("in")[1], 100)},
                        telemetry=tel)
    with grpc.insecure_channel(f"127.0.0.1:{side_out.listener_address('out')[1]}") as ch:
        assert list(stubs(ch)["bidi"](iter([b"a", b"b", b"c"]), timeout=20)) == [b"a", b"b",
                                                                                  b"c"]
    m = scrape(side_out)
    assert "istio_response_messages_total" not in m
    (labels, count), = m["istio_request_messages_total"]
    assert count == 3 and labels["method"] == "/tollway.test.Echo/Bidi"
    assert "method" not in m["istio_requests_total"][0][0]  # only where it was added
