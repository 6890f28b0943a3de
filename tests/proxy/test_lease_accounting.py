"""Upstream accounting returns to zero whatever happens to the requests (property test).

Hypothesis draws a burst of requests and, per request, what each of its tries meets
upstream - success, a 5xx, a reset, no answer (per-try or route timeout), an accepted
upgrade - plus whether the client goes away mid-flight, over a cluster with a dead
endpoint (connect failures) and tight pool limits, retries and a retry budget. The real
listener, router, Forward / Attempt, cluster, pools and upstream connections run on a
real event loop against a real upstream socket; only the client side is a recording
transport, so each case takes milliseconds. After the burst every request must have
been answered or dropped (no stall), and once idle connections are closed every
counter - requests, pending, connections, retries, active per host, pool connections -
must be back at exactly zero (nothing in core/limits.py clamps, so a double release
shows as -1). Mid-burst, the cluster's endpoints may change (an EndpointSlice update):
the new cluster adopts the pools of the hosts that stay (LiveCluster.adopt) while the
old one's requests finish, and both clusters' counters must return to zero.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from proxy_harness import config, free_port

from tollway.proxy.chain.build import compile_snapshot
from tollway.proxy.chain.mirror import Mirrorer
from tollway.proxy.chain.telemetry import Metrics
from tollway.proxy.http1.parse import Limits
from tollway.proxy.listener import Downstream, ListenerRuntime
from tollway.proxy.upstream.cluster import LiveCluster
from tollway.snapshot import types

ACTIONS = ("ok", "5xx", "reset", "hang", "upgrade", "slow")


class Script:
    """What the upstream does with each arrival of a request, by path."""

    def __init__(self, plans: dict[str, list[str]]) -> None:
        self.plans = {k: deque(v) for k, v in plans.items()}
        self.transports: list[asyncio.Transport] = []

    def next(self, path: str) -> str:
        plan = self.plans.get(path)
        return plan.popleft() if plan else "ok"


class ScriptedUpstream(asyncio.Protocol):
    def __init__(self, script: Script, loop: asyncio.AbstractEventLoop) -> None:
        self.script = script
        self.loop = loop
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.tunnel = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.script.transports.append(self.transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        if self.tunnel:
            return
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            head, _, self.buf = self.buf.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            path = lines[0].split(b" ")[1].decode()
            upgrade = any(line.lower().startswith(b"upgrade:") for line in lines[1:])
            self._answer(self.script.next(path), upgrade)

    def _answer(self, action: str, upgrade: bool) -> None:
        tr = self.transport
        assert tr is not None
        if action == "reset":
            tr.abort()
        elif action == "hang":
            pass
        elif action == "upgrade" and upgrade:
            self.tunnel = True
            tr.write(b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\n"
                     b"upgrade: websocket\r\n\r\n")
            self.loop.call_later(0.02, tr.close)
        elif action == "slow":
            self.loop.call_later(0.01, self._write, tr, 200)
        else:
            self._write(tr, 503 if action == "5xx" else 200)

    @staticmethod
    def _write(tr: asyncio.Transport, status: int) -> None:
        if not tr.is_closing():
            tr.write(b"HTTP/1.1 %d X\r\ncontent-length: 2\r\n\r\nok" % status)


class ClientTransport:
    """The client side of a downstream connection: records what the proxy writes."""

    def __init__(self) -> None:
        self.data = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data += data

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...

    def close(self) -> None:
        self.closed = True

    abort = close

    def is_closing(self) -> bool:
        return self.closed


request = st.fixed_dictionaries({
    "tries": st.lists(st.sampled_from(ACTIONS), min_size=1, max_size=4),
    "upgrade": st.booleans(),
    "abort_after": st.none() | st.sampled_from([0.0, 0.005, 0.02, 0.06]),
    "at": st.sampled_from([0.0, 0.0, 0.002, 0.01]),
    "body": st.booleans(),
})
limits = st.fixed_dictionaries({
    "max_connections": st.sampled_from([0, 1, 2]),
    "http1_max_pending_requests": st.sampled_from([0, 1, 2]),
    "http2_max_requests": st.sampled_from([0, 1, 3]),
    "max_retries": st.sampled_from([0, 1, 2]),
})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    requests=st.lists(request, min_size=1, max_size=6),
    pool=limits,
    attempts=st.integers(0, 3),
    per_try=st.sampled_from([None, 0.03]),
    dead_endpoint=st.booleans(),
    swap_at=st.none() | st.sampled_from([0.0, 0.004, 0.015, 0.05]),
)
def test_every_counter_returns_to_zero(
    requests: list[dict[str, Any]],
    pool: dict[str, int],
    attempts: int,
    per_try: float | None,
    dead_endpoint: bool,
    swap_at: float | None,
) -> None:
    loop = asyncio.new_event_loop()
    try:
        _run_case(loop, requests, pool, attempts, per_try, dead_endpoint, swap_at)
    finally:
        loop.close()


def _run_case(
    loop: asyncio.AbstractEventLoop,
    requests: list[dict[str, Any]],
    pool: dict[str, int],
    attempts: int,
    per_try: float | None,
    dead_endpoint: bool,
    swap_at: float | None = None,
) -> None:
    script = Script({f"/r{i}": list(r["tries"]) for i, r in enumerate(requests)})
    server = loop.run_until_complete(
        loop.create_server(lambda: ScriptedUpstream(script, loop), "127.0.0.1", 0)
    )
    port = server.sockets[0].getsockname()[1]
    endpoints = [types.Endpoint(address="127.0.0.1", port=port)]
    if dead_endpoint:
        endpoints.append(types.Endpoint(address="127.0.0.1", port=free_port()))
    cluster_spec = types.Cluster(
        name="c",
        service="svc.default.svc.cluster.local",
        port=80,
        endpoints=tuple(endpoints),
        load_balancer=types.LoadBalancer(simple="ROUND_ROBIN"),
        connection_pool=types.ConnectionPool(**pool),
        outlier=types.OutlierDetection(consecutive_5xx=2, interval=0.05,
                                       base_ejection_time=0.05, max_ejection_percent=50),
    )
    route = types.Route(
        clusters=(types.WeightedCluster(cluster="c"),),
        timeout=0.25,
        retries=types.Retry(attempts=attempts, per_try_timeout=per_try,
                            retry_on=("5xx", "reset", "connect-failure")),
    )
    snap = compile_snapshot(config([route], [cluster_spec]), loop=loop, metrics=Metrics(),
                            mirrorer=Mirrorer(), limits=Limits())
    plan = next(iter(snap.plans.values()))
    runtime = ListenerRuntime("main", plan, Limits())
    downs: list[tuple[Downstream, ClientTransport]] = []

    def start(i: int, r: dict[str, Any]) -> None:
        down = Downstream(runtime)
        tr = ClientTransport()
        down.connection_made(tr)  # type: ignore[arg-type]
        downs.append((down, tr))
        extra = b"connection: upgrade\r\nupgrade: websocket\r\n" if r["upgrade"] else b""
        if r["body"]:
            extra += b"content-length: 5\r\n"
        down.data_received(b"GET /r%d HTTP/1.1\r\nhost: svc\r\n%s\r\n" % (i, extra))
        if r["body"]:
            loop.call_later(0.003, down.data_received, b"hello")
        if r["abort_after"] is not None:
            loop.call_later(r["abort_after"], _abort, down, tr)

    for i, r in enumerate(requests):
        loop.call_later(r["at"], start, i, r)

    replaced: list[LiveCluster] = []
    swapped: list[bool] = []  # the swap ran (whether or not it raised)

    def swap() -> None:
        """The endpoints change as ProxyServer.apply changes them: the live host kept,
        with other labels, at an index the old cluster does not have (a connection being
        opened for an old request then comes from a pool at another index), the dead one
        replaced by others. (The plan's label rows are dropped: here old and new share one
        plan, and the new cluster has more endpoints.)"""
        swapped.append(True)
        old = snap.clusters["c"]
        live = types.Endpoint(address="127.0.0.1", port=port, labels={"v": "2"})
        dead = tuple(types.Endpoint(address="127.0.0.1", port=free_port())
                     for _ in range(len(endpoints)))
        new = LiveCluster(msgspec.structs.replace(old.spec, endpoints=(*dead, live)), loop)
        assert new.adopt(old) == 1
        snap.clusters["c"] = new
        plan.label_rows.clear()
        old.close()
        replaced.append(old)

    if swap_at is not None:
        loop.call_later(swap_at, swap)

    def settled() -> bool:
        if swap_at is not None and not swapped:
            return False
        return len(downs) == len(requests) and all(
            d.active is None and d.tunnel is None for d, _ in downs
        )

    _run_until(loop, settled, 5.0)
    assert settled(), "a request never ended (stall)"
    # (a loop callback's exception is only logged: the swap must be seen to have run)
    assert len(replaced) == (swap_at is not None), "the endpoint change failed"
    clusters = [*replaced, snap.clusters["c"]]
    for cluster in clusters:
        cluster.close()  # idle keep-alive connections hold their slots until closed
    _run_until(loop, lambda: all(not p.open and not p.connecting
                                 for c in clusters for p in c.pools), 2.0)
    for cluster in clusters:
        stats = cluster.limits.statistics()
        assert (stats.requests, stats.pending, stats.connections, stats.retries) == (
            0, 0, 0, 0), stats
        assert cluster.active == [0] * len(cluster.endpoints)
        assert not cluster.waiters
        assert all(not p.open and not p.idle and p.connecting == 0 for p in cluster.pools)
        assert all(p.cluster is cluster for p in cluster.pools)
    for _d, tr in downs:  # every client got a whole response, or its connection ended
        assert tr.closed or tr.data.count(b"HTTP/1.1 ") >= 1
    server.close()
    for t in script.transports:
        t.abort()
    loop.run_until_complete(server.wait_closed())
    _run_until(loop, lambda: False, 0.01)


def _abort(down: Downstream, tr: ClientTransport) -> None:
    if down.transport is not None:
        tr.closed = True
        down.connection_lost(None)


def _run_until(loop: asyncio.AbstractEventLoop, check: Any, limit: float) -> None:
    async def wait() -> None:
        deadline = loop.time() + limit
        while not check() and loop.time() < deadline:
            await asyncio.sleep(0.002)

    loop.run_until_complete(wait())
