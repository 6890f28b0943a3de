"""Exchange: one request/response passing through the proxy, as every stage sees it.

Created by the listener when a request's headers are complete, read by the filters and
the router, finished (and counted by telemetry) when the response is fully written or the
request is abandoned. Slotted, no per-request dict beyond the header view the matchers
need: this object is built on the hot path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tollway.proxy.chain.build import ListenerPlan


class Exchange:
    """The request's parsed head, its progress and the facts telemetry records."""

    __slots__ = (
        "attrs",
        "authority",
        "body_buffer",
        "body_done",
        "body_size",
        "bytes_in",
        "bytes_out",
        "chunked",
        "cluster_name",
        "content_length",
        "expect_continue",
        "flags",
        "forward",
        "grpc",
        "grpc_status",
        "headers",
        "http11",
        "keep_alive",
        "label_index",
        "listener_kind",
        "listener_port",
        "method",
        "path",
        "plan",
        "principal",
        "raw_headers",
        "request_id",
        "response_started",
        "route_name",
        "source_ip",
        "source_port",
        "span",
        "start",
        "status",
        "target",
        "tls",
        "upgrade",
        "upstream_host",
        "upstream_time",
    )

    def __init__(
        self,
        plan: ListenerPlan,
        method: str,
        target: str,
        path: str,
        authority: str,
        headers: dict[str, str],
        raw_headers: list[tuple[bytes, bytes]],
        start: float,
        source_ip: str = "",
        source_port: int = 0,
        principal: str | None = None,
        tls: bool = False,
        http11: bool = True,
        keep_alive: bool = True,
        upgrade: bool = False,
        bytes_in: int = 0,
    ) -> None:
        # Everything the listener knows is passed in (one store per slot, no default
        # overwritten right after): this runs once per request.
        self.plan = plan
        self.method = method
        self.target = target
        self.path = path
        self.authority = authority
        self.headers = headers
        self.raw_headers = raw_headers
        self.start = start
        self.attrs: dict[str, Any] = {}
        self.source_ip = source_ip
        self.source_port = source_port
        self.principal = principal
        self.tls = tls
        self.listener_kind = plan.kind
        self.listener_port = plan.port
        self.http11 = http11
        self.keep_alive = keep_alive
        self.upgrade = upgrade
        self.expect_continue = False
        self.chunked = False
        self.content_length = 0
        # request body: buffered until an upstream takes it, then streamed
        self.body_buffer: list[bytes] | None = []
        self.body_size = 0
        self.body_done = False
        self.forward: Any = None
        # response side and telemetry
        self.status = 0
        self.flags = "-"
        self.bytes_in = bytes_in
        self.bytes_out = 0
        self.response_started = False
        self.route_name = ""
        self.cluster_name = ""
        self.upstream_host = ""
        self.upstream_time = -1.0
        self.label_index = plan.default_label
        self.request_id = ""
        self.span: Any = None  # trace.SpanIds when this hop reports spans and is sampled
        # gRPC (an HTTP/2 stream, or HTTP/1.1 with a gRPC content type: listener.py):
        # `grpc` - the request is a gRPC call (content-type application/grpc);
        # `grpc_status` - the call's status once it ended (core/grpc.final_status: the
        # trailers', else the head's, else the HTTP status mapped; None: no response)
        self.grpc = False
        self.grpc_status: int | None = None

    def end(self, now: float, messages: tuple[int, int] | None = None) -> None:
        """The exchange is over (answered, reset or abandoned): count it, log it, finish
        its trace span, then break the exchange <-> forward <-> attempt cycle so that
        refcounting frees them, not the cyclic GC. The one ending both the HTTP/1.1
        listener and the HTTP/2 server call, compiled with this class (native call from
        the listener). `now`: the loop's clock when the response ended; `messages`: a
        gRPC call's (request, response) messages not reported yet, given only when
        metrics are on. What runs is fixed per snapshot: `ListenerPlan.enders` (metrics,
        access log, span: those that are on), or for a gRPC call its own counter and
        `ListenerPlan.after_metrics`."""
        plan = self.plan
        if messages is None:
            for ender in plan.enders:
                ender(self, now)
        else:  # a gRPC call (HTTP/2): keyed by its status too, and its message counts
            plan.record_grpc(self, now, messages[0], messages[1])
            for ender in plan.after_metrics:
                ender(self, now)
        fwd = self.forward
        if fwd is not None and fwd.finished:
            self.forward = None
            fwd.attempt = None

    def add_flag(self, flag: str) -> None:
        """Record an Envoy response flag (comma-joined like Envoy's %RESPONSE_FLAGS%)."""
        self.flags = flag if self.flags == "-" else self.flags + "," + flag
