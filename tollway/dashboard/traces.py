"""The dashboard's "Traces" panel: the latest traces in the mesh's Jaeger, one row each
[pure], so a request (found by its x-request-id or trace id) links to its trace.

Built from Jaeger's HTTP query API answers (`/api/traces?service=S`: `{data: [trace]}`, each
trace `{traceID, spans, processes}`); the control plane asks Jaeger when the page polls
(web.py). A row names the root span (the first hop that reported: the gateway or the
client proxy), the request id Envoy's `guid:x-request-id` tag carries, every service the
trace crossed in order of appearance, the worst HTTP status, the duration and the links:
Jaeger's trace page and its JSON (`/api/traces/ID`, complete even where the UI page is
Jaeger's placeholder, see control/local/jaeger.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MAX_ROWS = 25


def _tags(span: dict[str, Any]) -> dict[str, Any]:
    return {str(t.get("key")): t.get("value") for t in span.get("tags") or ()
            if isinstance(t, dict)}


def row(trace: dict[str, Any], query_url: str) -> dict[str, Any] | None:
    """One trace as a table row (None for a trace without spans)."""
    spans = [s for s in trace.get("spans") or () if isinstance(s, dict)]
    if not spans:
        return None
    ids = {s.get("spanID") for s in spans}
    processes = trace.get("processes") or {}

    def service(span: dict[str, Any]) -> str:
        return str((processes.get(span.get("processID")) or {}).get("serviceName", "?"))

    spans.sort(key=lambda s: int(s.get("startTime") or 0))
    # the root: the earliest span whose parent is not in this trace (the caller's own
    # span, when the request came with a traceparent, is not reported by the mesh)
    root = next((s for s in spans if not any(r.get("spanID") in ids
                                             for r in s.get("references") or ())), spans[0])
    children: dict[str, list[dict[str, Any]]] = {}
    for s in spans:
        for r in s.get("references") or ():
            children.setdefault(str(r.get("spanID")), []).append(s)
    # services in the order the request crossed them: depth first from the root, each
    # span's children by start time (clocks of different proxies may disagree by a ms)
    order: list[str] = []
    stack, visited = [root], set()
    while stack:
        span = stack.pop()
        if id(span) in visited:
            continue
        visited.add(id(span))
        order.append(service(span))
        stack.extend(reversed(children.get(str(span.get("spanID")), [])))
    statuses = []
    for s in spans:
        code = str(_tags(s).get("http.status_code", ""))
        if code.isdigit():
            statuses.append(int(code))
    start = min(int(s.get("startTime") or 0) for s in spans)
    end = max(int(s.get("startTime") or 0) + int(s.get("duration") or 0) for s in spans)
    trace_id = str(trace.get("traceID", ""))
    root_tags = _tags(root)
    return {
        "trace_id": trace_id,
        "request_id": str(root_tags.get("guid:x-request-id", "")),
        "root": service(root),
        "operation": str(root.get("operationName", "")),
        "method": str(root_tags.get("http.method", "")),
        "url": str(root_tags.get("http.url", "")),
        "services": list(dict.fromkeys([*order, *(service(s) for s in spans)])),
        "spans": len(spans),
        "status": max(statuses) if statuses else None,
        "error": any(_tags(s).get("error") in (True, "true") for s in spans),
        "start_us": start,
        "duration_ms": round((end - start) / 1000.0, 3),
        "link": f"{query_url}/trace/{trace_id}",
        "json": f"{query_url}/api/traces/{trace_id}",
    }


def view(answers: Iterable[dict[str, Any]], query_url: str) -> dict[str, Any]:
    """The panel's JSON from Jaeger's answers (one per service asked; traces deduplicated
    by id, the newest first).

    A trace found in several answers keeps its copy with the most spans: each proxy
    exports its spans in batches of its own and Jaeger answers each service's query at
    its own moment, so one answer may hold part of a trace that another holds whole (the
    first copy kept showed, say, 4 of 8 spans and a root that was not the gateway)."""
    seen: dict[str, dict[str, Any]] = {}
    for answer in answers:
        for trace in answer.get("data") or ():
            r = row(trace, query_url) if isinstance(trace, dict) else None
            if r is not None:
                kept = seen.get(r["trace_id"])
                if kept is None or r["spans"] > kept["spans"]:
                    seen[r["trace_id"]] = r
    rows = sorted(seen.values(), key=lambda r: r["start_us"], reverse=True)[:MAX_ROWS]
    return {"enabled": True, "url": query_url, "traces": rows}


def disabled() -> dict[str, Any]:
    return {"enabled": False, "url": None, "traces": [],
            "message": "No tracing backend: `tollway up --tracing DIR` runs Jaeger and links "
                       "each request's trace here."}
