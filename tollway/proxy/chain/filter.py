"""The filter protocol: what every stage of the request chain sees and may answer.

A chain is a tuple of filters built once per snapshot (build.py). For each request the
listener calls `on_request(exchange)` on each filter in order; a filter returns None to let
the request continue, or a `LocalReply` to answer it at once (authz's 403, fault's abort).
The router is the terminal stage and is not a Filter: it owns the upstream IO.

Filters are synchronous and must not block: they read the already-parsed request
(`Exchange`) and decide. Anything they want to tell later stages (the peer principal, a
decision reason) goes in `Exchange.attrs`.

What a filter may read on an `Exchange`:
  method, path (raw target path incl. query), authority (Host, lowercase), headers
  (lowercase name -> value, repeats joined with ","), source_ip, source_port,
  principal (peer SPIFFE ID from mTLS, or None), tls (True when the downstream is TLS),
  listener_kind ("inbound" | "outbound" | "gateway"), listener_port, attrs (dict).
"""

from __future__ import annotations

from typing import Any, Protocol


class LocalReply:
    """Answer the request here with `status`, Envoy response flag `flag` and a small body."""

    __slots__ = ("body", "flag", "headers", "status")

    def __init__(
        self,
        status: int,
        flag: str = "",
        body: str = "",
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.status = status
        self.flag = flag
        self.body = body
        self.headers = headers

    def __repr__(self) -> str:
        return f"LocalReply({self.status}, {self.flag!r}, {self.body!r})"


class Filter(Protocol):
    """One stage of the chain; `name` shows in config_dump and logs."""

    name: str

    def on_request(self, exchange: Any) -> LocalReply | None:
        """Return None to continue, or a LocalReply to answer now."""
        ...
