"""A pipelined keep-alive connection for fire-and-forget requests (mirrored copies).

Requests are written back to back without waiting for their responses (HTTP/1.1
pipelining: a server answers in order, RFC 9112 §9.3), and every request queued during
one event-loop iteration goes out in one write. The responses are parsed only to count
them. At saturation one write and one read then carry a batch of copies instead of one
each: on loopback a write and a read cost more than all of a copy's Python, so this is
what keeps 100% mirroring cheap. Only for requests whose response frames itself (not
HEAD, which has no body to a Content-Length; not an upgrade): the caller sends those on
an ordinary pooled connection.

The connection takes a slot of the cluster's connection limit like any other (it sits in
the pool's `open` set) and honours maxRequestsPerConnection. A response that ends the
connection (`Connection: close`, or a close-delimited body) means the server read nothing
after that request: the requests written behind it are handed back to the owner to be
sent again, once per such close, rather than lost.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

import httptools

from tollway.proxy.upstream import connect

if TYPE_CHECKING:
    from tollway.proxy.upstream.pool import EndpointPool


class PipeOwner(Protocol):
    """Who learns the fate of each request sent on a pipeline."""

    def pipe_done(self, ok: bool, n: int = 1) -> None:
        """`n` requests got their responses (True) or never will (False)."""

    def pipe_resend(self, pool: EndpointPool, data: bytes) -> None:
        """A request the server provably did not read: send it again (still in flight)."""


class PipelinedConnection(asyncio.Protocol):
    """One connection to one endpoint carrying requests back to back (see module doc)."""

    __slots__ = (
        "accepting",
        "answered",
        "batch",
        "ending",
        "flush_scheduled",
        "owner",
        "parser",
        "pool",
        "retiring",
        "sent",
        "transport",
        "unanswered",
    )

    def __init__(self, pool: EndpointPool, owner: PipeOwner) -> None:
        self.pool = pool
        self.owner = owner
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.accepting = True  # takes new requests
        self.unanswered: deque[bytes] = deque()  # written or batched, no response yet
        self.batch: list[bytes] = []  # not written yet
        self.flush_scheduled = False
        self.ending = False  # a response said the server closes after it
        self.retiring = False  # close once every request is answered
        self.sent = 0
        self.answered = 0  # responses complete in the read being parsed, not yet reported

    # -------------------------------------------------------------- driving
    def open(self) -> None:
        """Connect (the caller holds a connection slot of the cluster's limits)."""
        self.pool.connecting += 1
        self.pool.loop.create_task(self._connect())

    async def _connect(self) -> None:
        pool = self.pool
        try:
            await connect.open_connection(
                pool.loop,
                lambda: self,
                pool.address,
                pool.port,
                ssl_context=pool.ssl_context,
                server_hostname=pool.server_hostname,
                timeout=pool.connect_timeout,
            )
        except (TimeoutError, OSError, ssl.SSLError):
            pool.connecting -= 1
            self.accepting = False
            if pool.pipe is self:
                pool.pipe = None
            pool.cluster.connection_closed()
            self._fail_all()
            return
        pool.connecting -= 1
        if self.transport is None:  # lost before this coroutine resumed: slot back
            pool.cluster.connection_closed()
            return
        pool.created += 1
        pool.open.add(self)  # counted and closed like the others
        if self.batch:
            self.flush()

    def send(self, data: bytes) -> None:
        """Queue one complete request; it is written at the end of this loop iteration."""
        self.unanswered.append(data)
        self.batch.append(data)
        self.sent += 1
        limit = self.pool.max_requests
        if limit and self.sent >= limit:  # maxRequestsPerConnection: the last one
            self.accepting = False
            self.retiring = True
        if self.transport is not None and not self.flush_scheduled:
            self.flush_scheduled = True
            self.pool.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.flush_scheduled = False
        batch = self.batch
        tr = self.transport
        if batch and tr is not None:
            tr.write(batch[0] if len(batch) == 1 else b"".join(batch))
            batch.clear()

    def retire(self) -> None:
        """Take no more requests; close once those in flight are answered."""
        self.accepting = False
        self.retiring = True
        if not self.unanswered:
            self.close()

    def close(self) -> None:
        self.accepting = False
        if self.transport is not None:
            self.transport.close()

    # -------------------------------------------------------------- asyncio
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.accepting = False
        self.transport = None
        pool = self.pool
        if pool.pipe is self:
            pool.pipe = None
        pool.lost(self)
        if self.ending and self.unanswered:
            # the server announced the close: it read nothing after the last answer
            again = list(self.unanswered)
            self.unanswered.clear()
            self.batch.clear()
            for data in again:
                self.owner.pipe_resend(pool, data)
            return
        self._fail_all()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # a 101 ends what this connection can carry
            self.close()
        except httptools.HttpParserError:
            self.close()
        finally:
            if self.answered:  # the owner hears once per read, however many it answered
                n, self.answered = self.answered, 0
                self.owner.pipe_done(True, n)

    # -------------------------------------------------------------- httptools
    # only on_message_complete: httptools skips the callbacks a protocol does not have

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # 100 Continue and the like: the final response follows
            return  # (a 101 raised HttpParserUpgrade before this)
        if not self.unanswered:  # a response to nothing: the stream cannot be trusted
            self.close()
            return
        self.unanswered.popleft()
        if not self.parser.should_keep_alive():
            self.accepting = False
            self.ending = True
        self.answered += 1  # reported when this read is parsed (data_received)
        if not self.unanswered and (self.retiring or self.ending):
            self.close()

    # -------------------------------------------------------------- internals
    def _fail_all(self) -> None:
        n = len(self.unanswered)
        self.unanswered.clear()
        self.batch.clear()
        if n:
            self.owner.pipe_done(False, n)


def pipe_for(pool: EndpointPool, owner: PipeOwner) -> PipelinedConnection | None:
    """The pool's pipeline, opened if needed; None when the cluster's connection limit
    has no slot for a new one."""
    pipe: Any = pool.pipe
    if pipe is not None and pipe.accepting:
        return pipe  # type: ignore[no-any-return]
    if not pool.cluster.limits.try_open_connection():
        return None
    pipe = PipelinedConnection(pool, owner)
    pool.pipe = pipe
    pipe.open()
    return pipe  # type: ignore[no-any-return]
