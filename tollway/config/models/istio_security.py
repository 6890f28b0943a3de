"""Istio PeerAuthentication and AuthorizationPolicy (security.istio.io v1, v1beta1)."""

from __future__ import annotations

import json
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from tollway.config.errors import did_you_mean
from tollway.config.models import istio_rules as rules
from tollway.config.models.common import Duration, NonEmptyStr, Strict, WorkloadSelector
from tollway.snapshot.conditions import (
    BRACKET_CONDITIONS,
    PLAIN_CONDITIONS,
    known_condition,
    known_condition_keys,
)

Mode = Literal["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]


class MTLS(Strict):
    mode: Mode | None = None


class PeerAuthenticationSpec(Strict):
    selector: WorkloadSelector | None = None
    mtls: MTLS | None = None
    port_level_mtls: dict[str, MTLS] | None = None

    @field_validator("port_level_mtls")
    @classmethod
    def _ports(cls, value: dict[str, MTLS] | None) -> dict[str, MTLS] | None:
        if value is not None and not value:
            raise ValueError("portLevelMtls must not be empty")
        for key in value or {}:
            if not key.isdigit() or not 1 <= int(key) <= 65535:
                raise ValueError(f"portLevelMtls key '{key}' must be a port number 1-65535")
        return value

    @model_validator(mode="after")
    def _selector(self) -> PeerAuthenticationSpec:
        if self.port_level_mtls and self.selector is None:
            raise ValueError("portLevelMtls needs a selector (workload-level policy only)")
        return self


def _nonempty(values: list[str] | None) -> list[str] | None:
    if values is not None and any(v == "" for v in values):
        raise ValueError("values must not be empty strings")
    return values


class Source(Strict):
    principals: list[str] | None = None
    not_principals: list[str] | None = None
    request_principals: list[str] | None = None
    not_request_principals: list[str] | None = None
    namespaces: list[str] | None = None
    not_namespaces: list[str] | None = None
    ip_blocks: list[str] | None = None
    not_ip_blocks: list[str] | None = None
    remote_ip_blocks: list[str] | None = None
    not_remote_ip_blocks: list[str] | None = None
    service_accounts: list[str] | None = None
    not_service_accounts: list[str] | None = None
    trust_domains: list[str] | None = None
    not_trust_domains: list[str] | None = None

    @field_validator("*")
    @classmethod
    def _ne(cls, value: list[str] | None) -> list[str] | None:
        return _nonempty(value)

    @model_validator(mode="after")
    def _some(self) -> Source:
        if not self.model_fields_set:
            raise ValueError("a source needs at least one field")
        for name in ("ip_blocks", "not_ip_blocks", "remote_ip_blocks", "not_remote_ip_blocks"):
            for value in getattr(self, name) or []:
                rules.ip_or_cidr(value, Source.model_fields[name].alias or name)
        if self.service_accounts and (self.principals or self.namespaces):
            raise ValueError("serviceAccounts cannot be combined with principals or namespaces")
        return self


class Operation(Strict):
    hosts: list[str] | None = None
    not_hosts: list[str] | None = None
    ports: list[str] | None = None
    not_ports: list[str] | None = None
    methods: list[str] | None = None
    not_methods: list[str] | None = None
    paths: list[str] | None = None
    not_paths: list[str] | None = None

    @field_validator("*")
    @classmethod
    def _ne(cls, value: list[str] | None) -> list[str] | None:
        return _nonempty(value)

    @model_validator(mode="after")
    def _some(self) -> Operation:
        if not self.model_fields_set:
            raise ValueError("an operation needs at least one field")
        for value in [*(self.ports or []), *(self.not_ports or [])]:
            rules.port_value(value, "port")
        return self


class From(Strict):
    source: Source


class To(Strict):
    operation: Operation


class Condition(Strict):
    key: str
    values: list[str] | None = None
    not_values: list[str] | None = None

    @field_validator("key")
    @classmethod
    def _known(cls, key: str) -> str:
        # The proxy refuses a snapshot with a key it cannot evaluate (a NACK nobody sees
        # in the manifest); saying so here points at the line to fix instead.
        if not known_condition(key):
            arg = key[key.index("[") + 1:].rstrip("]") if "[" in key else "NAME"
            forms = [*PLAIN_CONDITIONS, *(p + (arg or "NAME") + "]" for p in BRACKET_CONDITIONS)]
            hint = did_you_mean(key, forms) or ";"
            raise ValueError(f"unknown condition key '{key}'{hint} Tollway evaluates only "
                             f"{known_condition_keys()}")
        return key

    @model_validator(mode="after")
    def _some(self) -> Condition:
        if not self.values and not self.not_values:
            raise ValueError(f"condition '{self.key}' needs values or notValues")
        for value in [*(self.values or []), *(self.not_values or [])]:
            if self.key in ("source.ip", "remote.ip", "destination.ip"):
                rules.ip_or_cidr(value, f"{self.key} value")
            elif self.key == "destination.port":
                rules.port_value(value, f"{self.key} value")
        return self


class Rule(Strict):
    from_: list[From] | None = Field(None, alias="from", min_length=1)
    to: list[To] | None = Field(None, min_length=1)
    when: list[Condition] | None = None


class PolicyTargetReference(Strict):
    group: str | None = None
    kind: str
    name: str = Field(min_length=1)
    namespace: str | None = None

    @model_validator(mode="after")
    def _allowed(self) -> PolicyTargetReference:
        # Istio's validatePolicyTargetReference
        if self.namespace:
            raise ValueError("targetRef namespace must not be set; cross-namespace "
                             "references are not supported")
        allowed = {("", "Service"), ("networking.istio.io", "ServiceEntry"),
                   ("gateway.networking.k8s.io", "Gateway")}
        if ((self.group or ""), self.kind) not in allowed:
            raise ValueError(f"targetRef must name a Service, a ServiceEntry "
                             f"(networking.istio.io) or a Gateway (gateway.networking.k8s.io), "
                             f"not {self.group or 'core'}/{self.kind}")
        return self


class Provider(Strict):
    name: str


class AuthorizationPolicySpec(Strict):
    selector: WorkloadSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: list[PolicyTargetReference] | None = None
    action: Literal["ALLOW", "DENY", "AUDIT", "CUSTOM"] | None = None
    provider: Provider | None = None
    rules: list[Rule] | None = None

    @model_validator(mode="after")
    def _rules(self) -> AuthorizationPolicySpec:
        if self.action in ("DENY", "CUSTOM") and not self.rules:
            raise ValueError(f"a {self.action} policy without rules is meaningless; add rules")
        if self.provider is not None and self.action != "CUSTOM":
            raise ValueError("provider is only allowed with action CUSTOM")
        if self.selector is not None and (self.target_ref or self.target_refs):
            raise ValueError("set selector or targetRefs, not both")
        return self


class JWTHeader(Strict):
    name: str = Field(min_length=1)
    prefix: str | None = None


class ClaimToHeader(Strict):
    header: str = Field(min_length=1, pattern=r"^[-_A-Za-z0-9]+$")
    claim: str = Field(min_length=1)


class JWTRule(Strict):
    issuer: str = Field(min_length=1)
    audiences: list[NonEmptyStr] | None = None
    jwks_uri: str | None = None
    jwks: str | None = None
    from_headers: list[JWTHeader] | None = None
    from_params: list[NonEmptyStr] | None = None
    from_cookies: list[NonEmptyStr] | None = None
    output_payload_to_header: str | None = None
    forward_original_token: bool | None = None
    output_claim_to_headers: list[ClaimToHeader] | None = None
    timeout: Duration | None = None
    space_delimited_claims: list[NonEmptyStr] | None = Field(None, max_length=64)
    presence: Literal["OPTIONAL", "REQUIRED"] | None = None

    @field_validator("presence")
    @classmethod
    def _presence(cls, value: str | None) -> str | None:
        # OPTIONAL is what Tollway's JWT filter does (a request without a token passes
        # on to the AuthorizationPolicy). REQUIRED would be a check it does not make,
        # and security fails closed: refuse it rather than let token-less requests in.
        if value == "REQUIRED":
            raise ValueError("presence REQUIRED is not enforced by Tollway; remove it and "
                             "require a token with an AuthorizationPolicy rule "
                             "(from: [{source: {requestPrincipals: ['*']}}])")
        return value

    @field_validator("jwks_uri")
    @classmethod
    def _uri(cls, value: str | None) -> str | None:
        if value is not None:
            parsed = urlsplit(value)
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise ValueError(f"jwksUri '{value}' must be an http(s) URL with a host")
        return value

    @field_validator("jwks")
    @classmethod
    def _jwks(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            doc = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"jwks is not JSON ({exc.args[0]})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise ValueError('jwks must be a JSON Web Key Set: {"keys": [...]}')
        return value


class RequestAuthenticationSpec(Strict):
    selector: WorkloadSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: list[PolicyTargetReference] | None = None
    jwt_rules: list[JWTRule] | None = Field(None, max_length=4096)

    @model_validator(mode="after")
    def _rules(self) -> RequestAuthenticationSpec:
        if self.selector is not None and (self.target_ref or self.target_refs):
            raise ValueError("set selector or targetRefs, not both")
        return self
