"""Inbound peer authentication: the accept-side gate, and XFCC for the app.

`InboundGate.handle(sock, factory)` takes one accepted socket and decides, before any
HTTP byte is parsed: it peeks the first bytes (PERMISSIVE detection, `core.authn.sniff`),
refuses plaintext under STRICT and TLS under DISABLE, runs the mTLS handshake with a
deadline, and only then hands the connection to the listener's protocol. Every refusal is
one log line naming the peer and the reason (no client certificate, another CA, expired,
not TLS, stalled, revoked) and never an exception escaping the accept loop.

`XfccFilter` (chain/xfcc.py, re-exported here) sets `x-forwarded-client-cert` from the
verified peer, and removes any value a caller sent: the app can trust it because nobody
outside can forge it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections import Counter
from collections.abc import Callable, Collection
from typing import Any

from tollway.proxy import origdst
from tollway.proxy import tls as tlsmod
from tollway.proxy.chain.xfcc import XFCC, XfccFilter, build_xfcc
from tollway.proxy.core import authn
from tollway.snapshot import types

log = logging.getLogger("tollway.proxy.authn")


def describe_handshake_error(exc: BaseException, timeout: float) -> str:
    """OpenSSL's reasons → what an operator should read in the log."""
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return f"TLS handshake did not finish within {timeout:g}s (stalled peer)"
    text = str(exc)
    low = text.lower()
    if "taking longer" in low or "timed out" in low:
        return f"TLS handshake did not finish within {timeout:g}s (stalled peer)"
    table = (
        ("peer_did_not_return_a_certificate", "client presented no certificate (mTLS required)"),
        ("certificate required", "client presented no certificate (mTLS required)"),
        ("certificate has expired", "client certificate has expired"),
        ("unknown ca", "client certificate is not signed by the mesh CA"),
        ("unable to get local issuer", "client certificate is not signed by the mesh CA"),
        ("self-signed certificate", "client certificate is not signed by the mesh CA"),
        ("self signed certificate", "client certificate is not signed by the mesh CA"),
        ("certificate signature failure", "client certificate is not signed by the mesh CA"),
        ("not yet valid", "client certificate is not valid yet"),
        ("wrong_version_number", "not a TLS ClientHello (garbage or plaintext after 0x16)"),
        ("http_request", "not a TLS ClientHello (plaintext HTTP)"),
        ("unexpected_message", "not a TLS ClientHello (malformed handshake)"),
        ("record layer failure", "not a TLS ClientHello (malformed record)"),
        ("length", "not a TLS ClientHello (malformed handshake)"),
        ("decode error", "not a TLS ClientHello (malformed handshake)"),
    )
    for needle, sentence in table:
        if needle in low:
            return sentence
    if isinstance(exc, ConnectionError | EOFError) or "eof" in low:
        return "peer closed the connection during the TLS handshake"
    return f"TLS handshake failed: {text or type(exc).__name__}"


async def peek(loop: asyncio.AbstractEventLoop, sock: socket.socket, want: int,
               timeout: float) -> bytes:
    """Up to `want` bytes of what the peer sent first, left in the socket for TLS/HTTP."""
    deadline = loop.time() + timeout
    seen = b""
    while True:
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(sock.fileno(), _wake, ready)
        try:
            await asyncio.wait_for(ready, max(0.0, deadline - loop.time()))
        finally:
            loop.remove_reader(sock.fileno())
        try:
            data = sock.recv(want, socket.MSG_PEEK)
        except BlockingIOError:
            continue
        if not data or len(data) >= want or authn.sniff(data) != "more":
            return data
        if data == seen:  # a partial header: wait a little for the rest, not busy-spin
            await asyncio.sleep(0.005)
        seen = data


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class InboundGate:
    """Admit or refuse inbound connections per PeerAuthentication, with clear reasons."""

    def __init__(
        self,
        peer_authn: types.PeerAuthn,
        tls_state: tlsmod.TlsState | None,
        *,
        workload_port: int | None = None,
        capture: bool = False,
        revoked: Collection[str] = (),
        handshake_timeout: float = 10.0,
        first_bytes_timeout: float = 30.0,
    ) -> None:
        self.peer_authn = peer_authn
        self.tls_state = tls_state
        self.workload_port = workload_port
        # a pod's captured inbound (0.0.0.0:15006): the port-level mode is the one of the
        # port the client dialled (its original destination), read per connection
        self.capture = capture
        self.revoked = frozenset(revoked)
        self.handshake_timeout = handshake_timeout
        self.first_bytes_timeout = first_bytes_timeout
        self.counts: Counter[str] = Counter()

    def update(self, peer_authn: types.PeerAuthn, revoked: Collection[str] | None = None
               ) -> None:
        """A new snapshot: applies to connections accepted from now on (revoked: None
        keeps the current list)."""
        self.peer_authn = peer_authn
        if revoked is not None:
            self.revoked = frozenset(revoked)

    @property
    def mode(self) -> str:
        return authn.mode_for_port(self.peer_authn, self.workload_port)

    def _refuse(self, sock: socket.socket, peer: str, reason: str) -> None:
        self.counts["refused"] += 1
        log.warning("inbound connection from %s refused: %s", peer, reason)
        try:
            sock.close()
        except OSError:
            pass

    async def handle(self, sock: socket.socket, factory: Callable[[], Any]
                     ) -> tuple[asyncio.BaseTransport, Any] | None:
        """Sniff, admit, handshake; the (transport, protocol) pair, or None if refused."""
        loop = asyncio.get_running_loop()
        sock.setblocking(False)
        peer = _peer_name(sock)
        try:
            first = await peek(loop, sock, authn.SNIFF_BYTES, self.first_bytes_timeout)
        except TimeoutError:
            self._refuse(sock, peer, f"sent nothing within {self.first_bytes_timeout:g}s")
            return None
        except OSError as exc:
            self._refuse(sock, peer, f"connection failed before the first byte: {exc}")
            return None
        if not first:
            sock.close()  # connected and left: not worth a warning
            return None
        mode = self.mode
        if self.capture:
            dst = origdst.original_destination(sock)
            if dst is not None:
                mode = authn.mode_for_port(self.peer_authn, dst[1])
        admission = authn.admit(mode, authn.sniff(first))
        if not admission.accept:
            self._refuse(sock, peer, admission.reason)
            return None
        if not admission.tls:
            self.counts["plaintext"] += 1
            return await loop.connect_accepted_socket(factory, sock)
        if self.tls_state is None:
            self._refuse(sock, peer, "TLS offered but this proxy has no workload certificate")
            return None
        return await self._handshake(loop, sock, peer, factory)

    async def _handshake(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                         peer: str, factory: Callable[[], Any]
                         ) -> tuple[asyncio.BaseTransport, Any] | None:
        assert self.tls_state is not None
        guarded = self._guard(factory, peer)
        try:
            pair = await loop.connect_accepted_socket(
                guarded, sock, ssl=self.tls_state.server,
                ssl_handshake_timeout=self.handshake_timeout)
        except (OSError, ssl.SSLError, TimeoutError, EOFError) as exc:
            self._refuse(sock, peer, describe_handshake_error(exc, self.handshake_timeout))
            return None
        if pair[0].is_closing():
            return None
        self.counts["mtls"] += 1
        return pair

    def _guard(self, factory: Callable[[], Any], peer: str) -> Callable[[], Any]:
        """Check the verified certificate before the listener sees a single byte.

        Only needed while some certificate is revoked (our CA issues nothing without a
        SPIFFE ID); otherwise the listener's protocol is used as is, with no extra call
        per read on the hot path.
        """
        if not self.revoked:
            return factory
        return lambda: _Guarded(factory(), self, peer)

    def refused_after_handshake(self, transport: asyncio.BaseTransport, peer: str) -> bool:
        reason = tlsmod.check_peer(transport.get_extra_info("ssl_object"), (), self.revoked)
        if reason is None:
            return False
        self.counts["refused"] += 1
        log.warning("inbound connection from %s refused: %s", peer, reason)
        transport.abort()  # type: ignore[attr-defined]
        return True

    def statistics(self) -> dict[str, int]:
        return dict(self.counts)


class _Guarded(asyncio.Protocol):
    """Delegates to the listener's protocol once the peer certificate passed the check."""

    def __init__(self, inner: Any, gate: InboundGate, peer: str) -> None:
        self.inner = inner
        self.gate = gate
        self.peer = peer
        self.admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self.gate.refused_after_handshake(transport, self.peer):
            self.admitted = True
            self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.admitted:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.admitted else None  # type: ignore[no-any-return]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.admitted:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.admitted:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.admitted:
            self.inner.resume_writing()


def _peer_name(sock: socket.socket) -> str:
    try:
        host, port = sock.getpeername()[:2]
        return f"{host}:{port}"
    except OSError:
        return "?"


async def serve(listen: socket.socket, gate: InboundGate, factory: Callable[[], Any]) -> None:
    """Accept forever on `listen`, each connection through the gate (cancel to stop)."""
    loop = asyncio.get_running_loop()
    listen.setblocking(False)
    tasks: set[asyncio.Task[Any]] = set()
    while True:
        try:
            sock, _ = await loop.sock_accept(listen)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:  # EMFILE and friends: keep accepting once it clears
            log.warning("accept failed on %s: %s", listen.getsockname(), exc)
            await asyncio.sleep(0.1)
            continue
        task = loop.create_task(_handle_quietly(gate, sock, factory))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


async def _handle_quietly(gate: InboundGate, sock: socket.socket,
                          factory: Callable[[], Any]) -> None:
    try:
        await gate.handle(sock, factory)
    except Exception as exc:  # one connection must never stop the accept loop
        log.warning("inbound connection failed: %s", exc)
        sock.close()


def peer_info(transport: asyncio.BaseTransport) -> tuple[str | None, str]:
    """(principal without spiffe://, cert hash) of a connection, for the Exchange."""
    obj = transport.get_extra_info("ssl_object")
    if obj is None:
        return None, ""
    return tlsmod.peer_principal(obj), tlsmod.peer_cert_hash(obj)

__all__ = ["XFCC", "InboundGate", "XfccFilter", "build_xfcc", "peer_info", "serve"]
