"""Spans as an OTLP `ExportTraceServiceRequest`, protobuf-encoded [pure].

Built with the OpenTelemetry protocol's own generated messages (the `opentelemetry-proto`
package) so the wire form is OTLP's, not a copy of it. One ResourceSpans per batch: the
proxy is one resource (`service.name` = its Istio service name, as Envoy's OpenTelemetry
tracer sets it), one ScopeSpans named for Tollway. Imported only by a proxy whose tracing
provider is `opentelemetry` (it pulls in protobuf).
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Status
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from tollway.proxy.core.spans import Span, truncate_tags

_KIND = {"SERVER": PbSpan.SPAN_KIND_SERVER, "CLIENT": PbSpan.SPAN_KIND_CLIENT}
SCOPE = InstrumentationScope(name="tollway.proxy")


def _attr(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _int_attr(key: str, value: int) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(int_value=value))


def export_request(spans: Sequence[Span], service: str, max_tag_length: int = 256
                   ) -> ExportTraceServiceRequest:
    """The request message of one batch (see module doc)."""
    pb_spans = []
    for s in spans:
        tags = truncate_tags(s.tags, max_tag_length)
        status = tags.get("http.status_code", "")
        code = int(status) if status.isdigit() else 0
        attrs = [_attr(k, v) for k, v in tags.items()]
        if code:  # OTel's semantic-convention name beside Envoy's string tag
            attrs.append(_int_attr("http.response.status_code", code))
        pb_spans.append(PbSpan(
            trace_id=bytes.fromhex(s.trace_id),
            span_id=bytes.fromhex(s.span_id),
            parent_span_id=bytes.fromhex(s.parent_id) if s.parent_id else b"",
            name=s.name,
            kind=_KIND[s.kind],
            start_time_unix_nano=s.start_us * 1000,
            end_time_unix_nano=(s.start_us + s.duration_us) * 1000,
            attributes=attrs,
            status=Status(code=Status.STATUS_CODE_ERROR) if tags.get("error") == "true"
            else Status(),
        ))
    resource = Resource(attributes=[_attr("service.name", service)])
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=resource, scope_spans=[ScopeSpans(scope=SCOPE, spans=pb_spans)],
    )])


def otlp_protobuf(spans: Sequence[Span], service: str, max_tag_length: int = 256) -> bytes:
    """A POST body for OTLP/HTTP `/v1/traces` (Content-Type application/x-protobuf)."""
    data: bytes = export_request(spans, service, max_tag_length).SerializeToString()
    return data
