"""The terminal stage: route -> local answer (redirect, direct response, fault abort) or a
Forward to an upstream cluster, with the request head rebuilt once.

Route selection is core.match (first match wins), the split is one uniform draw, faults are
core.fault. The upstream request head is the client's header list with hop-by-hop and
`x-envoy-*` headers dropped, Host set (rewritten if the route says so), trace and request
id headers set, and header operations applied - built in one pass into one bytes object.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, Final

from tollway.proxy.chain import mirror
from tollway.proxy.chain.forward import Forward
from tollway.proxy.core import balance, fault, headerops, trace
from tollway.proxy.core import exchange as rf
from tollway.proxy.core.retry import NO_RETRY
from tollway.proxy.http1.parse import HOP_BY_HOP
from tollway.snapshot import types

if TYPE_CHECKING:
    from tollway.proxy.chain.build import ListenerPlan
    from tollway.proxy.chain.stream import Exchange
    from tollway.proxy.core.match import CompiledRoute
    from tollway.proxy.upstream.cluster import LiveCluster

_rand = random.random
_trace_rng = random.Random()
# request headers never copied upstream: hop-by-hop, framing, Host, and trace headers this
# hop sets itself
_DROP = HOP_BY_HOP | trace.HEADER_NAMES_BYTES
# Raw header name as sent -> its lowercase form, or _DROPPED for a name never copied
# upstream (_DROP, `x-envoy-*`): one dict lookup per header instead of a lower(), a set
# test and a startswith. Bounded (cleared when full): new names cannot grow it.
_DROPPED: Final = b"\x00dropped"  # compared by identity only
_LOWER: dict[bytes, bytes] = {}
_LOWER_MAX: Final = 1024


def _lower(name: bytes) -> bytes:
    lname = name.lower()
    if lname in _DROP or lname.startswith(b"x-envoy-"):
        lname = _DROPPED
    if len(_LOWER) >= _LOWER_MAX:
        _LOWER.clear()
    if len(name) <= 64:
        _LOWER[name] = lname
    return lname


class Router:
    """Routes one listener's requests (see module doc)."""

    def __init__(self, plan: ListenerPlan) -> None:
        self.plan = plan

    # ------------------------------------------------------------ entry
    def handle(self, ex: Exchange, down: Any) -> None:
        plan = self.plan
        matcher = plan.matcher
        if matcher is None:
            cluster = plan.default_cluster
            if cluster is None:
                down.local_reply(ex, 404, rf.NR, "")
                return
            self._forward(ex, down, None, cluster, None)
            return
        route = matcher.select(  # positional: see RouteTableMatcher.select
            ex.authority, ex.method, ex.path, ex.headers, plan.match_port, None, None,
            plan.gateway,
        )  # fmt: skip
        if route is None:
            down.local_reply(ex, 404, rf.NR, "")
            return
        ex.route_name = route.spec.name
        if route.forward_only:  # no CORS, redirect, direct response or fault: _pick inline
            wc = route.pick_cluster(_rand())
            if wc is None:
                down.local_reply(ex, 503, rf.NC, "")
                return
            cluster = plan.clusters.get(wc.cluster)
            if cluster is None:
                ex.cluster_name = wc.cluster
                ex.label_index = ex.plan.labels_for(wc.cluster, -1)  # a peer's copy
                down.local_reply(ex, 503, rf.NC, "")
                return
            self._forward(ex, down, route, cluster, wc)
            return
        self._special(ex, down, route)

    def _special(self, ex: Exchange, down: Any, route: CompiledRoute) -> None:
        """A route with CORS, a redirect, a direct response or a fault, or no destination."""
        plan = self.plan
        spec = route.spec
        policy = route.cors  # compiled with the snapshot (core/route.py)
        if policy is not None:
            preflight = policy.preflight_reply(ex.method, ex.headers)
            if preflight is not None:  # Envoy's CORS filter answers allowed preflights
                down.local_reply(ex, 200, "", "", tuple(preflight))
                return
            extra = policy.response_headers(ex.headers)
            if extra:
                ex.attrs["cors"] = extra
        if spec.redirect is not None:
            location = route.redirect_location(ex.authority, ex.path, plan.scheme,
                                               plan.request_port)
            down.local_reply(ex, spec.redirect.status, "", "", (("location", location or "/"),))
            return
        if spec.direct_response is not None:
            dr = spec.direct_response
            down.local_reply(ex, dr.status, "", dr.body or "")
            return
        if spec.fault is not None:
            decision = fault.decide(spec.fault, _rand(), _rand())
            if decision.abort_status is not None:
                grpc = spec.fault.abort_grpc_status
                down.local_reply(ex, decision.abort_status, rf.FI, "fault filter abort",
                                 () if grpc is None else _grpc_abort(grpc))
                return
            if decision.delay is not None:
                ex.add_flag(rf.DI)
                plan.loop.call_later(decision.delay, self._after_delay, ex, down, route)
                return
        self._pick(ex, down, route)

    def _after_delay(self, ex: Exchange, down: Any, route: CompiledRoute) -> None:
        if down.alive_for(ex):
            self._pick(ex, down, route)

    def _pick(self, ex: Exchange, down: Any, route: CompiledRoute) -> None:
        wc = route.pick_cluster(_rand())
        if wc is None:
            down.local_reply(ex, 503, rf.NC, "")
            return
        cluster = self.plan.clusters.get(wc.cluster)
        ex.cluster_name = wc.cluster
        if cluster is None:
            ex.label_index = ex.plan.labels_for(wc.cluster, -1)
            down.local_reply(ex, 503, rf.NC, "")
            return
        self._forward(ex, down, route, cluster, wc)

    # ------------------------------------------------------------ forward
    def _forward(
        self,
        ex: Exchange,
        down: Any,
        route: CompiledRoute | None,
        cluster: LiveCluster,
        wc: types.WeightedCluster | None,
    ) -> None:
        plan = self.plan
        ex.cluster_name = cluster.name
        head, authority = self._head(ex, route, wc)
        response_ops: headerops.ResponseOps | None = None
        if route is not None:
            if route.shapes_response:  # header operations or CORS: rare, decided at compile
                response_ops = route.response_ops_for(wc)
                if route.cors is not None:
                    cors_headers = ex.attrs.get("cors")
                    if cors_headers:  # these depend on the request's Origin
                        response_ops = (*(response_ops or ()),
                                        headerops.AddHeaders(cors_headers))
            policy = route.retry_policy
            timeout = route.timeout
            mirrors = route.mirrors
            if not ex.http11 or ex.grpc:  # an HTTP/2 stream or a gRPC call: its deadline
                deadline = ex.attrs.get("grpc_timeout")
                if deadline is not None:  # Istio sets no cap: the header wins over the route
                    timeout = deadline
        else:
            policy = NO_RETRY
            timeout = None
            mirrors = ()
        hash_key = None
        if cluster.hash_lb is not None:
            query = ex.path.partition("?")[2]
            hash_key = balance.hash_key_for(cluster.hash_lb, ex.headers, ex.source_ip, query)
        fwd = Forward(  # positional: a keyword call costs more, once per request
            ex, down, cluster, head, policy, hash_key, response_ops,
            plan.limits.retry_buffer_bytes,
        )  # fmt: skip
        ex.forward = fwd
        if not mirrors:
            fwd.start(timeout)
            return
        pipelined = ex.method != "HEAD" and not ex.upgrade
        if ex.chunked or ex.content_length or ex.upgrade:  # copies wait for the body
            fwd.tap = mirror.plan_copies(plan, mirrors, head, authority, pipelined)
            fwd.start(timeout)
            return
        # No body to collect: the copies go right after the real request is sent (as
        # the Tap would at the end of the body), unless the request already ended here.
        fwd.start(timeout)
        if not fwd.finished:
            mirror.send_copies(plan, mirrors, head, authority, pipelined)

    def _head(
        self, ex: Exchange, route: CompiledRoute | None, wc: types.WeightedCluster | None
    ) -> tuple[bytes, str]:
        """The upstream request head: one pass over the client's headers."""
        path = ex.path
        authority = ex.authority
        if route is not None:
            if route.rewrites:
                path = route.rewrite_path(path)
            if route.authority_rewrite is not None:
                authority = route.authority_rewrite
            if route.request_ops:
                if route.authority_rewrite is None and wc is not None:
                    authority = _destination_host(wc) or authority
                ops = route.request_ops_for(wc)
                if ops:
                    return self._head_with_ops(ex, path, authority, ops), authority
        headers = ex.headers
        plan = self.plan
        ex.request_id, trace_lines, ex.span = trace.upstream_lines(
            headers, _trace_rng, plan.sample_rate, plan.spans_on)
        named: set[bytes] | None = None
        conn_tokens = headers.get("connection")
        if conn_tokens:  # headers the client named in Connection are hop-by-hop too
            named = {t.strip().lower().encode() for t in conn_tokens.split(",")}
        out = [f"{ex.method} {path} HTTP/1.1\r\nhost: {authority}\r\n".encode("latin-1")]
        append = out.append
        lower = _LOWER
        for name, value in ex.raw_headers:
            lname = lower.get(name)
            if lname is None:
                lname = _lower(name)
            if lname is _DROPPED or (named is not None and lname in named):
                continue
            append(name)  # four appends: cheaper than b"%s: %s\r\n" % (name, value)
            append(b": ")
            append(value)
            append(b"\r\n")
        append(trace_lines)
        if ex.upgrade or ex.chunked or ex.content_length:
            self._head_framing(ex, append)
        append(plan.head_tail)
        return b"".join(out), authority

    def _head_with_ops(
        self,
        ex: Exchange,
        path: str,
        authority: str,
        ops: tuple[headerops.CompiledOps, ...],
    ) -> bytes:
        """The upstream head when the route or destination has request header operations:
        built as (name, value) pairs so the operations can apply."""
        plan = self.plan
        ctx = trace.prepare(ex.headers, _trace_rng, sample_rate=plan.sample_rate,
                            spans=plan.spans_on)
        ex.request_id = ctx.request_id
        ex.span = ctx.span_ids
        skip = _DROP
        conn_tokens = ex.headers.get("connection")
        if conn_tokens:
            skip = skip | {t.strip().lower().encode() for t in conn_tokens.split(",")}
        out = [f"{ex.method} {path} HTTP/1.1\r\nhost: {authority}\r\n".encode("latin-1")]
        append = out.append
        pairs: list[tuple[str, str]] = []
        for name, value in ex.raw_headers:
            lname = name.lower()
            if lname in skip or lname.startswith(b"x-envoy-"):
                continue
            pairs.append((name.decode("latin-1"), value.decode("latin-1")))
        pairs.extend(ctx.headers_to_set())
        for op in ops:  # compiled with the snapshot: route, then destination
            pairs = op(pairs)
        for name_s, value_s in pairs:
            if name_s.lower() in ("host", ":authority"):
                continue
            append(b"%s: %s\r\n" % (name_s.encode("latin-1"), value_s.encode("latin-1")))
        self._head_framing(ex, append)
        append(self.plan.head_tail)
        return b"".join(out)

    def _head_framing(self, ex: Exchange, append: Any) -> None:
        """Upgrade and body framing lines of the upstream head."""
        if ex.upgrade:
            append(b"connection: upgrade\r\nupgrade: %s\r\n"
                   % ex.headers.get("upgrade", "").encode("latin-1"))
        if ex.chunked:
            append(b"transfer-encoding: chunked\r\n")
        elif ex.content_length:
            append(b"content-length: %d\r\n" % ex.content_length)


def _grpc_abort(code: int) -> tuple[tuple[str, str], ...]:
    """Envoy's gRPC abort: HTTP 200, content-type application/grpc, the status given."""
    return (("content-type", "application/grpc"), ("grpc-status", str(code)),
            ("grpc-message", "fault filter abort"))


def _destination_host(wc: types.WeightedCluster) -> str | None:
    """A destination's `headers.request.set` of `host` / `:authority`: the upstream Host,
    as Envoy applies a weighted cluster's header operations (a route-level rewrite or
    set of the same wins: the caller asks only when there is none)."""
    ops = wc.request_headers
    if ops is None:
        return None
    for key, value in ops.set.items():
        if key.lower() in ("host", ":authority"):
            return value
    return None
