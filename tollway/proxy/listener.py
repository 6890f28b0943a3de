"""The downstream side: one asyncio Protocol per client connection, fed by httptools.

Requests are parsed in Protocol callbacks and handed to the chain synchronously (no task
per request). Pipelined requests are answered strictly in order: only the head of the
queue is dispatched, the rest wait (and reading pauses when too many wait). Bodies stream
in both directions with backpressure through pause/resume_reading. Limits (431, 408, idle
timeout) are enforced here; llhttp refuses the smuggling shapes (400, connection closed).
A failure inside one connection is answered or closes that connection only.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any, Final

import httptools

from tollway.proxy import origdst
from tollway.proxy.chain.build import tls_module
from tollway.proxy.chain.stream import Exchange
from tollway.proxy.h2 import headers as hh
from tollway.proxy.h2.grpccall import GrpcCall, for_request
from tollway.proxy.h2.preface import ALPN_H2, PREFACE, after_preface
from tollway.proxy.http1 import response, write
from tollway.proxy.http1.parse import Limits, split_absolute

if TYPE_CHECKING:
    from tollway.proxy.chain.build import ListenerPlan
    from tollway.proxy.core.headerops import ResponseOps
    from tollway.proxy.h2.server import H2Server

log = logging.getLogger("tollway.proxy")

_METHODS: dict[bytes, str] = {
    m.encode(): m
    for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
}
# Lowercase str per header name as sent; bounded (cleared when full) so that a client
# sending ever new names cannot grow it.
_NAMES: dict[bytes, str] = {}
_NAMES_MAX = 1024


def _name(raw: bytes) -> str:
    key = raw.decode("latin-1").lower()
    if len(_NAMES) >= _NAMES_MAX:
        _NAMES.clear()
    if len(raw) <= 64:
        _NAMES[raw] = key
    return key


_OWS: Final = (32, 9)  # SP, HTAB as byte values

# reasons for pausing reading (a bit each)
_P_BODY = 1  # the upstream cannot take more request body yet
_P_QUEUE = 2  # too many pipelined requests wait
_P_ERROR = 4  # a protocol error waits for the active response to finish
_P_TUNNEL = 8

# response body framing towards this client (see http1/response.py)
_PASS = response.PASS
_CHUNK = response.CHUNK
_RAW_CLOSE = response.RAW_CLOSE
_NONE = response.NONE
_NO_BODY_STATUS = response.NO_BODY_STATUS


class ListenerRuntime:
    """A bound listener: the plan in force and the connections it serves."""

    def __init__(self, name: str, plan: ListenerPlan, limits: Limits) -> None:
        self.name = name
        self.plan = plan
        self.limits = limits
        # HTTP/1.1 connections, and those handed to HTTP/2 (counted as the same connection)
        self.connections: set[Downstream | H2Server] = set()
        self.server: Any = None
        self.task: asyncio.Task[Any] | None = None
        self.address: tuple[str, int] = ("", 0)
        self.accepted = 0
        self.protocol_errors = 0
        self.write_pauses = 0  # times a slow client paused its upstream (backpressure)
        # The proxy is going away (ProxyServer.discourage): still accepting and serving,
        # but every request is answered with `connection: close`, so clients move their
        # traffic off this proxy before it stops listening.
        self.draining = False

    def factory(self) -> Downstream:
        return Downstream(self)

    def discourage(self) -> None:
        """Drain's first phase: keep-alive off for every request from now on, including
        the last one each open connection already has in progress (see `draining`)."""
        self.draining = True
        for conn in list(self.connections):
            conn.discourage()

    def sweep(self, now: float) -> None:
        """Header (408) and idle keep-alive timeouts, checked about once a second."""
        limits = self.limits
        for conn in list(self.connections):
            conn.check_timeouts(now, limits)


class Downstream(asyncio.Protocol):
    """One client connection (see module doc); implements chain.downstream.Downstream."""

    __slots__ = (
        "active",
        "cert_hash",
        "closing",
        "head_since",
        "head_size",
        "idle_since",
        "in_head",
        "loop",
        "mode",
        "orig_dst",
        "orig_port",
        "out",
        "parser",
        "paused",
        "peer",
        "peer_base",
        "peer_plan",
        "pending_error",
        "principal",
        "queue",
        "raw",
        "reparse",
        "runtime",
        "rx",
        "switched",
        "tls",
        "transport",
        "tunnel",
        "upgrade_buf",
        "url",
    )

    def __init__(self, runtime: ListenerRuntime) -> None:
        self.runtime = runtime
        self.loop = runtime.plan.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer: tuple[str, int] = ("", 0)
        self.principal: str | None = None
        self.cert_hash = ""
        # mTLS: the plan in force and its copy labelled with this peer (`peer_view`)
        self.peer_base: ListenerPlan | None = None
        self.peer_plan: ListenerPlan | None = None
        self.tls = False
        self.active: Exchange | None = None
        self.rx: Exchange | None = None
        self.queue: deque[Exchange] = deque()
        self.url = b""
        self.raw: list[tuple[bytes, bytes]] = []
        self.head_size = 0
        self.in_head = False
        self.head_since = 0.0
        self.idle_since = 0.0
        self.paused = 0
        self.pending_error: tuple[int, str] | None = None
        self.closing = False
        self.tunnel: Any = None
        self.upgrade_buf: list[bytes] | None = None
        # An `Upgrade: h2c` request served as HTTP/1.1: its head without the upgrade
        # headers, parsed again by a fresh parser (see _upgrade_allowed)
        self.reparse: bytes | None = None
        self.orig_dst = ""  # "IP:PORT" the app dialled, when capture redirected it here
        self.orig_port = 0
        self.switched: H2Server | None = None  # this connection turned HTTP/2
        self.out: list[bytes] = []  # response bytes of the current upstream read
        self.mode = _PASS  # how the active response's body is framed to this client

    # ============================================================ asyncio
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = (str(peer[0]), int(peer[1]))
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.tls = True
            self.principal, self.cert_hash = _peer_identity(ssl_object)
        plan = self.runtime.plan
        if plan.kind == "outbound" or plan.by_port is not None:  # once per connection
            dst = origdst.original_destination(transport.get_extra_info("socket"))
            if dst is not None:
                self.orig_dst = f"{dst[0]}:{dst[1]}"
                self.orig_port = dst[1]
        self.idle_since = self.loop.time()
        self.runtime.connections.add(self)
        self.runtime.accepted += 1
        if ssl_object is not None and ssl_object.selected_alpn_protocol() in ALPN_H2:
            self._to_h2().start(b"")  # h2 by ALPN (once per connection)

    def peer_view(self, plan: ListenerPlan) -> ListenerPlan:
        """`plan` as this mTLS peer's requests see it (ListenerPlan.for_peer): looked up
        once per connection and snapshot, so the metric labels naming the peer cost no
        request anything."""
        if plan is not self.peer_base or self.peer_plan is None:
            self.peer_base = plan
            self.peer_plan = plan.for_peer(self.principal or "")
        return self.peer_plan

    def _to_h2(self) -> H2Server:
        """Hand this connection to an HTTP/2 server protocol (once, before any request
        of its own is in flight); the listener counts it as one connection still.
        The HTTP/2 server (and the `h2` library) is imported here, by the first HTTP/2
        connection: a sidecar whose clients all speak HTTP/1.1 never loads it."""
        from tollway.proxy.h2.server import H2Server

        server = H2Server(self.runtime, self.transport, self.peer, self.principal,
                          self.cert_hash, self.tls, self.orig_dst, self.orig_port)
        self.switched = server
        self.closing = True
        self.runtime.connections.discard(self)
        self.runtime.connections.add(server)
        if self.transport is not None:
            self.transport.set_protocol(server)
        return server

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.closing = True
        self.runtime.connections.discard(self)
        if self.tunnel is not None:
            tunnel, self.tunnel = self.tunnel, None
            tunnel.tunnel = None
            tunnel.close()
        active = self.active
        self.active = None
        if active is not None:
            if active.forward is not None:
                active.forward.abort()
            if not active.response_started or active.status == 0:
                active.status = 0
            self._record(active)
        self.queue.clear()
        self.rx = None

    def pause_writing(self) -> None:
        self.runtime.write_pauses += 1
        active = self.active
        if active is not None and active.forward is not None:
            active.forward.pause_upstream(True)
        elif self.tunnel is not None and self.tunnel.transport is not None:
            self.tunnel.transport.pause_reading()

    def resume_writing(self) -> None:
        active = self.active
        if active is not None and active.forward is not None:
            active.forward.pause_upstream(False)
        elif self.tunnel is not None and self.tunnel.transport is not None:
            self.tunnel.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.write(data)
            return
        if self.upgrade_buf is not None:
            self.upgrade_buf.append(data)
            return
        if self.closing or self.pending_error is not None:
            return
        while True:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade as exc:
                rest = data[int(exc.args[0]) :]
                if self.switched is not None:  # `Upgrade: h2c` accepted: the rest is HTTP/2
                    if rest:
                        self.switched.data_received(rest)
                    return
                head = self.reparse
                if head is None:
                    self.upgrade_buf = [rest]
                    return
                # not upgraded: the same request without its upgrade headers, then its body
                # and what follows, to a fresh parser (it frames the body as for any other;
                # a loop, not a call: any number of such requests may be pipelined)
                self.reparse = None
                self.parser = httptools.HttpRequestParser(self)
                data = head + rest
                if self.closing or self.pending_error is not None:
                    return
                continue
            except httptools.HttpParserError as exc:
                if self.url == b"*" and self.active is None and self.rx is None:
                    after = after_preface(data)  # llhttp stops at an HTTP/2 connection preface
                    if after is not None:
                        self._to_h2().start(PREFACE + after)
                        return
                self.runtime.protocol_errors += 1
                self._protocol_error(400, f"bad request: {exc}")
                return
            break
        if self.in_head and self.head_size + len(self.url) > self.runtime.limits.max_head_bytes:
            self.runtime.protocol_errors += 1
            self._protocol_error(431, "request header fields too large")

    # ============================================================ httptools
    def on_message_begin(self) -> None:
        self.url = b""
        self.raw = []
        self.head_size = 0
        self.in_head = True
        self.head_since = self.loop.time()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        # llhttp drops the whitespace before a value, not after it (RFC 9110 5.5: OWS
        # around a value is not part of it): what policies match and what is forwarded
        # must be the same trimmed value.
        self.head_size += len(name) + len(value) + 4
        if value and value[-1] in _OWS:  # rare: strip only when there is something to strip
            value = value.rstrip(b" \t")
        self.raw.append((name, value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        limits = self.runtime.limits
        size = self.head_size + len(self.url)
        if size > limits.max_head_bytes or len(self.raw) > limits.max_headers:
            self.runtime.protocol_errors += 1
            self._protocol_error(431, "request header fields too large")
            return
        ex = self._exchange()
        if ex is None:
            return
        self.rx = ex
        if self.active is None:
            self.active = ex
            self._dispatch(ex)
        else:
            self.queue.append(ex)
            if len(self.queue) >= limits.max_pipelined:
                self._pause(_P_QUEUE)

    def on_body(self, body: bytes) -> None:
        ex = self.rx
        if ex is None:
            return
        ex.bytes_in += len(body)
        if ex.grpc:
            _call(ex).requests.feed(body)
        fwd = ex.forward
        if fwd is not None:
            fwd.body(body)
        elif ex.body_buffer is not None:
            ex.body_buffer.append(body)
            ex.body_size += len(body)
            if ex.body_size > 65536:
                self._pause(_P_BODY)

    def on_message_complete(self) -> None:
        ex = self.rx
        if ex is None:
            return
        self.rx = None
        ex.body_done = True
        fwd = ex.forward
        if fwd is not None:
            fwd.body_end()

    # ============================================================ requests
    def _exchange(self) -> Exchange | None:
        parser = self.parser
        plan = self.runtime.plan
        if plan.by_port is not None:  # a captured inbound: the chain of the dialled port
            plan = plan.for_port(self.orig_port)
        if self.principal is not None:  # mTLS: the plan labelled with this peer
            plan = self.peer_view(plan)
        raw = self.raw
        url = self.url
        target = url.decode("latin-1")
        # header_view (parse.py) inlined, with lowercase names memoised: one dict lookup
        # per header instead of a decode and a lower()
        headers: dict[str, str] = {}
        names = _NAMES
        for name, value in raw:
            key = names.get(name)
            if key is None:
                key = _name(name)
            val = value.decode("latin-1")
            if key in headers:
                if key == "host":  # joined, it would route one way and match another
                    self._protocol_error(400, "bad request: more than one Host header")
                    return None
                headers[key] = headers[key] + "," + val
            else:
                headers[key] = val
        if target.startswith("/"):
            authority = headers.get("host", "").lower()
            path = target
        else:
            absolute = split_absolute(target)
            if absolute is not None:
                authority, path = absolute
            else:
                authority = headers.get("host", "").lower()
                path = target
        # Normalized once, before any filter, routing or forwarding (Envoy's order): the
        # policy, the route and the app see the same path. Already-normal paths return as is.
        norm = plan.paths  # PathNormalizer.normalize's first test, inlined (hot path)
        if norm.suspect(path) is not None or "/." in path or (norm.merge and "//" in path):
            normal = norm.reference(path)
            if normal is None:
                self._protocol_error(400, "bad request: the path cannot be normalized")
                return None
            path = normal
        keep_alive = parser.should_keep_alive()
        # llhttp keeps an HTTP/1.0 (or 0.9) connection alive only when a Connection header
        # asks for it, and refuses versions other than 0.9, 1.0, 1.1 and 2.0: kept alive
        # without a Connection header means 1.1, and the version string need not be built.
        http11 = (keep_alive and "connection" not in headers) or (
            parser.get_http_version() == "1.1"
        )
        if http11 and "host" not in headers:
            self._protocol_error(400, "missing Host header")
            return None
        if self.runtime.draining:  # answered with `connection: close` (ListenerRuntime)
            keep_alive = False
        if not authority and self.orig_dst:
            # a captured HTTP/1.0 request without Host: the address the app dialled
            # decides, as Envoy's original_dst listener filter makes it the local address
            authority = self.orig_dst
        method = parser.get_method()
        upgrade: bool = parser.should_upgrade()
        if upgrade:
            allowed = self._upgrade_allowed(plan, method, headers, raw)
            if allowed is None:
                return None
            upgrade = allowed
        peer = self.peer
        ex = Exchange(
            plan,
            _METHODS.get(method) or method.decode("latin-1"),
            target,
            path,
            authority,
            headers,
            raw,
            self.head_since,
            peer[0],
            peer[1],
            self.principal,
            self.tls,
            http11,
            keep_alive,
            upgrade,
            self.head_size + len(url) + 14,
        )
        if self.cert_hash:
            ex.attrs["peer_cert_hash"] = self.cert_hash
        if self.orig_dst:
            ex.attrs["original_dst"] = self.orig_dst
        if "transfer-encoding" in headers:
            ex.chunked = True
        else:
            cl = headers.get("content-length")
            if cl:
                ex.content_length = int(cl)
        ctype = headers.get("content-type")
        if ctype is not None and ctype.startswith("application/grpc"):
            _grpc_over_http1(ex, ctype, headers)
        expect = headers.get("expect")
        if expect is not None:
            if expect.lower() != "100-continue":
                self._protocol_error(417, "unsupported Expect")
                return None
            ex.expect_continue = True
        return ex

    def _upgrade_allowed(
        self, plan: ListenerPlan, method: bytes, headers: dict[str, str],
        raw: list[tuple[bytes, bytes]],
    ) -> bool | None:
        """Is this upgrade tunnelled? Only the listener's upgrade types are (Istio:
        websocket), as Envoy's `upgrade_configs`. A bodiless `h2c` upgrade switches to
        HTTP/2; any other is served as a plain request without its upgrade headers, as
        Envoy's HTTP/1 codec serves all of them (`reparse`); any other type, and
        CONNECT, is answered 403 and the connection closed (Envoy's `upgrade_failed`: its
        payload could hide a smuggled request). None: answered here."""
        kind = "connect" if method == b"CONNECT" else headers.get("upgrade", "").lower()
        if kind in plan.upgrade_types:
            return True
        if kind != "h2c":
            self.runtime.protocol_errors += 1
            self._protocol_error(403, f"upgrade to {kind or 'nothing'!r} is not allowed here")
            return None
        settings = headers.get("http2-settings")
        _strip_h2c(headers, raw)
        if (settings is not None and not self.tls and self.active is None and not self.queue
                and "transfer-encoding" not in headers
                and headers.get("content-length", "0") == "0"):
            # RFC 9113 3.2 (7540): a bodiless request may switch; it becomes stream 1.
            self._to_h2().start_upgraded(settings, _h2c_fields(
                method, self.url, headers, raw))
            return None
        # With a body (curl --http2 -d, chunked or not), over TLS or behind another request,
        # the upgrade is ignored and the request served as HTTP/1.1, as Envoy's HTTP/1
        # codec serves every h2c upgrade. llhttp has already stopped at the end of the head
        # (an upgrade has no body to it): the head is parsed again without the upgrade
        # headers by a fresh parser, which frames the body (Content-Length or chunked) and
        # any pipelined request after it as for any other request. No exchange yet.
        version = self.parser.get_http_version().encode("latin-1")
        self.reparse = b"".join(
            [method, b" ", self.url, b" HTTP/", version, b"\r\n",
             *(b"%s: %s\r\n" % field for field in raw), b"\r\n"])
        return None

    def _dispatch(self, ex: Exchange) -> None:
        try:
            for f in ex.plan.filters:
                reply = f.on_request(ex)
                if reply is not None:
                    self.local_reply(ex, reply.status, reply.flag, reply.body, reply.headers)
                    return
            if ex.expect_continue and not ex.body_done and self.transport is not None:
                self.transport.write(write.CONTINUE_100)
            ex.plan.router.handle(ex, self)
        except Exception:  # one bad request must never take the listener down
            log.exception("internal error handling %s %s", ex.method, ex.path)
            if ex.forward is not None:
                ex.forward.abort()
            if not ex.response_started and self.active is ex:
                self.local_reply(ex, 500, "", "internal error")
            else:
                self.reset(ex)

    # ============================================================ responses
    def write(self, data: bytes) -> None:
        tr = self.transport
        if tr is not None:
            tr.write(data)

    def alive_for(self, ex: Exchange) -> bool:
        return self.transport is not None and self.active is ex

    def local_reply(
        self,
        ex: Exchange,
        status: int,
        flag: str,
        body: str,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """Answer `ex` from the proxy itself (it must be the active exchange)."""
        if ex is not self.active:
            return
        if ex.response_started:
            self.reset(ex)
            return
        if flag:
            ex.add_flag(flag)
        ex.status = status
        ex.response_started = True
        receiving = self.rx is ex
        if ex.grpc:  # to a gRPC caller, a trailers-only gRPC answer (as over HTTP/2)
            data = _grpc_local_reply(ex, status, body, headers,
                                     close=not ex.keep_alive or receiving)
            ex.bytes_out += len(data)
            self.write(data)
            self.response_done(ex)
            return
        data = write.local_reply(
            status,
            body.encode(),
            close=not ex.keep_alive or receiving,
            head_only=ex.method == "HEAD",
            headers=headers,
        )
        ex.bytes_out += len(data)
        self.write(data)
        self.response_done(ex)

    def response_head(
        self, ex: Exchange, status: int, block: bytes, ops: ResponseOps | None
    ) -> None:
        """The upstream's head for the active exchange, re-framed for this client and
        queued in `out` (written with the body bytes of the same read: one syscall)."""
        if status == 101:
            self.mode = _NONE
            head = block + b"\r\n"
        else:
            found, cut, length_framed = response.analyse(block)
            # response.mode_for, inlined
            if ex.method == "HEAD" or status in _NO_BODY_STATUS or status < 200:
                mode = _NONE
            elif length_framed:
                mode = _PASS
            else:
                mode = _CHUNK if ex.http11 else _RAW_CLOSE
            self.mode = mode
            if mode == _RAW_CLOSE or ex.upgrade:  # a refused upgrade ends the connection
                ex.keep_alive = False
            tail = b"\r\n" if ex.keep_alive else b"connection: close\r\n\r\n"
            if ex.grpc:
                _call(ex).head(_grpc_fields(block))
            if ops is None and mode in (_PASS, _NONE):
                head = cut + tail  # what head_bytes gives here: the upstream's head, hop cut
            else:
                head = response.head_bytes(status, block, found, mode, tail, ops, cut)
        ex.bytes_out += len(head)
        self.out.append(head)

    def response_body(self, data: bytes) -> None:
        active = self.active
        if active is not None and active.grpc:
            _call(active).responses.feed(data)
        if self.mode == _CHUNK:
            if not data:
                return
            data = write.chunk(data)
        if active is not None:
            active.bytes_out += len(data)
        self.out.append(data)

    def flush(self) -> None:
        """End of one upstream read: write what it produced in one go."""
        out = self.out
        if out:
            tr = self.transport
            if tr is not None:
                tr.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()

    def response_end(self, ex: Exchange) -> None:
        """The response to the active exchange is complete: its last bytes, then the next
        pipelined request, or close."""
        out = self.out
        if self.mode == _CHUNK:
            ex.bytes_out += 5
            out.append(write.LAST_CHUNK)
        if out:
            tr = self.transport
            if tr is not None:
                tr.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()
        if ex is not self.active:
            return
        self.active = None
        self.idle_since = now = self.loop.time()
        if ex.grpc:
            _end_grpc(ex, now)
        else:
            ex.end(now)
        if ex.upgrade and self.upgrade_buf is not None and self.tunnel is None:
            self._close()
            return
        if not ex.keep_alive or self.rx is ex:
            # a response that ends before its request did: the connection cannot be reused
            self._close()
            return
        if self.pending_error is not None:
            status, text = self.pending_error
            self.write(write.local_reply(status, text.encode(), close=True))
            self._close()
            return
        if self.queue:
            nxt = self.queue.popleft()
            self.active = nxt
            if self.paused & _P_QUEUE and len(self.queue) < self.runtime.limits.max_pipelined // 2:
                self._resume(_P_QUEUE)
            self._dispatch(nxt)

    def response_trailers(self, fields: list[tuple[bytes, bytes]]) -> None:
        """Trailers of an HTTP/2 upstream: not relayed to an HTTP/1.1 client (as Envoy's
        HTTP/1 codec without trailer encoding); a gRPC call's status is read from them."""
        active = self.active
        if active is not None and active.grpc:
            _call(active).trailers(fields)

    def ends_at_close(self, received: bool) -> bool:
        return self.mode == _RAW_CLOSE or (self.mode == _CHUNK and not received)

    def response_done(self, ex: Exchange) -> None:
        """A response written whole by the proxy itself (a local reply): what
        `response_end` does, with no upstream body framing to close."""
        self.mode = _NONE
        self.response_end(ex)

    def reset(self, ex: Exchange) -> None:
        """The response cannot be completed: drop the connection (the client sees a reset)."""
        if self.active is ex:
            self.active = None
            self._record(ex)
        tr = self.transport
        if tr is not None:
            tr.abort()

    def start_tunnel(self, ex: Exchange, conn: Any, rest: bytes) -> None:
        """An upgrade was accepted: splice this connection and the upstream one."""
        if self.transport is None:
            conn.close()
            return
        if rest:
            self.write(rest)
        self.tunnel = conn
        conn.tunnel = self
        buffered = self.upgrade_buf or []
        self.upgrade_buf = None
        for piece in buffered:
            if piece:
                conn.write(piece)
        self.active = None
        self._record(ex)

    def close_tunnel(self) -> None:
        self.tunnel = None
        self._close()

    def pause_reading(self, reason: int = _P_BODY) -> None:
        self._pause(reason)

    def resume_reading(self, reason: int = _P_BODY) -> None:
        self._resume(reason)

    # ============================================================ internals
    def _record(self, ex: Exchange) -> None:
        if ex.grpc:
            _end_grpc(ex, self.loop.time())
        else:
            ex.end(self.loop.time())

    def _pause(self, reason: int) -> None:
        if not self.paused and self.transport is not None:
            self.transport.pause_reading()
        self.paused |= reason

    def _resume(self, reason: int) -> None:
        if not self.paused & reason:
            return
        self.paused &= ~reason
        if not self.paused and self.transport is not None and not self.closing:
            self.transport.resume_reading()

    def _protocol_error(self, status: int, text: str) -> None:
        """Malformed input: answer once (after any response in progress) and close."""
        self.in_head = False
        active = self.active
        if active is not None and self.rx is active:
            # the broken bytes are this request's own body: it cannot be completed
            self.rx = None
            if active.forward is not None:
                active.forward.abort()
            active.flags = "DPE"
            if active.response_started:
                self.reset(active)
                return
            active.status = status
            self.active = None
            self._record(active)
            active = None
        if active is None:
            self.write(write.local_reply(status, text.encode(), close=True))
            self._close()
        else:
            self.pending_error = (status, text)
            self._pause(_P_ERROR)

    def _close(self) -> None:
        self.closing = True
        tr = self.transport
        if tr is not None:
            tr.close()

    def discourage(self) -> None:
        """The listener drains: the last request this connection already has (if its
        response has not started) closes it; later ones do (`_exchange`). An idle
        connection stays open: closing it could cross a request its client is sending
        right now, which the client would see as a reset before any response."""
        ex = self.queue[-1] if self.queue else self.active
        if ex is not None and not ex.response_started:
            ex.keep_alive = False

    def check_timeouts(self, now: float, limits: Limits) -> None:
        if self.transport is None or self.tunnel is not None:
            return
        if self.in_head:
            if now - self.head_since > limits.header_timeout:
                self.in_head = False
                self.runtime.protocol_errors += 1
                self._protocol_error(408, "request timeout")
        elif (
            self.active is None and self.rx is None and now - self.idle_since > limits.idle_timeout
        ):
            self._close()
        elif self.active is not None and self.active.grpc:
            _call(self.active).tick(self.active, now)  # a long call's messages so far


def _grpc_over_http1(ex: Exchange, ctype: str, headers: dict[str, str]) -> None:
    """A gRPC call over HTTP/1.1 (content-type application/grpc, not grpc-web): labelled,
    counted and answered as one, as Envoy and Istio tell gRPC by the request's headers
    (isGrpcRequestHeaders), whatever the protocol. Rare: the test before the call is one
    dict lookup per request."""
    call = for_request(ctype, ex.start)
    if call is None:
        return
    ex.grpc = True
    ex.attrs["grpc_call"] = call
    wanted = headers.get("grpc-timeout")
    if wanted is not None:
        limit = hh.grpc_timeout(wanted)
        if limit is not None:  # Istio: the header bounds the call (no cap)
            ex.attrs["grpc_timeout"] = limit


def _call(ex: Exchange) -> GrpcCall:
    call: GrpcCall = ex.attrs["grpc_call"]
    return call


def _end_grpc(ex: Exchange, now: float) -> None:
    """Exchange.end for a gRPC call: its status (trailers, head, HTTP status) and the
    messages not reported yet, as the HTTP/2 server ends a gRPC stream."""
    call = _call(ex)
    call.finish(ex)
    ex.end(now, call.unreported() if ex.plan.metrics_on else None)


def _grpc_fields(block: bytes) -> list[tuple[bytes, bytes]]:
    """The grpc-status and grpc-message fields of an HTTP/1.1 response head block (a
    trailers-only answer carries them there)."""
    fields = []
    for line in block.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.lower()
        if name == b"grpc-status" or name == b"grpc-message":
            fields.append((name, value.strip(b" \t")))
    return fields


def _grpc_local_reply(ex: Exchange, status: int, body: str,
                      headers: tuple[tuple[str, str], ...], close: bool) -> bytes:
    """The proxy's own answer to a gRPC call over HTTP/1.1: HTTP 200, content-type
    application/grpc, grpc-status mapped from `status` and the text in grpc-message (the
    fields h2/headers makes for a stream), no body."""
    fields, _ = hh.local_reply_fields(status, body.encode(), True, headers)
    _call(ex).head(fields)
    code = int(fields[0][1])
    lines = b"".join(b"%s: %s\r\n" % f for f in fields[1:])
    return b"HTTP/1.1 %d %s\r\n%scontent-length: 0\r\n%s\r\n" % (
        code, write.reason(code), lines, b"connection: close\r\n" if close else b"")


_H2C_TOKENS = frozenset(("upgrade", "http2-settings"))


def _strip_h2c(headers: dict[str, str], raw: list[tuple[bytes, bytes]]) -> None:
    """Remove `Upgrade`, `HTTP2-Settings` and their Connection tokens (Envoy's h2c rule)."""
    headers.pop("upgrade", None)
    headers.pop("http2-settings", None)
    tokens = [t.strip() for t in headers.pop("connection", "").split(",")]
    kept = ", ".join(t for t in tokens if t and t.lower() not in _H2C_TOKENS)
    if kept:
        headers["connection"] = kept
    raw[:] = [
        (n, v) for n, v in raw
        if n.lower() not in (b"upgrade", b"http2-settings", b"connection")
    ]
    if kept:
        raw.append((b"Connection", kept.encode("latin-1")))


def _h2c_fields(
    method: bytes, url: bytes, headers: dict[str, str], raw: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """An upgraded HTTP/1.1 request as the HTTP/2 header list of stream 1."""
    host = headers.get("host", "").encode("latin-1")
    fields = [(b":method", method), (b":scheme", b"http"), (b":authority", host),
              (b":path", url)]
    fields += [(n.lower(), v) for n, v in raw if n.lower() != b"host"]
    return fields


def _peer_identity(ssl_object: Any) -> tuple[str | None, str]:
    """(principal, certificate hash) of a TLS peer: a TLS connection means the TLS module
    is already loaded, so this costs no import."""
    tls = tls_module()
    return tls.peer_principal(ssl_object), tls.peer_cert_hash(ssl_object)
