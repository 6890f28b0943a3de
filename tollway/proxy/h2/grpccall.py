"""What telemetry needs from one gRPC call on a downstream HTTP/2 stream.

An `H2Stream` whose request is gRPC (content-type application/grpc, not grpc-web: Envoy's
isGrpcRequestHeaders) holds one `GrpcCall` and hands it what goes past: request and
response DATA (messages counted as they stream, nothing buffered: core/grpc
MessageCounter), the response head as sent (a trailers-only answer or a local reply
carries grpc-status there) and the trailers. While the stream is open, `tick` (the
connection's once-a-second sweep) reports the messages seen so far every REPORT_INTERVAL,
as Istio reports long streams; when it ends, `finish` sets the exchange's `grpc_status`
in Envoy's order (core/grpc.final_status) and `unreported` hands the rest to
`ListenerPlan.record_grpc`.

Streams that are not gRPC hold None: they pay one test per DATA frame and none of this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tollway.proxy.chain.telemetry import REPORT_INTERVAL
from tollway.proxy.core import grpc

if TYPE_CHECKING:
    from tollway.proxy.chain.stream import Exchange

Header = tuple[bytes, bytes]


class GrpcCall:
    """One gRPC call's status sources and message counts (see module doc)."""

    __slots__ = ("head_sent", "head_status", "next_report", "reported", "requests",
                 "responses", "trailer_sent", "trailer_status")

    def __init__(self, now: float = 0.0) -> None:
        self.requests = grpc.MessageCounter()
        self.responses = grpc.MessageCounter()
        self.head_status: int | None = None
        self.trailer_status: int | None = None
        # (grpc-status, grpc-message) as sent, for the trace spans' tags
        self.head_sent: tuple[bytes | None, bytes | None] | None = None
        self.trailer_sent: tuple[bytes | None, bytes | None] | None = None
        self.reported = (0, 0)  # messages already counted by a periodic report
        self.next_report = now + REPORT_INTERVAL

    def head(self, fields: list[Header]) -> None:
        """The response head sent to the client (from the upstream, or the proxy's own)."""
        sent = self.head_sent = grpc.status_and_message(fields)
        self.head_status = None if sent[0] is None else grpc.parse_status(sent[0])

    def trailers(self, fields: list[Header]) -> None:
        sent = self.trailer_sent = grpc.status_and_message(fields)
        self.trailer_status = None if sent[0] is None else grpc.parse_status(sent[0])

    def status(self, http_status: int) -> int | None:
        return grpc.final_status(self.trailer_status, self.head_status, http_status)

    def unreported(self) -> tuple[int, int]:
        """Messages seen since the last report, per direction; marks them reported."""
        req, resp = self.requests.count, self.responses.count
        before = self.reported
        self.reported = (req, resp)
        return req - before[0], resp - before[1]

    def tick(self, ex: Exchange, now: float) -> None:
        """A stream still open: report its new messages once its labels are known (the
        response head chose the endpoint) and REPORT_INTERVAL has passed."""
        if now < self.next_report or not ex.response_started:
            return
        self.next_report = now + REPORT_INTERVAL
        plan = ex.plan
        if plan.metrics_on:
            req, resp = self.unreported()
            if req or resp:
                plan.report_messages(ex, now, req, resp)

    def finish(self, ex: Exchange) -> None:
        """The stream is over: the exchange's grpc_status, as Envoy would log it, and the
        spans' gRPC tags when this side reports spans (chain/tracing.py)."""
        ex.grpc_status = self.status(ex.status)
        if ex.plan.tracer is not None:
            tags: dict[str, str] = {}
            grpc.span_tags(self.head_sent, tags)  # Envoy: the head's, then the trailers'
            grpc.span_tags(self.trailer_sent, tags)
            ex.attrs["grpc_tags"] = tags


def for_request(content_type: str | None, now: float) -> GrpcCall | None:
    """A GrpcCall when the request is gRPC, else None."""
    if content_type is not None and grpc.is_grpc(content_type):
        return GrpcCall(now)
    return None
