"""Open a TCP (optionally TLS) connection to an upstream endpoint with a timeout.

The client SSLContext comes from tollway.proxy.tls.client_context (zero-trust part) when
the cluster asks for TLS; with None the connection is plain TCP.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import TypeVar

P = TypeVar("P", bound=asyncio.BaseProtocol)


async def open_connection(
    loop: asyncio.AbstractEventLoop,
    factory: Callable[[], P],
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None,
    server_hostname: str | None,
    timeout: float,
) -> tuple[asyncio.BaseTransport, P]:
    """Connect, or raise OSError / TimeoutError / SSLError (mapped by `describe`)."""
    coro = loop.create_connection(
        factory,
        host,
        port,
        ssl=ssl_context,
        server_hostname=(server_hostname or host) if ssl_context is not None else None,
    )
    return await asyncio.wait_for(coro, timeout)


def describe(exc: BaseException) -> str:
    """A short reason like Envoy's transport failure reason, for the local reply body."""
    if isinstance(exc, asyncio.TimeoutError):
        return "connection timeout"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {getattr(exc, 'reason', None) or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return f"connection failure: {exc.strerror or exc}"  # type: ignore[attr-defined]
