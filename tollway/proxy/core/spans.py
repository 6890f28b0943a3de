"""Finished spans as plain data, and their Zipkin v2 JSON form [pure].

A proxy reports two spans per sampled request (see core/trace.py): SERVER for the
request it received, CLIENT for the request it sent upstream, with the tags Envoy sets for
Istio (`http.method`, `http.url`, `http.status_code`, `response_flags`, `upstream_cluster`,
`istio.canonical_service`, `node_id`, `peer.address`, ...). Spans are built on the event
loop only for sampled requests and encoded off it, by the exporter thread (proxy/export.py),
so the request path never pays for JSON or protobuf. OTLP's protobuf form is core/otlp.py.

Zipkin v2 (zipkin-api's zipkin2-api.yaml `ListOfSpans`): lower-hex ids (trace 32, span 16),
`timestamp` and `duration` in integer microseconds (duration >= 1), `kind` upper-case,
`localEndpoint.serviceName` lower-case, tag values strings.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any, Literal

import msgspec

SpanKind = Literal["SERVER", "CLIENT"]


class Span:
    """One finished span (see module doc); `tags` are already strings."""

    __slots__ = ("duration_us", "kind", "name", "parent_id", "remote", "span_id", "start_us",
                 "tags", "trace_id")  # fmt: skip

    def __init__(
        self,
        trace_id: str,
        span_id: str,
        parent_id: str | None,
        kind: SpanKind,
        name: str,
        start_us: int,
        duration_us: int,
        remote: str,
        tags: dict[str, str],
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.kind = kind
        self.name = name
        self.start_us = start_us
        self.duration_us = max(1, duration_us)
        self.remote = remote  # "ip:port" of the peer (downstream for SERVER, upstream for CLIENT)
        self.tags = tags


def truncate_tags(tags: dict[str, str], limit: int) -> dict[str, str]:
    """Tag values cut to `limit` characters (Istio's zipkin maxTagLength, default 256)."""
    if limit <= 0 or all(len(v) <= limit for v in tags.values()):
        return tags
    return {k: v[:limit] for k, v in tags.items()}


def endpoint(address: str) -> dict[str, Any] | None:
    """A Zipkin endpoint from "ip:port" / "[v6]:port" (None when no IP can be read)."""
    host, sep, port = address.rpartition(":")
    if not sep:
        host, port = address, ""
    host = host.strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    out: dict[str, Any] = {"ipv4" if ip.version == 4 else "ipv6": str(ip)}
    if port.isdigit() and 0 < int(port) < 65536:
        out["port"] = int(port)
    return out


def zipkin_dicts(spans: Sequence[Span], service: str, max_tag_length: int = 256
                 ) -> list[dict[str, Any]]:
    """The Zipkin v2 span objects of one batch."""
    local = {"serviceName": service.lower()}
    out = []
    for s in spans:
        d: dict[str, Any] = {
            "traceId": s.trace_id,
            "id": s.span_id,
            "kind": s.kind,
            "name": s.name.lower(),
            "timestamp": s.start_us,
            "duration": s.duration_us,
            "localEndpoint": local,
            "tags": truncate_tags(s.tags, max_tag_length),
        }
        if s.parent_id is not None:
            d["parentId"] = s.parent_id
        remote = endpoint(s.remote) if s.remote else None
        if remote is not None:
            d["remoteEndpoint"] = remote
        out.append(d)
    return out


def zipkin_json(spans: Sequence[Span], service: str, max_tag_length: int = 256) -> bytes:
    """A POST body for Zipkin's `/api/v2/spans` (a JSON list of spans)."""
    return msgspec.json.encode(zipkin_dicts(spans, service, max_tag_length))
