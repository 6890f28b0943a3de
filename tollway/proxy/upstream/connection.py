"""One keep-alive HTTP/1.1 connection to an upstream endpoint (an asyncio Protocol).

It carries one request at a time (no upstream pipelining, like Envoy) and reports the
response to its current `sink` (the router's per-try Attempt, or a mirror sink) through plain
method calls from httptools callbacks: no task, no await per request. The response head
is captured as the raw block the upstream sent so the common case passes it through
without re-serialising it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol

import httptools

if TYPE_CHECKING:
    from tollway.proxy.upstream.pool import EndpointPool


class ResponseSink(Protocol):
    """Who receives the response of the request in flight on a connection."""

    def on_response_head(
        self, conn: UpstreamConnection, status: int, block: bytes, names: list[bytes]
    ) -> None: ...

    def on_response_body(self, data: bytes) -> None: ...

    def on_response_end(self, conn: UpstreamConnection) -> None: ...

    def on_upstream_lost(self, conn: UpstreamConnection, received: bool) -> None: ...

    def on_upgrade(self, conn: UpstreamConnection, rest: bytes) -> None: ...

    def on_upstream_pause(self, paused: bool) -> None: ...

    def flush(self) -> None: ...

    out: Any  # truthy while flush() has something to write


class UpstreamConnection(asyncio.Protocol):
    """A pooled connection; `alive` turns False for good once it cannot be reused."""

    __slots__ = (
        "alive",
        "head_buf",
        "head_request",
        "in_head",
        "names",
        "parser",
        "pool",
        "read_paused",
        "received",
        "requests",
        "reused",
        "sink",
        "transport",
        "tunnel",
    )

    def __init__(self, pool: EndpointPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.sink: Any = None
        self.alive = True
        self.head_buf = b""
        self.in_head = False
        self.names: list[bytes] = []  # unused: kept for the sink signature
        self.head_request = False
        self.received = False
        self.requests = 0
        self.reused = False
        self.tunnel: Any = None
        self.read_paused = False

    # -------------------------------------------------------------- driving
    def send(self, sink: Any, data: bytes, head_request: bool) -> None:
        """Start a request on this (idle) connection; the response goes to `sink`."""
        self.sink = sink
        self.head_request = head_request
        self.in_head = True
        self.head_buf = b""
        self.received = False
        self.requests += 1
        assert self.transport is not None
        self.transport.write(data)

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def set_reading(self, on: bool) -> None:
        """Backpressure from the downstream: stop / resume reading this connection."""
        tr = self.transport
        if tr is None or on != self.read_paused:
            return
        self.read_paused = not on
        if on:
            tr.resume_reading()
        else:
            tr.pause_reading()

    def detach(self) -> None:
        """The sink gives up on this request: the connection cannot be reused."""
        self.sink = None
        self.close()

    def close(self) -> None:
        self.alive = False
        if self.transport is not None:
            self.transport.close()

    # -------------------------------------------------------------- asyncio
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        self.transport = None
        self.pool.lost(self)
        if self.tunnel is not None:
            tunnel, self.tunnel = self.tunnel, None
            tunnel.close_tunnel()
            return
        sink = self.sink
        if sink is not None:
            self.sink = None
            sink.on_upstream_lost(self, self.received)

    def pause_writing(self) -> None:
        if self.sink is not None:
            self.sink.on_upstream_pause(True)
        elif self.tunnel is not None:
            self.tunnel.pause_reading()

    def resume_writing(self) -> None:
        if self.sink is not None:
            self.sink.on_upstream_pause(False)
        elif self.tunnel is not None:
            self.tunnel.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.write(data)
            return
        if self.sink is None:  # bytes nobody asked for: the connection is unusable
            self.close()
            return
        self.received = True
        if self.in_head:
            self.head_buf += data
        sink = self.sink
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._upgraded(data[int(exc.args[0]) :])
        except httptools.HttpParserError:
            self.close()
        if sink.out:  # bytes of this read not written yet (the end of a response writes)
            sink.flush()

    # -------------------------------------------------------------- httptools
    # no on_header: the raw head block is what the router reads (httptools then skips
    # the per-header callback altogether)

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        buf = self.head_buf
        end = buf.find(b"\r\n\r\n")
        block = buf[: end + 2]
        if 100 <= status < 200 and status != 101:  # interim response: dropped
            self.head_buf = buf[end + 4 :]
            return
        self.in_head = False
        self.head_buf = b""
        sink = self.sink
        if sink is not None:
            sink.on_response_head(self, status, block, self.names)
        if self.head_request and status != 101:  # no body follows a HEAD response
            self.parser = httptools.HttpResponseParser(self)
            self._complete()

    def on_body(self, body: bytes) -> None:
        sink = self.sink
        if sink is not None:
            sink.on_response_body(body)

    def on_message_complete(self) -> None:
        if self.in_head:  # end of an interim response
            return
        parser = self.parser
        if parser.get_status_code() == 101:
            return
        if not parser.should_keep_alive():
            self.alive = False
        # _complete inlined (the per-response path)
        sink = self.sink
        self.sink = None
        if self.read_paused:  # never hand a paused connection back to the pool
            self.set_reading(True)
        self.pool.release(self)
        if sink is not None:
            sink.on_response_end(self)

    # -------------------------------------------------------------- internals
    def _complete(self) -> None:
        sink = self.sink
        self.sink = None
        if self.read_paused:  # never hand a paused connection back to the pool
            self.set_reading(True)
        self.pool.release(self)
        if sink is not None:
            sink.on_response_end(self)

    def _upgraded(self, rest: bytes) -> None:
        sink = self.sink
        self.sink = None
        self.alive = False
        if sink is not None:
            sink.on_upgrade(self, rest)
        else:
            self.close()
