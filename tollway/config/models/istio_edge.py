"""Istio Gateway, ServiceEntry and WorkloadEntry: traffic entering and leaving the mesh."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from tollway.config.models import istio_rules as rules
from tollway.config.models.common import (
    AlphaWorkloadSelector,
    Labels,
    NonNegInt,
    PortNumber,
    Strict,
)

# Istio protocol.Parse: case-insensitive; anything else is "unsupported" and refused.
PROTOCOLS = ("HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "HTTP_PROXY", "MONGO", "REDIS",
             "MYSQL", "THRIFT", "TCP", "TLS", "UDP")


def _protocol(value: str) -> str:
    if value.upper() not in PROTOCOLS:
        raise ValueError(f"protocol '{value}' is not one of {', '.join(PROTOCOLS)}")
    return value


class GatewayPort(Strict):
    number: PortNumber
    protocol: str
    name: str  # Istio: "port name must be set"
    target_port: PortNumber | None = None

    @field_validator("protocol")
    @classmethod
    def _proto(cls, value: str) -> str:
        return _protocol(value)


class ServerTLS(Strict):
    https_redirect: bool | None = None
    mode: Literal["PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL",
                  "OPTIONAL_MUTUAL"] | None = None
    server_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    ca_crl: str | None = None
    credential_name: str | None = None
    credential_names: list[str] | None = None
    tls_certificates: list[dict[str, str]] | None = None
    subject_alt_names: list[str] | None = None
    verify_certificate_spki: list[str] | None = None
    verify_certificate_hash: list[str] | None = None
    min_protocol_version: Literal["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2",
                                  "TLSV1_3"] | None = None
    max_protocol_version: Literal["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2",
                                  "TLSV1_3"] | None = None
    cipher_suites: list[str] | None = None
    ca_cert_credential_name: str | None = None
    insecure_skip_verify: bool | None = None

    @model_validator(mode="after")
    def _sources(self) -> ServerTLS:
        files = self.server_certificate is not None or self.private_key is not None
        named = bool(self.credential_name or self.credential_names)
        if files and named:
            raise ValueError("give the certificate either as files or as credentialName, "
                             "not both")
        if self.mode in ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL") and not named and not (
            self.server_certificate and self.private_key
        ) and not self.tls_certificates:
            raise ValueError(f"tls mode {self.mode} needs credentialName (a Secret) or "
                             "serverCertificate and privateKey files")
        return self


class Server(Strict):
    port: GatewayPort
    hosts: list[str] = Field(min_length=1)
    tls: ServerTLS | None = None
    bind: str | None = None
    default_endpoint: str | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _tls_needed(self) -> Server:
        proto = self.port.protocol.upper()
        if proto in ("HTTPS", "TLS") and self.tls is None:
            raise ValueError(f"a {self.port.protocol} server needs a tls block")
        if proto not in ("HTTPS", "TLS") and self.tls is not None:
            t = self.tls
            only_redirect = proto in ("HTTP", "HTTP2", "GRPC", "GRPC-WEB") and not (
                t.mode not in (None, "PASSTHROUGH") or t.ca_certificates or t.private_key
                or t.server_certificate or t.credential_name)
            if not only_redirect:
                raise ValueError(f"a {self.port.protocol} server cannot have TLS settings "
                                 "(only httpsRedirect on a plain HTTP port)")
        if self.port.target_port is not None:
            raise ValueError("port.targetPort has no effect on a Gateway (Istio refuses it)")
        return self


class GatewaySpec(Strict):
    selector: Labels | None = None
    servers: list[Server] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> GatewaySpec:
        seen: set[str] = set()
        for s in self.servers:
            if s.port.name:
                if s.port.name in seen:
                    raise ValueError(f"port name '{s.port.name}' is used by two servers")
                seen.add(s.port.name)
        return self


class WorkloadEntrySpec(Strict):
    address: str | None = None
    ports: dict[str, PortNumber] | None = None
    labels: Labels | None = None
    network: str | None = None
    locality: str | None = None
    weight: NonNegInt | None = None
    service_account: str | None = None

    @model_validator(mode="after")
    def _addr(self) -> WorkloadEntrySpec:
        if not self.address and not self.network:
            raise ValueError("a workload entry needs an address")
        for name in self.ports or {}:
            rules.dns_label(name, "port name")
        addr = self.address or ""
        if addr.startswith(rules.UNIX_PREFIX):
            rules.unix_address(addr)
            if self.ports:
                raise ValueError(f"unix endpoint {addr} must not include ports")
        elif addr and not rules.is_ip(addr) and not rules.is_fqdn(addr):
            raise ValueError(f"address '{addr}' is not an IP address, a host name or "
                             "unix://PATH")
        return self


class SEPort(Strict):
    number: PortNumber
    protocol: str | None = None
    name: str | None = None
    target_port: PortNumber | None = None

    @field_validator("protocol")
    @classmethod
    def _proto(cls, value: str | None) -> str | None:
        # An empty protocol means "detect it" (Istio sniffs), as if it were not given.
        return value if not value else _protocol(value)


class ServiceEntrySpec(Strict):
    hosts: list[str] = Field(min_length=1, max_length=256)
    addresses: list[str] | None = None
    ports: list[SEPort] | None = None
    location: Literal["MESH_EXTERNAL", "MESH_INTERNAL"] | None = None
    resolution: Literal["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"] | None = None
    endpoints: list[WorkloadEntrySpec] | None = None
    workload_selector: AlphaWorkloadSelector | None = None
    export_to: list[str] | None = None
    subject_alt_names: list[str] | None = None

    @model_validator(mode="after")
    def _rules(self) -> ServiceEntrySpec:
        if "*" in self.hosts:
            raise ValueError("host '*' is invalid in a ServiceEntry")
        if self.endpoints is not None and self.workload_selector is not None:
            raise ValueError("set endpoints or workloadSelector, not both")
        if self.resolution == "NONE" and self.endpoints:
            raise ValueError("resolution NONE takes no endpoints (use STATIC or DNS)")
        self._ports()
        resolution = self.resolution or "NONE"
        if any("/" in a for a in self.addresses or []) and resolution not in ("NONE", "STATIC"):
            raise ValueError("CIDR addresses are allowed only with resolution NONE or STATIC")
        if resolution == "DNS_ROUND_ROBIN" and len(self.endpoints or []) > 1:
            raise ValueError("resolution DNS_ROUND_ROBIN takes at most 1 endpoint")
        if resolution == "STATIC":
            for e in self.endpoints or []:
                addr = e.address or ""
                if addr and not rules.is_ip(addr) and not addr.startswith(rules.UNIX_PREFIX):
                    raise ValueError(f"endpoint address '{addr}' must be an IP address (or "
                                     "unix://PATH) with resolution STATIC")
        if resolution != "NONE" and len(self.hosts) > 1:
            for p in self.ports or []:
                proto = (p.protocol or "").upper()
                if proto not in ("HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "HTTP_PROXY",
                                 "TLS"):
                    raise ValueError("several hosts need HTTP or TLS ports (a TCP port cannot "
                                     "tell the hosts apart) unless resolution is NONE")
        return self

    def _ports(self) -> None:
        names: set[str] = set()
        numbers: set[int] = set()
        for p in self.ports or []:
            rules.dns_label(p.name or "", "port name")
            if p.name in names:
                raise ValueError(f"port name '{p.name}' is defined twice")
            if p.number in numbers:
                raise ValueError(f"port {p.number} is defined twice")
            names.add(p.name or "")
            numbers.add(p.number)
        for e in self.endpoints or []:
            for name in e.ports or {}:
                if name not in names:
                    raise ValueError(f"endpoint port '{name}' is not one of this "
                                     f"ServiceEntry's ports ({', '.join(sorted(names))})")
        unix = [e for e in self.endpoints or [] if (e.address or "").startswith("unix://")]
        if unix and len(names) != 1:
            raise ValueError("a ServiceEntry with unix socket endpoints needs exactly 1 port")
