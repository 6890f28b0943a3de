"""Downstream: what the router's Forward and Attempt need from the client side of a request.

`listener.Downstream` (one HTTP/1.1 client connection) is the implementation today. An
HTTP/2 stream is the next one: the chain, the router, `Forward` and `Attempt` only ever
call what this protocol names, so a stream plugs in without touching them. The seam is
at the level of response *events*, not bytes, because each client protocol frames a
response its own way:

- `response_head(ex, status, block, ops)`: the upstream answered. `block` is the
  upstream's head as an HTTP/1.1 block (status line and header lines, each ending in
  CRLF, validated by llhttp; the hop-by-hop lines still in it) and `ops` the response
  header operations compiled for the route (`headerops.ResponseOps`, or None). An
  HTTP/1.1 client gets the block passed through with hop-by-hop lines cut (rebuilt only
  when ops apply or the framing changes); an HTTP/2 stream turns it into a header list.
- `response_body(data)` / `flush()`: body bytes as the upstream sent them (unframed),
  then "one upstream read is over": a connection writes what the read produced in one
  syscall. `out` is the list of bytes produced and not yet written: the upstream
  connection calls `flush()` only when it is non-empty (no call per read otherwise).
- `response_trailers(fields)`: an HTTP/2 upstream's trailers (gRPC's `grpc-status`),
  before `response_end`; an HTTP/2 stream sends them, HTTP/1.1 drops them (as Envoy's
  HTTP/1 codec does without trailer encoding).
- `ends_at_close(received)`: the upstream closed mid-response; True when that ends the
  response normally (a body delimited by the close, relayed to an HTTP/1.0 client),
  False when the client must see a reset.
- `response_end(ex)`: the response is complete (for HTTP/1.1: the last chunk, then the
  next pipelined request; for HTTP/2: END_STREAM).
- `local_reply`, `reset`, `start_tunnel` (the upstream accepted an upgrade: splice the
  two byte streams; an HTTP/2 stream would answer extended CONNECT instead),
  `pause_reading` / `resume_reading` (request-body backpressure from the upstream),
  `alive_for` (is `ex` still the request this downstream is answering).

Once a finished request is recorded, the downstream drops `ex.forward` and the Forward's
`attempt`: the request's objects point at each other, and breaking the links lets
refcounting free them at once instead of the cyclic GC (which, left to it, cost the
bench 10% more instructions per request).

Typing only: nothing imports this module at run time.
"""

from __future__ import annotations

from collections.abc import Sized
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from tollway.proxy.chain.stream import Exchange
    from tollway.proxy.core.headerops import ResponseOps


class Downstream(Protocol):
    """The client side of one exchange (see module doc)."""

    @property
    def out(self) -> Sized:
        """Response bytes produced and not yet written (non-empty: `flush()` has work)."""
        ...

    def response_head(
        self, ex: Exchange, status: int, block: bytes, ops: ResponseOps | None
    ) -> None: ...

    def response_body(self, data: bytes) -> None: ...

    def response_trailers(self, fields: list[tuple[bytes, bytes]]) -> None: ...

    def flush(self) -> None: ...

    def response_end(self, ex: Exchange) -> None: ...

    def ends_at_close(self, received: bool) -> bool: ...

    def local_reply(
        self,
        ex: Exchange,
        status: int,
        flag: str,
        body: str,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None: ...

    def reset(self, ex: Exchange) -> None: ...

    def start_tunnel(self, ex: Exchange, conn: Any, rest: bytes) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def alive_for(self, ex: Exchange) -> bool: ...
