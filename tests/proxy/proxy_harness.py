"""Test harness: a ProxyServer on its own uvloop thread, tiny upstreams, config builders.

Tests stay synchronous (no pytest-asyncio): they talk to the proxy over real loopback
sockets while the proxy and the upstreams run on one background event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import threading
from collections import Counter
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

from tests.conftest import free_port as free_port  # re-exported: tests/proxy import it here
from tollway.proxy.main import ProxyServer
from tollway.snapshot import types

T = TypeVar("T")


class LoopThread:
    """An event loop running in a daemon thread; `run(coro)` waits for the result."""

    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Any, *args: Any) -> Any:
        async def wrap() -> Any:
            return fn(*args)

        return self.run(wrap())

    def stop(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class Upstream:
    """A small HTTP/1.1 server with behaviours chosen by path (see `_respond`)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = 0
        self.server: asyncio.base_events.Server | None = None
        self.seen: Counter[str] = Counter()
        self.requests: list[dict[str, Any]] = []
        self.fail_status: int | None = None
        self.delay_ms = 0
        self.connections = 0
        # answer this many requests per connection, then close on the next one unanswered
        # (a keep-alive connection the server gave up on while the client still pooled it)
        self.answers_per_connection: int | None = None
        self.closed_unanswered = 0
        self.disconnects = 0  # connections that ended (either side closed)

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        answered = 0
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                if self.answers_per_connection is not None:
                    if answered >= self.answers_per_connection:
                        self.closed_unanswered += 1
                        return
                    answered += 1
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers: dict[str, str] = {}
                raw_names = []
                for line in lines[1:]:
                    if line:
                        k, _, v = line.partition(":")
                        raw_names.append(k)
                        headers[k.strip().lower()] = v.strip()
                body_len = 0
                digest = hashlib.sha256()  # what arrived, not only how much
                if headers.get("transfer-encoding", "").lower().endswith("chunked"):
                    while True:
                        size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
                        if size == 0:
                            await reader.readuntil(b"\r\n")
                            break
                        chunk = await reader.readexactly(size)
                        digest.update(chunk)
                        body_len += len(chunk)
                        await reader.readexactly(2)
                elif "content-length" in headers:
                    left = int(headers["content-length"])
                    while left:
                        piece = await reader.read(min(left, 1 << 20))
                        if not piece:
                            return
                        digest.update(piece)
                        body_len += len(piece)
                        left -= len(piece)
                info = {
                    "upstream": self.name,
                    "method": method,
                    "path": target,
                    "headers": headers,
                    "names": raw_names,
                    "body_len": body_len,
                    "body_sha256": digest.hexdigest(),
                    "raw_head": head.decode("latin-1"),
                }
                self.seen[target] += 1
                self.requests.append(info)
                keep = await self._respond(info, reader, writer)
                if not keep:
                    return
        finally:
            self.disconnects += 1
            writer.close()

    async def _respond(
        self, info: dict[str, Any], reader: Any, writer: asyncio.StreamWriter
    ) -> bool:
        path = info["path"]
        parts = path.split("?")[0].strip("/").split("/")
        status = 200
        if parts[0] == "reset":
            transport = writer.transport
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
            transport.abort()
            return False
        if self.delay_ms:
            await asyncio.sleep(self.delay_ms / 1000)
        if parts[0] == "delay":
            await asyncio.sleep(int(parts[1]) / 1000)
        if parts[0] == "status":
            status = int(parts[1])
        if self.fail_status is not None:
            status = self.fail_status
        if parts[0] == "ws" and info["headers"].get("upgrade"):
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\n"
                b"upgrade: websocket\r\n\r\n"
            )
            while True:
                data = await reader.read(65536)
                if not data:
                    return False
                writer.write(b"echo:" + data)
        payload = json.dumps(info).encode()
        if parts[0] == "big":
            payload = b"x" * int(parts[1])
        extra = b"x-upstream: %s\r\n" % self.name.encode()
        if parts[0] == "chunked":
            writer.write(
                b"HTTP/1.1 %d OK\r\ntransfer-encoding: chunked\r\n%s\r\n" % (status, extra)
            )
            for piece in (payload[:10], payload[10:]):
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            writer.write(b"0\r\n\r\n")
        elif parts[0] == "hop":
            writer.write(
                b"HTTP/1.1 %d OK\r\nconnection: keep-alive\r\nkeep-alive: timeout=5\r\n"
                b"content-length: %d\r\n%s\r\n%s" % (status, len(payload), extra, payload)
            )
        else:
            writer.write(
                b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                b"%s\r\n%s"
                % (status, len(payload), extra, b"" if info["method"] == "HEAD" else payload)
            )
        await writer.drain()
        return True


class Harness:
    """A proxy plus upstreams on one loop thread."""

    def __init__(self) -> None:
        self.lt = LoopThread()
        self.proxies: list[ProxyServer] = []
        self.upstreams: list[Upstream] = []

    def upstream(self, name: str = "up") -> Upstream:
        up = Upstream(name)
        self.lt.run(up.start())
        self.upstreams.append(up)
        return up

    def proxy(self, config: types.ProxyConfig | None, **kw: Any) -> ProxyServer:
        server = ProxyServer(config, **kw)
        self.lt.run(server.start())
        self.proxies.append(server)
        return server

    def apply(self, server: ProxyServer, config: types.ProxyConfig) -> None:
        async def go() -> None:
            server.apply(config)
            await server.wait_serving()

        self.lt.run(go())

    def close(self) -> None:
        for p in self.proxies:
            try:
                self.lt.run(p.close())
            except Exception:
                pass
        for u in self.upstreams:
            self.lt.run(u.close())
        self.lt.stop()


# ------------------------------------------------------------------ config builders


def endpoint(up: Upstream, **labels: str) -> types.Endpoint:
    return types.Endpoint(
        address="127.0.0.1", port=up.port, labels=labels, workload=labels.get("workload", up.name)
    )


def cluster(name: str, *ups: Upstream, **kw: Any) -> types.Cluster:
    service = kw.pop("service", "svc.default.svc.cluster.local")
    return types.Cluster(
        name=name,
        service=service,
        port=80,
        endpoints=tuple(endpoint(u, version=u.name) for u in ups),
        **kw,
    )


def route(*dests: tuple[str, int], **kw: Any) -> types.Route:
    return types.Route(
        clusters=tuple(types.WeightedCluster(cluster=c, weight=w) for c, w in dests), **kw
    )


def config(
    routes: list[types.Route],
    clusters: list[types.Cluster],
    *,
    domains: tuple[str, ...] = ("*",),
    kind: str = "outbound",
    version: str = "v1",
    **kw: Any,
) -> types.ProxyConfig:
    table = types.RouteTable(
        name="rt",
        virtual_hosts=(types.VirtualHost(name="vh", domains=domains, routes=tuple(routes)),),
    )
    listener = types.Listener(
        name="main",
        kind=kind,
        address="127.0.0.1",
        port=0,  # type: ignore[arg-type]
        route_table="rt",
    )
    return types.ProxyConfig(
        version=version,
        node=types.Node(name="test-proxy", workload="client", labels={"app": "client"}),
        listeners=(listener,),
        route_tables=(table,),
        clusters=tuple(clusters),
        **kw,
    )


# ------------------------------------------------------------------ raw client


class Response:
    def __init__(self) -> None:
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.body = b""
        self.done = False

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def json(self) -> Any:
        return json.loads(self.body)


class RawClient:
    """A blocking socket client that reads responses one by one (for pipelining, HEAD...)."""

    def __init__(self, address: tuple[str, int], timeout: float = 10.0) -> None:
        import httptools

        self.sock = socket.create_connection(address, timeout=timeout)
        self._httptools = httptools
        self.buffer = b""
        self.responses: list[Response] = []
        self._current: Response | None = None
        self.head_mode = False
        self._new_parser()

    def _new_parser(self) -> None:
        self.parser = self._httptools.HttpResponseParser(self)

    # parser callbacks
    def on_message_begin(self) -> None:
        self._current = Response()

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self._current is not None
        self._current.headers.append((name.decode(), value.decode()))

    def on_headers_complete(self) -> None:
        assert self._current is not None
        self._current.status = self.parser.get_status_code()
        if self.head_mode:
            self._current.done = True
            self.responses.append(self._current)
            self._new_parser()

    def on_body(self, body: bytes) -> None:
        assert self._current is not None
        self._current.body += body

    def on_message_complete(self) -> None:
        if self._current is not None and not self._current.done:
            self._current.done = True
            self.responses.append(self._current)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_response(self, head: bool = False) -> Response:
        self.head_mode = head
        while not self.responses:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed before a full response")
            try:
                self.parser.feed_data(data)
            except self._httptools.HttpParserUpgrade:
                pass
        return self.responses.pop(0)

    def closed(self) -> bool:
        """True when the server closed the connection (EOF) within the timeout."""
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


def get(path: str, host: str = "svc", extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()


def wait_port(port: int, timeout: float = 20.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")
