"""What a gateway does to a request from outside the mesh, as Envoy does at the edge.

Istio configures its gateways with `use_remote_address: true` and no trusted hops: the
connection's peer is the client, appended to `X-Forwarded-For` (after whatever the client
claimed, which stays for the app to read but is never taken as the client address), and
the request is an edge request, so a client's `x-request-id` is not trusted and a new one
is made (a caller must not be able to pick the id that ties log lines and traces
together). Sidecars do neither: they keep the request id their caller sent.
"""

from __future__ import annotations

from typing import Any

from tollway.proxy.chain.filter import LocalReply

XFF = "x-forwarded-for"
XFF_B = XFF.encode()
REQUEST_ID = "x-request-id"


class EdgeFilter:
    """Gateway listeners only (build.py decides); first in their chain."""

    name = "edge"

    def on_request(self, ex: Any) -> LocalReply | None:
        headers = ex.headers
        # the router makes a new id when none is left (trace.upstream_lines); its raw
        # copy is never forwarded (the router writes the trace headers itself)
        headers.pop(REQUEST_ID, None)
        peer = ex.source_ip
        if peer:
            prior = headers.get(XFF)
            value = peer if not prior else f"{prior},{peer}"
            headers[XFF] = value
            raw = ex.raw_headers
            if prior is not None:
                raw[:] = [h for h in raw if h[0].lower() != XFF_B]
            raw.append((XFF_B, value.encode("latin-1")))
        return None
