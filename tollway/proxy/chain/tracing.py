"""A request's spans, built when it ends: SERVER (what this proxy received) and CLIENT
(what it sent upstream), with the tags Envoy sets for Istio.

Compiled per snapshot (`Tracer`): the service name, the node tags, the sampling rate and
the operation names per cluster are decided once; per sampled request `finish` reads the
Exchange and hands two Span objects to the exporter's queue (proxy/export.py). An
unsampled request costs the router one bool test and `finish` is not called at all
(`ListenerPlan.tracer` is None when no provider is configured).

A retried request has one CLIENT span per try (as Envoy's upstream spans): the router
(chain/forward.py) keeps each retried try's id, times, host and outcome and sends the next
try under a fresh span id, so each try's SERVER span upstream is the child of its own.

Names as Istio's: the service is `{canonical service}.{namespace}` (the `app` label when
there is no canonical-name label, else the workload); the operation is the route's
destination `{host}:{port}/*` as istiod's route decorator writes it.
"""

from __future__ import annotations

import os
import random
import time
from typing import TYPE_CHECKING

from tollway.proxy.core import trace
from tollway.proxy.core.exchange import LOCAL_FAILURE_REPLY
from tollway.proxy.core.spans import Span
from tollway.snapshot import types

if TYPE_CHECKING:
    from tollway.proxy.chain.build import ListenerPlan
    from tollway.proxy.chain.stream import Exchange
    from tollway.proxy.export import SpanSink

_rng = random.Random()


def canonical_service(node: types.Node) -> str:
    labels = node.labels
    return labels.get("service.istio.io/canonical-name",
                      labels.get("app.kubernetes.io/name",
                                 labels.get("app", node.workload or node.name)))


def canonical_revision(node: types.Node) -> str:
    labels = node.labels
    return labels.get("service.istio.io/canonical-revision",
                      labels.get("app.kubernetes.io/version", labels.get("version", "latest")))


def service_name(config: types.ProxyConfig) -> str:
    node = config.node
    return config.tracing.service_name or f"{canonical_service(node)}.{node.namespace}"


class Tracer:
    """One snapshot's span reporting (see module doc)."""

    def __init__(self, config: types.ProxyConfig, sink: SpanSink) -> None:
        node = config.node
        self.sink = sink
        self.service = service_name(config)
        self.sample_rate = max(0.0, min(100.0, config.tracing.sampling)) / 100.0
        self.base_tags = {
            "node_id": node.name,
            "component": "proxy",
            "istio.canonical_service": canonical_service(node),
            "istio.canonical_revision": canonical_revision(node),
            "istio.namespace": node.namespace,
            "istio.mesh_id": config.trust.trust_domain,
        }
        self._local_fqdn = (f"{node.labels.get('app', node.workload or node.name)}."
                            f"{node.namespace}.svc.{node.cluster_domain}")
        self._operations: dict[tuple[str, str], str] = {}
        self.mode = config.tracing.mode
        # customTags: literals and environment values fixed now, headers read per span
        self.header_tags: tuple[tuple[str, str, str], ...] = ()
        for tag, kind, value, default in config.tracing.custom_tags:
            if kind == "literal":
                self.base_tags[tag] = value
            elif kind == "environment":
                self.base_tags[tag] = os.environ.get(value, default)
            elif kind == "header":
                self.header_tags += ((tag, value.lower(), default),)

    def reports(self, listener_kind: str) -> bool:
        """Whether a listener of this kind reports spans under `mode` (Istio: inbound is
        SERVER traffic, outbound and gateways are CLIENT)."""
        if self.mode == "CLIENT_AND_SERVER":
            return True
        return (listener_kind == "inbound") == (self.mode == "SERVER")

    def operation(self, plan: ListenerPlan, cluster_name: str, authority: str) -> str:
        """`{host}:{port}/*` of the destination (istiod's route decorator)."""
        key = (plan.name, cluster_name)
        op = self._operations.get(key)
        if op is None:
            live = plan.clusters.get(cluster_name) if cluster_name else None
            spec = live.spec if live is not None else None
            if plan.kind == "inbound":
                op = f"{self._local_fqdn}:{plan.port}/*"
            elif spec is not None and spec.service:
                op = f"{spec.service}:{spec.port}/*"
            else:
                host = authority.rsplit(":", 1)[0] if authority else "unknown"
                op = f"{host}:{plan.port}/*"
            if len(self._operations) < 4096:
                self._operations[key] = op
        return op

    def finish(self, ex: Exchange, now: float) -> None:
        """Report the spans of a finished request if its trace is sampled."""
        ids = ex.span
        if ids is None:
            if ex.request_id:
                return  # the router decided: not sampled
            # Answered before the router built an upstream head (404, fault abort, ...):
            # decide now, and report the SERVER span alone.
            ctx = trace.prepare(ex.headers, _rng, sample_rate=self.sample_rate, spans=True)
            ids = ctx.span_ids
            if ids is None:
                return
            ex.request_id = ctx.request_id
        trace_id, server_id, parent, _ = ids
        plan = ex.plan
        # loop clock -> wall clock: the loop's clock is CLOCK_MONOTONIC (uvloop's in whole
        # ms, and `now` is cached per loop iteration), so the offset comes from the two
        # clocks read together, not from `now`
        wall = time.time() - time.monotonic()
        status = ex.status
        cluster = ex.cluster_name
        name = self.operation(plan, cluster, ex.authority)
        headers = ex.headers
        tags = {
            **self.base_tags,
            "guid:x-request-id": ex.request_id,
            "http.method": ex.method,
            "http.url": f"{plan.scheme}://{ex.authority}{ex.path}",
            "http.protocol": ex.attrs.get("protocol") or (
                "HTTP/1.1" if ex.http11 else "HTTP/1.0"),
            "user_agent": headers.get("user-agent", "-"),
            "downstream_cluster": headers.get("x-envoy-downstream-service-cluster", "-"),
            "request_size": str(ex.bytes_in),
            "response_size": str(ex.bytes_out),
            "http.status_code": str(status),
            "response_flags": ex.flags,
            "upstream_cluster": cluster or "-",
            "upstream_cluster.name": cluster or "-",
        }
        if status >= 500 or status == 0:
            tags["error"] = "true"
        for tag, header, default in self.header_tags:
            value = headers.get(header, default)
            if value:
                tags[tag] = value
        if ex.grpc:  # Envoy: the response's grpc-status/-message on both spans
            tags.update(ex.attrs.get("grpc_tags") or {})
        server_tags = dict(tags)
        server_tags["peer.address"] = ex.source_ip
        if ex.grpc:  # and the request's gRPC facts on the downstream (SERVER) span
            server_tags["grpc.path"] = ex.target
            server_tags["grpc.authority"] = ex.authority
            server_tags["grpc.content_type"] = headers.get("content-type", "")
            if "grpc-timeout" in headers:
                server_tags["grpc.timeout"] = headers["grpc-timeout"]
        start = ex.start
        spans = [Span(trace_id, server_id, parent, "SERVER", name, int((wall + start) * 1e6),
                      int((now - start) * 1e6), f"{ex.source_ip}:{ex.source_port}",
                      server_tags)]
        fwd = ex.forward
        if cluster and ids is ex.span:
            # tries the router retried: a CLIENT span each, with what that try got
            for span_id, t0, t1, host, code, failure in ex.attrs.get("tries", ()):
                try_tags = {k: v for k, v in tags.items() if not k.startswith("grpc.")}
                if code:  # the upstream answered (a retriable status)
                    try_tags["http.status_code"] = str(code)
                    try_tags["response_flags"] = "-"
                else:  # no response: Envoy's flag for the failure, no status
                    del try_tags["http.status_code"]
                    try_tags["response_flags"] = LOCAL_FAILURE_REPLY.get(failure, (0, "-"))[1]
                try_tags["error"] = "true"
                try_tags["retried"] = "true"
                if host:
                    try_tags["upstream_address"] = host
                    try_tags["peer.address"] = host.rsplit(":", 1)[0]
                spans.append(Span(trace_id, span_id, server_id, "CLIENT", name,
                                  int((wall + t0) * 1e6), int((t1 - t0) * 1e6), host,
                                  try_tags))
            att = fwd.attempt if fwd is not None else None  # the last try (chain/attempt.py)
            sent = att.started_at if att is not None and att.started_at else start
            upstream = ex.upstream_host
            if upstream:
                tags["upstream_address"] = upstream
                tags["peer.address"] = upstream.rsplit(":", 1)[0]
            spans.append(Span(trace_id, ex.span[3], server_id, "CLIENT", name,
                              int((wall + sent) * 1e6), int((now - sent) * 1e6), upstream,
                              tags))
        self.sink.offer(spans)
