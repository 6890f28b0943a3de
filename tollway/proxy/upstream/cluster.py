"""A live upstream cluster: endpoints with their pools, balancer, outlier detector, limits.

Built once per snapshot from `types.Cluster` (and kept across snapshots while the spec is
unchanged, so pools and ejection state survive a push). When only the endpoints changed,
the new cluster adopts the old one's pools and outlier state of the hosts that stay
(`adopt`), as Envoy keeps its hosts across an EDS update. The decisions are core's
(balance, outlier, limits); this module holds the state they read and the leases queued
for a connection, and hands out leases: `acquire` is the one way a try gets an endpoint,
a request slot and a connection (or a place in the queue), and `Lease.release` (lease.py)
the one way back.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import Any, TypeVar

import msgspec

from tollway.proxy.core import balance, limits, outlier
from tollway.proxy.core.exchange import Outcome
from tollway.proxy.upstream.lease import NO_HEALTHY, OVERFLOW, Lease, Refusal
from tollway.proxy.upstream.pool import EndpointPool
from tollway.snapshot import types

L = TypeVar("L", bound=Lease)


TLS_MODE_LABEL = "security.istio.io/tlsMode"  # an endpoint with a sidecar (auto mTLS)


class LiveCluster:
    """Everything the router needs to send a request to one cluster."""

    def __init__(
        self,
        spec: types.Cluster,
        loop: asyncio.AbstractEventLoop,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.loop = loop
        self.closed = False
        self.endpoints = spec.endpoints
        n = len(spec.endpoints)
        self.balancer = balance.make_balancer(spec.load_balancer, spec.endpoints)
        self.hash_lb = spec.load_balancer if spec.load_balancer.consistent_hash else None
        self.outlier = outlier.OutlierDetector(spec.outlier, n) if spec.outlier else None
        self.limits = limits.PoolLimits(spec.connection_pool)
        self.active = [0] * n
        self.host_names = [f"{ep.address}:{ep.port}" for ep in spec.endpoints]
        self.healthy = tuple(i for i, ep in enumerate(spec.endpoints) if ep.healthy)
        self.all_healthy = len(self.healthy) == n
        self.waiters: deque[Any] = deque()
        self.tls = ssl_context is not None
        sni = spec.tls.sni if spec.tls.mode != "DISABLE" else None
        cp = spec.connection_pool
        per_endpoint = spec.tls.per_endpoint
        pool_class = EndpointPool
        if spec.protocol == "http2":  # streams on shared connections (proxy/h2/client.py)
            from tollway.proxy.h2.client import H2EndpointPool

            pool_class = H2EndpointPool
        self.pools = [
            pool_class(
                self,
                i,
                ep.address,
                ep.port,
                loop=loop,
                ssl_context=ssl_context if not per_endpoint
                or ep.labels.get(TLS_MODE_LABEL) == "istio" else None,
                server_hostname=sni,
                connect_timeout=cp.connect_timeout,
                max_requests=cp.max_requests_per_connection,
            )
            for i, ep in enumerate(spec.endpoints)
        ]
        self.overflows = 0

    # ------------------------------------------------------------ picking
    def usable(self, now: float) -> tuple[int, ...]:
        """Indices of endpoints a request may go to now (outlier ejection, panic)."""
        if self.outlier is None:
            return self.healthy
        usable = self.outlier.usable(now)
        if self.all_healthy:
            return tuple(usable)
        healthy = set(self.healthy)
        return tuple(i for i in usable if i in healthy)

    def observe(self, index: int, outcome: Outcome, now: float) -> None:
        if self.outlier is not None:
            self.outlier.observe(index, outcome, now)

    # ------------------------------------------------------------ leases
    def acquire(
        self,
        lease: L,
        now: float,
        r: float,
        hash_key: str | None,
        tried: tuple[int, ...],
        dial: bool = False,
    ) -> L | Refusal:
        """Grant `lease` (unbound, a try's own object) for one try, or say why not.

        The lease comes back with `conn` set when an idle connection was free (the common
        case); otherwise a connection is being opened for it, or it waits in the queue
        (`http1MaxPendingRequests`) and its `send_on` is called later. Refused:
        no usable endpoint (503 UH), `http2MaxRequests` or the queue full (503 UO).
        `dial`: never an idle connection, dial a new one (the resend after a pooled
        connection proved dead, Forward.retry_stale); queued when the connection limit
        is reached, as any request."""
        # the endpoint: usable hosts (outlier ejection, panic), minus those already tried
        # when another is usable, then the balancer
        od = self.outlier
        if od is None:
            usable = self.healthy
        elif self.all_healthy:  # `usable(now)` inlined: one call less per request
            usable = od.usable(now)
        else:
            usable = self.usable(now)
        if not usable:
            return NO_HEALTHY
        if tried:
            fresh = tuple(i for i in usable if i not in tried)
            if fresh:
                usable = fresh
        if len(usable) == 1:
            index = usable[0]
        else:
            index = int(self.balancer.pick(usable, r=r, hash_key=hash_key, active=self.active))
        lim = self.limits
        if lim.requests >= lim.max_requests:  # try_start_request, inlined
            lim._rq_overflow += 1
            self.overflows += 1
            return OVERFLOW
        lim.requests += 1
        self.active[index] += 1
        lease.cluster = self
        lease.index = index
        lease.waiting = False
        lease.released = False
        pool = self.pools[index]
        idle = pool.idle
        while idle and not dial:  # take_idle, inlined: the per-request path
            conn = idle.pop()
            if conn.alive and conn.transport is not None:
                conn.reused = True
                lease.conn = conn
                return lease
        lease.conn = None
        if lim.try_open_connection():
            pool.connect(lease)
        elif lim.try_enqueue_pending():
            lease.waiting = True
            self.waiters.append(lease)
        else:
            lease.release(None, now)
            self.overflows += 1
            return OVERFLOW
        return lease

    def hand_to_waiter(self, conn: Any) -> bool:
        """Give a just-released connection to a queued lease, if one waits."""
        waiters = self.waiters
        while waiters:
            if waiters.popleft().on_connected(conn):
                return True
        return False

    def connection_closed(self) -> None:
        """A connection slot was freed: the first waiter may open a new connection (on a
        closed cluster too: its queued requests are served before it goes, see
        Pool.release)."""
        self.limits.close_connection()
        if self.waiters and self.limits.try_open_connection():
            self.waiters.popleft().open_for_waiter()

    def drop_waiter(self, waiter: Any) -> None:
        """Take a lease out of the queue (its pending slot is the lease's to give back)."""
        try:
            self.waiters.remove(waiter)
        except ValueError:
            return

    def adopt(self, old: LiveCluster) -> int:
        """Take over `old`'s pools and outlier state of the hosts that stay, when the two
        differ only in their endpoints (an EndpointSlice change): the connections to
        those hosts stay pooled and their ejections stay in force, as Envoy keeps a host
        across an EDS update. Call before this cluster carries a request, then close
        `old`: it drains the removed hosts' pools (idle connections now, busy ones after
        their response). Returns how many pools moved.

        A moved pool swaps places with this cluster's empty pool for the same host, so
        every pool still belongs to one cluster: requests in flight on `old` (and its
        retries) keep their accounting there, their connections go back to the moved
        pool, and the connection slots the moved pools hold move to this cluster's
        limits with them (a pool holds one per open or opening connection)."""
        if old.closed or old.loop is not self.loop:
            return 0
        if msgspec.structs.replace(old.spec, endpoints=self.spec.endpoints) != self.spec:
            return 0
        by_host = {(p.address, p.port): p for p in old.pools}
        mapping: list[int | None] = []
        slots = 0
        for j, empty in enumerate(self.pools):
            pool = by_host.pop((empty.address, empty.port), None)
            if pool is None or (pool.ssl_context is None) != (empty.ssl_context is None):
                mapping.append(None)
                continue
            i = pool.index
            mapping.append(i)
            pool.cluster, empty.cluster = self, old
            pool.index, empty.index = j, i
            pool.ssl_context, empty.ssl_context = empty.ssl_context, pool.ssl_context
            self.pools[j], old.pools[i] = pool, empty
            slots += len(pool.open) + pool.connecting
        old.limits.connections -= slots
        self.limits.connections += slots
        if self.outlier is not None and old.outlier is not None:
            self.outlier.carry_over(old.outlier, mapping)
        return sum(1 for i in mapping if i is not None)

    def close(self) -> None:
        """The cluster left the config: close idle connections; busy ones end after use."""
        self.closed = True
        for pool in self.pools:
            pool.retire()

    # ------------------------------------------------------------ introspection
    def statistics(self, now: float) -> dict[str, Any]:
        stats = self.outlier.statistics() if self.outlier is not None else None
        usable = set(self.usable(now))
        hosts = []
        for i, ep in enumerate(self.endpoints):
            host: dict[str, Any] = {
                "address": f"{ep.address}:{ep.port}",
                "labels": dict(ep.labels),
                "healthy": ep.healthy,
                "usable": i in usable,
                "active_requests": self.active[i],
                **self.pools[i].statistics(),
            }
            if stats is not None:
                rec = stats[i]
                host["ejected"] = bool(getattr(rec, "ejected", False))
                host["times_ejected"] = int(getattr(rec, "times_ejected", 0))
            hosts.append(host)
        return {
            "name": self.name,
            "service": self.spec.service,
            "subset": self.spec.subset,
            "overflows": self.overflows,
            # the pool-limit counters (core/limits.py): in use now, and refusals so far
            "circuit_breakers": self.limits.statistics()._asdict(),
            "panic": bool(self.outlier.in_panic(now)) if self.outlier is not None else False,
            "pending": len(self.waiters),
            "hosts": hosts,
        }
