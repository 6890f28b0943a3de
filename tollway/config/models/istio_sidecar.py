"""Istio Sidecar (networking.istio.io v1, v1beta1, v1alpha3): what a workload's sidecar knows.

Tollway implements the part people rely on: `egress[].hosts` scopes which services a
workload's sidecar has routes for (`ns/host`, `./*`, `*/*`, `~/*`), and
`outboundTrafficPolicy.mode` says what happens to a host outside that scope (ALLOW_ANY
passes it through, REGISTRY_ONLY answers 502). Host syntax follows Istio's validation:
every entry is `namespace/dnsName`, where namespace is a name, `.`, `*` or `~`.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from tollway.config.models.common import AlphaWorkloadSelector, Strict
from tollway.config.models.istio_edge import SEPort

_NS = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS = re.compile(r"(\*|(\*\.)?[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?"
                  r"(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*)")


def check_egress_host(value: str) -> str:
    """`namespace/dnsName` as Istio requires; the error says which half is wrong."""
    ns, slash, host = value.partition("/")
    if not slash:
        raise ValueError(f"egress host '{value}' must be namespace/host, e.g. './{value}' "
                         "(this namespace) or '*/" + value + "' (any namespace)")
    if ns not in (".", "*", "~") and not _NS.fullmatch(ns):
        raise ValueError(f"egress host '{value}': namespace '{ns}' must be a namespace "
                         "name, '.', '*' or '~'")
    if ns == "~" and host != "*":
        raise ValueError(f"egress host '{value}': '~' (no namespace) only takes '~/*'")
    if not _DNS.fullmatch(host) or len(host) > 255:
        raise ValueError(f"egress host '{value}': '{host}' is not a host name or wildcard "
                         "('*', '*.example.com', 'reviews.shop.svc.cluster.local')")
    return value


EgressHost = Annotated[str, AfterValidator(check_egress_host)]


SidecarPort = SEPort  # number, protocol, name, targetPort: the ServiceEntry port shape

CaptureMode = Literal["DEFAULT", "IPTABLES", "NONE"]


class EgressListener(Strict):
    port: SidecarPort | None = None
    bind: str | None = None
    capture_mode: CaptureMode | None = None
    hosts: list[EgressHost] = Field(min_length=1)


class IngressListener(Strict):
    port: SidecarPort
    bind: str | None = None
    capture_mode: CaptureMode | None = None
    default_endpoint: str | None = None
    tls: dict[str, object] | None = None
    connection_pool: dict[str, object] | None = None


class OutboundTrafficPolicy(Strict):
    mode: Literal["REGISTRY_ONLY", "ALLOW_ANY"] | None = None
    egress_proxy: dict[str, object] | None = None


class SidecarSpec(Strict):
    workload_selector: AlphaWorkloadSelector | None = None
    ingress: list[IngressListener] | None = None
    egress: list[EgressListener] | None = None
    outbound_traffic_policy: OutboundTrafficPolicy | None = None
    inbound_connection_pool: dict[str, object] | None = None

    @model_validator(mode="after")
    def _listeners(self) -> SidecarSpec:
        if not (self.ingress or self.egress or self.outbound_traffic_policy
                or self.inbound_connection_pool):
            raise ValueError("a Sidecar needs egress, ingress, outboundTrafficPolicy or "
                             "inboundConnectionPool (an empty one changes nothing)")
        catch_all = [i for i, e in enumerate(self.egress or []) if e.port is None]
        if len(catch_all) > 1:
            raise ValueError("only one egress listener may omit port (the catch-all)")
        if catch_all and catch_all[0] != len(self.egress or []) - 1:
            raise ValueError("the egress listener without a port (the catch-all) must be "
                             "the last one")
        ports = [e.port.number for e in self.egress or [] if e.port is not None]
        dup = sorted({p for p in ports if ports.count(p) > 1})
        if dup:
            raise ValueError(f"egress port {dup[0]} is used by two listeners")
        in_ports = [i.port.number for i in self.ingress or []]
        dup = sorted({p for p in in_ports if in_ports.count(p) > 1})
        if dup:
            raise ValueError(f"ingress port {dup[0]} is used by two listeners")
        return self
