"""Which protocol a port speaks and which one a cluster uses upstream: Istio's rules [pure].

A Service port's protocol comes from `appProtocol` when set (with Kubernetes' standard
names `kubernetes.io/h2c`, `kubernetes.io/ws`, `kubernetes.io/wss`), else from its name:
the whole name or the part before the first `-` (`grpc-web` first, it has a dash), so
`http2-api`, `grpc`, `http-web`, `tcp-db` (Istio's `kube.ConvertProtocol`). A name that
says nothing leaves the protocol unknown (""): Istio sniffs such ports, and a sidecar's
cluster for one uses the client's protocol. Well-known ports (SMTP, DNS, MySQL, MongoDB)
default to TCP. A ServiceEntry port states its protocol outright.

The upstream protocol (Istio's `setUpstreamProtocol` and `shouldH2Upgrade`):
- HTTP2, GRPC and GRPC-Web ports: HTTP/2;
- a DestinationRule's `connectionPool.http.useClientProtocol`: the client's protocol;
- its `h2UpgradePolicy` UPGRADE: HTTP/2 (the user vouches the port is HTTP), DO_NOT_UPGRADE:
  HTTP/1.1; DEFAULT or absent: the mesh's `h2UpgradePolicy` (Istio's default
  DO_NOT_UPGRADE), applied to HTTP ports only; either only towards sidecars (mTLS
  clusters), see `upstream`;
- an unknown port on a sidecar: the client's protocol.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

Upstream = Literal["http1", "http2", "downstream"]

_KNOWN = {
    "tcp": "TCP", "udp": "UDP", "grpc": "GRPC", "grpc-web": "GRPC-Web", "http": "HTTP",
    "http_proxy": "HTTP_PROXY", "http2": "HTTP2", "https": "HTTPS", "tls": "TLS",
    "mongo": "Mongo", "redis": "Redis", "mysql": "MySQL",
}
_WELL_KNOWN_TCP = frozenset((25, 53, 3306, 27017))
_HTTP2 = frozenset(("HTTP2", "GRPC", "GRPC-Web"))
_HTTP = frozenset(("HTTP", "HTTP2", "GRPC", "GRPC-Web", "HTTP_PROXY"))


def parse(name: str) -> str:
    """Istio's `protocol.Parse`: a protocol name, case-insensitive; "" when unknown."""
    return _KNOWN.get(name.lower(), "")


def port_protocol(number: int, name: str | None, app_protocol: str | None = None,
                  transport: str | None = None) -> str:
    """A Kubernetes Service (or container) port's protocol; "" when it must be sniffed."""
    if transport == "UDP":
        return "UDP"
    text = name or ""
    if app_protocol:
        text = app_protocol
        standard = {"kubernetes.io/h2c": "HTTP2", "kubernetes.io/ws": "HTTP",
                    "kubernetes.io/wss": "HTTPS"}.get(app_protocol)
        if standard:
            return standard
    if text[:8].lower() == "grpc-web":
        return "GRPC-Web"
    found = parse(text.split("-", 1)[0])
    if not found and number in _WELL_KNOWN_TCP:
        return "TCP"
    return found


def is_http2(protocol: str) -> bool:
    return protocol in _HTTP2


def is_http(protocol: str) -> bool:
    return protocol in _HTTP


def upstream(protocol: str, http_settings: Mapping[str, Any] | None, mesh_upgrade: bool,
             sidecar: bool = True, to_sidecar: bool = True) -> Upstream:
    """The protocol a cluster for a port of `protocol` speaks to its endpoints.

    `to_sidecar`: the endpoints are mesh sidecars (the cluster is ISTIO_MUTUAL). An
    upgrade by policy applies only then: a sidecar speaks HTTP/2 and talks to its app in
    the app's own protocol, while an app reached directly may not speak h2c at all (Istio
    upgrades regardless and leaves that to the user; its own code notes the mTLS case as
    the one to upgrade)."""
    if is_http2(protocol):
        return "http2"
    http = http_settings or {}
    if http.get("useClientProtocol"):
        return "downstream"
    policy = http.get("h2UpgradePolicy")
    if policy == "UPGRADE":
        return "http2" if to_sidecar else "http1"
    if policy != "DO_NOT_UPGRADE" and is_http(protocol) and mesh_upgrade and to_sidecar:
        return "http2"
    if not protocol and sidecar:
        return "downstream"
    return "http1"


def inbound(protocol: str) -> Upstream:
    """The protocol an inbound listener speaks to its app (Istio's inbound cluster: HTTP/2
    for HTTP2/GRPC ports, the client's protocol for a sniffed port)."""
    if is_http2(protocol):
        return "http2"
    return "downstream" if not protocol else "http1"
