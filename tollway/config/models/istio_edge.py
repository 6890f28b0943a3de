"""Istio Gateway, ServiceEntry and WorkloadEntry: traffic entering and leaving the mesh."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from tollway.config.models.common import Labels, NonNegInt, PortNumber, Strict

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
    name: str | None = None
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
        if self.port.protocol.upper() in ("HTTPS", "TLS") and self.tls is None:
            raise ValueError(f"a {self.port.protocol} server needs a tls block")
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
    workload_selector: dict[str, Labels] | None = None
    export_to: list[str] | None = None
    subject_alt_names: list[str] | None = None

    @model_validator(mode="after")
    def _rules(self) -> ServiceEntrySpec:
        if "*" in self.hosts:
            raise ValueError("host '*' is invalid in a ServiceEntry")
        if self.endpoints and self.workload_selector:
            raise ValueError("set endpoints or workloadSelector, not both")
        if self.resolution == "NONE" and self.endpoints:
            raise ValueError("resolution NONE takes no endpoints (use STATIC or DNS)")
        return self
