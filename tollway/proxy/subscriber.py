"""Follow the control plane: apply each pushed snapshot or refuse it (NACK), keep the last.

The wire (docs/contracts.md): `GET /v1/stream?node=NAME` answers newline-delimited JSON
`{"version": V, "config": ProxyConfig}` (blank lines are heartbeats); each is answered with
`POST /v1/ack`. A stream answered 404 means the control plane does not know this proxy
(a VM sidecar, or a control plane that restarted): register with `POST /v1/register`
and connect again.

Why plain HTTP/1.0 over asyncio streams instead of an HTTP client library: a sidecar
imports only what it needs and starts fast, and HTTP/1.0 makes the server send the body
raw until close, so the stream is just lines.

When the control plane goes away the proxy keeps serving its last snapshot and reconnects
with exponential backoff (kit.backoff); on reconnect the control plane resends what the
proxy should have (resync), and a version the proxy already runs is only acknowledged.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import msgspec

from tollway.kit.backoff import Backoff
from tollway.proxy.credential import TokenSource, header
from tollway.snapshot import codec, types

log = logging.getLogger(__name__)

READ_TIMEOUT = 30.0  # the control plane sends a heartbeat line every 10 s
CONNECT_TIMEOUT = 5.0
MAX_LINE = 64 * 1024 * 1024


class Server(Protocol):
    def apply(self, config: types.ProxyConfig) -> Any: ...


class IdentifiedServer(Server, Protocol):
    """A server whose TLS state can be set before its first snapshot (VM mode)."""

    tls_state: Any


class _Push(msgspec.Struct):
    version: str
    config: types.ProxyConfig


class _VersionOnly(msgspec.Struct):
    version: str = ""


class StreamRefused(Exception):
    """The control plane answered the stream request with an HTTP status other than 200."""

    def __init__(self, status: int) -> None:
        super().__init__(f"control plane answered {status}")
        self.status = status


_push_decoder = msgspec.json.Decoder(_Push)
_version_decoder = msgspec.json.Decoder(_VersionOnly)


async def follow(
    server: Server,
    url: str,
    node: types.Node,
    *,
    admin: str,
    inbound: str | None,
    ports: Mapping[str, int] | None = None,
    address: str | None = None,
    backoff: Backoff | None = None,
    token: TokenSource | None = None,
) -> None:
    """Keep `server` current with the control plane at `url`; runs until cancelled.

    `token` is this workload's credential, shown on every call (the control plane
    answers 401 without it).
    """
    backoff = backoff or Backoff(base=0.05, cap=2.0)
    registration = _registration(node, admin, inbound, ports, address)
    while True:
        try:
            await _stream(server, url, node.name, backoff, token)
        except StreamRefused as exc:
            if exc.status == 404:
                status = await _post(url, "/v1/register", registration, token)
                if status == 200:
                    continue
                log.warning("control plane at %s refused to register %s (%d)",
                            url, node.name, status)
            else:
                log.warning("control plane at %s refused the stream: %s", url, exc)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            log.info("control plane at %s unreachable (%s); keeping the last snapshot", url, exc)
        except Exception:  # a bug while applying: say it, and keep following (never go deaf)
            log.exception("following the control plane at %s failed; reconnecting", url)
        await asyncio.sleep(backoff.next_delay())


def _registration(node: types.Node, admin: str, inbound: str | None,
                  ports: Mapping[str, int] | None, address: str | None) -> dict[str, Any]:
    """The `POST /v1/register` body (docs/contracts.md)."""
    return {
        "node": msgspec.to_builtins(node),
        "admin": admin,
        "inbound": inbound or "",
        "address": address or (inbound.rpartition(":")[0] if inbound else "127.0.0.1"),
        "ports": dict(ports or {}),
    }


async def join(
    server: IdentifiedServer,
    url: str,
    node: types.Node,
    *,
    admin: str,
    inbound: str | None,
    ports: Mapping[str, int] | None = None,
    address: str | None = None,
    backoff: Backoff | None = None,
    token: TokenSource | None = None,
) -> None:
    """VM mode: register, get the workload certificate, then `follow` until cancelled.

    A proxy `tollway up` did not start must be in the control plane's book before the CA
    signs for it (the CA only signs for nodes it knows, and only their own identity), so
    registration comes first; the certificate comes before the first snapshot, so the
    proxy never answers or calls in plaintext where its config says ISTIO_MUTUAL. The
    certificate is renewed at half its lifetime for as long as this runs.
    """
    from tollway.proxy import tls

    retry = Backoff(base=0.1, cap=5.0)
    body = _registration(node, admin, inbound, ports, address)
    while True:
        try:
            status = await _post(url, "/v1/register", body, token)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            status, reason = 0, f"unreachable ({exc})"
        else:
            reason = f"answered {status}"
        if status == 200:
            break
        wait = retry.next_delay()
        log.warning("control plane at %s: registering %s failed: %s; retrying in %.1fs",
                    url, node.name, reason, wait)
        await asyncio.sleep(wait)
    got = await tls.obtain(url, node, token=token)
    renew: asyncio.Task[None] | None = None
    if got is not None:
        server.tls_state, rotator = got
        renew = asyncio.create_task(rotator.run())
    try:
        await follow(server, url, node, admin=admin, inbound=inbound, ports=ports,
                     address=address, backoff=backoff, token=token)
    finally:
        if renew is not None:
            renew.cancel()


class _Acks:
    """ACKs over one keep-alive HTTP/1.1 connection (reopened when it breaks): a push to
    a hundred proxies is then a hundred small writes, not a hundred TCP handshakes."""

    def __init__(self, url: str, token: TokenSource | None = None) -> None:
        self.url = url
        self.token = token
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.path = f"{parts.path.rstrip('/')}/v1/ack"
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def send(self, body: Mapping[str, Any]) -> None:
        data = msgspec.json.encode(body)
        request = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"{header(self.token)}Content-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        ).encode() + data
        for attempt in (0, 1):
            try:
                await self._send_once(request)
                return
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
                self.close()
                if attempt:
                    raise

    async def _send_once(self, request: bytes) -> None:
        if self._conn is None:
            self._conn = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), CONNECT_TIMEOUT)
        reader, writer = self._conn
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CONNECT_TIMEOUT)
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
            if name.strip().lower() == b"connection" and b"close" in value.lower():
                self._conn = None
        await reader.readexactly(length)
        if self._conn is None:
            writer.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn[1].close()
            self._conn = None


async def _stream(server: Server, url: str, name: str, backoff: Backoff,
                  token: TokenSource | None = None) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, limit=MAX_LINE), CONNECT_TIMEOUT
    )
    acks = _Acks(url, token)
    try:
        path = f"{parts.path.rstrip('/')}/v1/stream?node={quote(name)}"
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n{header(token)}\r\n"
                     .encode())
        await writer.drain()
        status = await _read_head(reader)
        if status != 200:
            raise StreamRefused(status)
        while True:
            line = await asyncio.wait_for(reader.readline(), READ_TIMEOUT)
            if not line:
                return  # control plane closed the stream: reconnect
            backoff.reset()
            if line.strip():
                await _handle(server, acks, name, line)
    finally:
        acks.close()
        writer.close()


async def _read_head(reader: asyncio.StreamReader) -> int:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CONNECT_TIMEOUT)
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[1].isdigit():
        raise ValueError(f"not an HTTP response: {head[:80]!r}")
    return int(status_line[1])


async def _handle(server: Server, acks: _Acks, name: str, line: bytes) -> None:
    status, reason = "ACK", ""
    try:
        push = _push_decoder.decode(line)
        version = push.version
        if getattr(server, "version", None) != version:
            outcome = server.apply(push.config)
            if inspect.isawaitable(outcome):
                await outcome
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        version = _version_of(line)
        status, reason = "NACK", f"snapshot does not decode: {exc}"
    except codec.SnapshotError as exc:
        status, reason = "NACK", str(exc)
    await acks.send({"node": name, "version": version, "status": status, "reason": reason})


def _version_of(line: bytes) -> str:
    try:
        return _version_decoder.decode(line).version
    except (msgspec.ValidationError, msgspec.DecodeError):
        return ""


async def _post(url: str, path: str, body: Mapping[str, Any],
                token: TokenSource | None = None) -> int:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    data = msgspec.json.encode(body)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
    try:
        writer.write(
            f"POST {parts.path.rstrip('/')}{path} HTTP/1.0\r\nHost: {host}:{port}\r\n"
            f"{header(token)}Content-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n".encode()
            + data
        )
        await writer.drain()
        return await _read_head(reader)
    finally:
        writer.close()
