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
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from tollway.proxy.core.spans import Span, truncate_tags

_KIND = {"SERVER": PbSpan.SPAN_KIND_SERVER, "CLIENT": PbSpan.SPAN_KIND_CLIENT}
_ERROR = Status.STATUS_CODE_ERROR
SCOPE_NAME = "tollway.proxy"


def export_request(spans: Sequence[Span], service: str, max_tag_length: int = 256
                   ) -> ExportTraceServiceRequest:
    """The request message of one batch (see module doc).

    Filled in place (`add()` and field stores) rather than built from keyword messages:
    with protobuf's upb backend that is ~4x cheaper per span (~12 us instead of ~50 us for
    20 attributes), and this runs for every exported span."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    attr = rs.resource.attributes.add()
    attr.key = "service.name"
    attr.value.string_value = service
    ss = rs.scope_spans.add()
    ss.scope.name = SCOPE_NAME
    add = ss.spans.add
    fromhex = bytes.fromhex
    for s in spans:
        tags = truncate_tags(s.tags, max_tag_length)
        pb = add()
        pb.trace_id = fromhex(s.trace_id)
        pb.span_id = fromhex(s.span_id)
        if s.parent_id:
            pb.parent_span_id = fromhex(s.parent_id)
        pb.name = s.name
        pb.kind = _KIND[s.kind]
        pb.start_time_unix_nano = s.start_us * 1000
        pb.end_time_unix_nano = (s.start_us + s.duration_us) * 1000
        attrs = pb.attributes
        for key, value in tags.items():
            kv = attrs.add()
            kv.key = key
            kv.value.string_value = value
        status = tags.get("http.status_code", "")
        if status.isdigit():  # OTel's semantic-convention name beside Envoy's string tag
            kv = attrs.add()
            kv.key = "http.response.status_code"
            kv.value.int_value = int(status)
        if tags.get("error") == "true":
            pb.status.code = _ERROR
    return req


def otlp_protobuf(spans: Sequence[Span], service: str, max_tag_length: int = 256) -> bytes:
    """A POST body for OTLP/HTTP `/v1/traces` (Content-Type application/x-protobuf)."""
    data: bytes = export_request(spans, service, max_tag_length).SerializeToString()
    return data
