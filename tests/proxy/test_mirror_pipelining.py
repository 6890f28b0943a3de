"""Mirrored copies travel pipelined on one connection per shadow endpoint (real sockets)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from proxy_harness import Harness, RawClient, cluster, config, get

from tollway.snapshot import types


def _wait(pred: Any, timeout: float = 60.0) -> None:
    # copies are sent off the request path: on a loaded host they may land seconds later
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.01)
    raise AssertionError(f"condition not reached in {timeout:.0f}s")


def _mirrored(shadow_port: int, main_cluster: types.Cluster) -> types.ProxyConfig:
    shadow = types.Cluster(
        name="shadow",
        service="svc.default.svc.cluster.local",
        port=80,
        endpoints=(types.Endpoint(address="127.0.0.1", port=shadow_port),),
    )
    r = types.Route(
        clusters=(types.WeightedCluster(cluster="main"),),
        mirrors=(types.Mirror(cluster="shadow"),),
    )
    return config([r], [main_cluster, shadow])


def _burst(address: tuple[str, int], n: int, method: str = "GET") -> None:
    """n requests on n connections, all sent before any response is read."""
    clients = [RawClient(address) for _ in range(n)]
    for i, c in enumerate(clients):
        c.send(b"%s /r%d HTTP/1.1\r\nHost: app\r\n\r\n" % (method.encode(), i))
    for c in clients:
        assert c.read_response(head=method == "HEAD").status == 200
        c.sock.close()


class ClosingShadow:
    """A shadow that answers in order, prefixes some answers with 100 Continue, and ends
    the connection (Connection: close) after every `close_every`-th answer without
    reading the requests queued behind it."""

    def __init__(self, close_every: int) -> None:
        self.close_every = close_every
        self.handled: list[str] = []
        self.connections = 0
        self.port = 0

    async def start(self) -> None:
        server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self.server = server

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b" ", 2)[1].decode()
                self.handled.append(target)
                served += 1
                last = served % self.close_every == 0
                interim = b"HTTP/1.1 100 Continue\r\n\r\n" if served % 2 else b""
                writer.write(
                    interim + b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n%s\r\nok"
                    % (b"connection: close\r\n" if last else b"")
                )
                await writer.drain()
                if last:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


def test_concurrent_copies_share_one_pipelined_connection(harness: Harness) -> None:
    main, shadow = harness.upstream("main"), harness.upstream("shadow")
    p = harness.proxy(_mirrored(shadow.port, cluster("main", main)))
    _burst(p.listener_address("main"), 12)
    _wait(lambda: p.mirrorer.completed == 12)
    stats = p.mirrorer.statistics()
    assert stats["failed"] == 0 and stats["in_flight"] == 0
    assert sorted(r["path"] for r in shadow.requests) == sorted(f"/r{i}" for i in range(12))
    assert all(r["headers"]["host"] == "app-shadow" for r in shadow.requests)
    assert shadow.connections == 1  # one per request without pipelining


def test_copies_behind_a_closing_answer_are_sent_again_not_lost(harness: Harness) -> None:
    main = harness.upstream("main")
    shadow = ClosingShadow(close_every=3)
    harness.lt.run(shadow.start())
    p = harness.proxy(_mirrored(shadow.port, cluster("main", main)))
    _burst(p.listener_address("main"), 10)
    _wait(lambda: p.mirrorer.completed == 10)
    assert p.mirrorer.failed == 0 and p.mirrorer.in_flight == 0
    assert sorted(shadow.handled) == sorted(f"/r{i}" for i in range(10))  # each once
    assert shadow.connections >= 4  # closed after every 3rd answer
    clusters = {c.name: c for c in p.snapshot.clusters.values()}  # type: ignore[union-attr]
    assert clusters["shadow"].limits.connections <= 1  # closed pipes gave their slot back


def test_head_copies_take_an_ordinary_connection(harness: Harness) -> None:
    main, shadow = harness.upstream("main"), harness.upstream("shadow")
    p = harness.proxy(_mirrored(shadow.port, cluster("main", main)))
    _burst(p.listener_address("main"), 3, method="HEAD")
    _wait(lambda: p.mirrorer.completed == 3)
    assert [r["method"] for r in shadow.requests] == ["HEAD"] * 3
    assert p.mirrorer.in_flight == 0


def test_a_copy_to_a_dead_shadow_fails_and_frees_its_slot(harness: Harness) -> None:
    main = harness.upstream("main")
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead_port = s.getsockname()[1]
    s.close()  # nothing listens there: connection refused
    p = harness.proxy(_mirrored(dead_port, cluster("main", main)))
    c = RawClient(p.listener_address("main"))
    for _ in range(3):
        c.send(get("/"))
        assert c.read_response().status == 200
    _wait(lambda: p.mirrorer.failed == 3)
    assert p.mirrorer.in_flight == 0 and p.mirrorer.completed == 0
    clusters = {c.name: c for c in p.snapshot.clusters.values()}  # type: ignore[union-attr]
    assert clusters["shadow"].limits.connections == 0
