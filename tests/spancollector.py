"""A local span collector for tests: Zipkin v2 JSON (checked against Zipkin's schema) and
OTLP HTTP/protobuf (parsed with OTLP's own messages), on an ephemeral loopback port.

Every POST body is validated before it is kept: a payload that breaks the Zipkin v2
schema is answered 400 and recorded in `errors`, so a test fails on it. `delay` makes
the collector slow (each POST waits that long before answering).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA = json.loads((Path(__file__).parent / "data" / "zipkin2-spans.schema.json").read_text())
_VALIDATOR = jsonschema.Draft202012Validator(
    SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def zipkin_errors(payload: Any) -> list[str]:
    """Every way `payload` breaks the Zipkin v2 ListOfSpans schema (empty: valid)."""
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in _VALIDATOR.iter_errors(payload)]


class Collector:
    """POST /api/v2/spans (Zipkin JSON) and POST /v1/traces (OTLP protobuf)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.zipkin: list[dict[str, Any]] = []  # every Zipkin span received
        self.otlp: list[Any] = []  # every ExportTraceServiceRequest received
        self.errors: list[str] = []
        self.posts = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                outer.posts += 1
                if outer.delay:
                    time.sleep(outer.delay)
                status = outer._take(self.path, self.headers.get("content-type", ""), body)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def zipkin_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v2/spans"

    @property
    def otlp_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"

    def _take(self, path: str, content_type: str, body: bytes) -> int:
        if path == "/api/v2/spans":
            if not content_type.startswith("application/json"):
                self.errors.append(f"zipkin content-type {content_type!r}")
                return 415
            try:
                payload = json.loads(body)
            except ValueError as exc:
                self.errors.append(f"zipkin body is not JSON: {exc}")
                return 400
            errors = zipkin_errors(payload)
            if errors:
                self.errors.extend(errors)
                return 400
            self.zipkin.extend(payload)
            return 202
        if path == "/v1/traces":
            from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
                ExportTraceServiceRequest,
            )

            if content_type != "application/x-protobuf":
                self.errors.append(f"otlp content-type {content_type!r}")
                return 415
            req = ExportTraceServiceRequest()
            try:
                req.ParseFromString(body)
            except Exception as exc:  # protobuf's DecodeError
                self.errors.append(f"otlp body does not parse: {exc}")
                return 400
            self.otlp.append(req)
            return 200
        return 404

    def otlp_spans(self) -> list[tuple[str, Any]]:
        """(service.name, span) of every OTLP span received."""
        out = []
        for req in self.otlp:
            for rs in req.resource_spans:
                service = next((a.value.string_value for a in rs.resource.attributes
                                if a.key == "service.name"), "")
                for ss in rs.scope_spans:
                    out.extend((service, s) for s in ss.spans)
        return out

    def wait(self, n: int, timeout: float = 30.0, otlp: bool = False) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            have = len(self.otlp_spans()) if otlp else len(self.zipkin)
            if have >= n or self.errors:
                return
            time.sleep(0.05)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
