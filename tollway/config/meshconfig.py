"""Istio's MeshConfig, the mesh-wide settings file: the keys Tollway applies, typed.

`tollway up --mesh-config FILE` and `tollway proxy --mesh-config FILE` read a YAML file
in Istio's MeshConfig shape - what the `istio` ConfigMap's `mesh` key or an
IstioOperator's `spec.meshConfig` hold - so a user's existing file works as is:

    pathNormalization:
      normalization: MERGE_SLASHES
    enableTracing: true
    defaultConfig: {tracing: {sampling: 10}}
    defaultProviders: {tracing: [otel]}
    extensionProviders:
    - {name: otel, opentelemetry: {service: collector.observability, port: 4318,
                                   http: {path: /v1/traces}}}
    accessLogFile: /dev/stdout
    accessLogEncoding: JSON

Keys Tollway does not apply yet are ignored with one warning each naming them (never an
error: a real mesh config has dozens). A key Tollway applies is validated strictly: a bad
value is one sentence naming the file, the field and the accepted values.

To apply another key: add a field to `MeshConfig` (camelCase alias, Istio's default) and
carry it to the snapshot in `control/translate/mesh.py`; `KNOWN_KEYS` follows the model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from tollway.snapshot import logformat

PathNormalizationMode = Literal["NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"]


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", alias_generator=to_camel,
                              populate_by_name=False, frozen=True)


class ProxyPathNormalization(_Model):
    """meshConfig.pathNormalization: how paths are normalized before routing and policy."""

    normalization: PathNormalizationMode = "BASE"


Percent = Annotated[float, Field(ge=0, le=100)]
Port = Annotated[int, Field(ge=1, le=65535)]
Name = Annotated[str, Field(min_length=1)]


class ZipkinProvider(_Model):
    """extensionProviders[].zipkin: Zipkin v2 JSON spans to service:port + path."""

    service: Name
    port: Port
    max_tag_length: int | None = None
    enable64bit_trace_id: bool | None = None
    path: str = "/api/v2/spans"
    headers: list[dict[str, Any]] | None = None
    trace_context_option: str | None = None


class OtelHttp(_Model):
    path: str = "/v1/traces"
    timeout: str | None = None
    headers: list[dict[str, Any]] | None = None


class OpenTelemetryProvider(_Model):
    """extensionProviders[].opentelemetry: OTLP spans; Tollway exports OTLP over HTTP, so
    the `http` block is what it reads (without one Istio speaks gRPC: warned about)."""

    service: Name
    port: Port
    max_tag_length: int | None = None
    http: OtelHttp | None = None
    grpc: dict[str, Any] | None = None
    resource_detectors: dict[str, Any] | None = None
    dynatrace_sampler: dict[str, Any] | None = None


def _envoy_format(value: str) -> str:
    """An Envoy access-log format the proxy can write (snapshot/logformat.py), checked
    here so a bad one is a load error, never a snapshot every proxy refuses."""
    problem = logformat.check(value)
    if problem is not None:
        raise ValueError(problem)
    return value


EnvoyFormat = Annotated[str, AfterValidator(_envoy_format)]


class LogFormat(_Model):
    text: EnvoyFormat | None = None
    labels: dict[str, EnvoyFormat] | None = None


class EnvoyFileAccessLog(_Model):
    """extensionProviders[].envoyFileAccessLog: a file (or /dev/stdout) and its format."""

    path: str = "/dev/stdout"
    log_format: LogFormat | None = None


class ExtensionProvider(_Model):
    """One entry of extensionProviders whose kind Tollway applies (others are warned about
    and dropped before validation: see APPLIED_PROVIDER_KINDS)."""

    name: Name
    zipkin: ZipkinProvider | None = None
    opentelemetry: OpenTelemetryProvider | None = None
    envoy_file_access_log: EnvoyFileAccessLog | None = None
    prometheus: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one(self) -> ExtensionProvider:
        kinds = [k for k in ("zipkin", "opentelemetry", "envoy_file_access_log", "prometheus")
                 if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"extension provider {self.name!r} sets exactly one provider "
                             "kind (zipkin, opentelemetry, envoyFileAccessLog, prometheus)")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("zipkin", "opentelemetry", "envoy_file_access_log",
                                "prometheus") if getattr(self, k) is not None)


class DefaultProviders(_Model):
    """defaultProviders: used where a Telemetry names no provider (Istio's default mesh
    config names prometheus for metrics)."""

    tracing: list[str] = []
    metrics: list[str] = ["prometheus"]
    access_logging: list[str] = []


class ZipkinAddress(_Model):
    address: str | None = None


class LegacyTracing(_Model):
    """defaultConfig.tracing: the percentage of requests sampled (Istio's default 1%) and
    the legacy zipkin address, used when no Telemetry or default provider says otherwise."""

    sampling: Percent | None = None
    zipkin: ZipkinAddress | None = None


class ProxyDefaults(_Model):
    tracing: LegacyTracing | None = None


class MeshConfig(_Model):
    """The MeshConfig keys Tollway applies (Istio's defaults when absent)."""

    path_normalization: ProxyPathNormalization = ProxyPathNormalization()
    enable_tracing: bool = True
    default_providers: DefaultProviders = DefaultProviders()
    extension_providers: list[ExtensionProvider] = []
    default_config: ProxyDefaults = ProxyDefaults()
    access_log_file: str = ""
    access_log_encoding: Literal["TEXT", "JSON"] = "TEXT"
    access_log_format: str = ""

    @field_validator("access_log_format")
    @classmethod
    def _format(cls, fmt: str, info: ValidationInfo) -> str:
        if not fmt.strip():
            return fmt
        if info.data.get("access_log_encoding") == "JSON":
            try:
                labels = json.loads(fmt)
            except ValueError:
                raise ValueError("must be a JSON object of field -> Envoy "
                                 "operator when accessLogEncoding is JSON") from None
            if not isinstance(labels, dict):
                raise ValueError("must be a JSON object when "
                                 "accessLogEncoding is JSON")
            for value in labels.values():
                _envoy_format(str(value))
        else:
            _envoy_format(fmt)
        return fmt
    # HTTP ports' clusters speak HTTP/2 upstream when UPGRADE (a DestinationRule's
    # connectionPool.http.h2UpgradePolicy overrides; control/protocol.py)
    h2_upgrade_policy: Literal["DO_NOT_UPGRADE", "UPGRADE"] = "DO_NOT_UPGRADE"


KNOWN_KEYS: frozenset[str] = frozenset(
    f.alias or name for name, f in MeshConfig.model_fields.items()
)


class MeshConfigError(ValueError):
    """A mesh config file that cannot be used; the message is one sentence for the user."""


@dataclass(frozen=True)
class LoadedMeshConfig:
    config: MeshConfig
    warnings: tuple[str, ...] = ()


def load_mesh_config(path: Path) -> LoadedMeshConfig:
    """Read and check FILE (see module doc); MeshConfigError names what to fix."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MeshConfigError(f"{path}: cannot read the mesh config ({exc.strerror or exc})") \
            from None
    try:
        data = YAML(typ="safe").load(text)
    except YAMLError as exc:
        raise MeshConfigError(f"{path}: not YAML ({str(exc).splitlines()[0]})") from None
    return parse_mesh_config(data, str(path))


def parse_mesh_config(data: Any, source: str) -> LoadedMeshConfig:
    """The MeshConfig in `data` (a mapping; `meshConfig:` around it is accepted too)."""
    if data is None:
        return LoadedMeshConfig(MeshConfig())
    if not isinstance(data, dict):
        raise MeshConfigError(f"{source}: a mesh config is a mapping of MeshConfig keys "
                              "(for example `pathNormalization: {normalization: BASE}`)")
    prefix = ""
    if set(data) == {"meshConfig"} and isinstance(data["meshConfig"], dict):
        data, prefix = data["meshConfig"], "meshConfig."
    known = {k: v for k, v in data.items() if k in KNOWN_KEYS}
    warnings = [
        f"{source}: {prefix}{key} is not applied by Tollway (it applies "
        f"{', '.join(sorted(KNOWN_KEYS))}); ignored"
        for key in data if key not in KNOWN_KEYS
    ]
    known = _applied_parts(known, f"{source}: {prefix}", warnings)
    try:
        config = MeshConfig.model_validate(known)
    except ValidationError as exc:
        raise MeshConfigError(f"{source}: {_sentence(exc, prefix)}") from None
    return LoadedMeshConfig(config, tuple(warnings))


APPLIED_PROVIDER_KINDS = ("zipkin", "opentelemetry", "envoyFileAccessLog", "prometheus")
APPLIED_DEFAULT_CONFIG = ("tracing",)
APPLIED_LEGACY_TRACING = ("sampling", "zipkin")


def _applied_parts(data: dict[str, Any], where: str, warnings: list[str]) -> dict[str, Any]:
    """`data` without the nested parts Tollway does not apply, each said once: provider
    kinds it does not export to, defaultConfig keys other than tracing."""
    out = dict(data)
    providers = data.get("extensionProviders")
    if isinstance(providers, list):
        kept = []
        for i, p in enumerate(providers):
            kinds = [k for k in p if k != "name"] if isinstance(p, dict) else []
            if kinds and not any(k in APPLIED_PROVIDER_KINDS for k in kinds):
                warnings.append(f"{where}extensionProviders[{i}] ({p.get('name')!s}) is of "
                                f"kind {kinds[0]}, which Tollway does not apply "
                                f"(it applies {', '.join(APPLIED_PROVIDER_KINDS)}); ignored")
                continue
            otel = p.get("opentelemetry") if isinstance(p, dict) else None
            if isinstance(otel, dict) and "http" not in otel:
                warnings.append(f"{where}extensionProviders[{i}] ({p.get('name')!s}) sends "
                                "OTLP over gRPC (no `http:` block), which Tollway does not "
                                "export; add `http: {path: /v1/traces}` with the collector's "
                                "OTLP/HTTP port (4318), or its spans are dropped")
            kept.append(p)
        out["extensionProviders"] = kept
    defaults = data.get("defaultConfig")
    if isinstance(defaults, dict):
        for key in defaults:
            if key not in APPLIED_DEFAULT_CONFIG:
                warnings.append(f"{where}defaultConfig.{key} is not applied by Tollway; "
                                "ignored")
        out["defaultConfig"] = {k: v for k, v in defaults.items()
                                if k in APPLIED_DEFAULT_CONFIG}
        tracing = defaults.get("tracing")
        if isinstance(tracing, dict):
            for key in tracing:
                if key not in APPLIED_LEGACY_TRACING:
                    warnings.append(f"{where}defaultConfig.tracing.{key} is not applied by "
                                    "Tollway; ignored")
            out["defaultConfig"]["tracing"] = {k: v for k, v in tracing.items()
                                               if k in APPLIED_LEGACY_TRACING}
    return out


def _sentence(exc: ValidationError, prefix: str) -> str:
    err = exc.errors()[0]
    field = prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{p}"
                             for p in err["loc"]).lstrip(".")
    if err["type"] == "literal_error":
        allowed = err.get("ctx", {}).get("expected", "")
        return f"{field} is {err.get('input')!r}; use one of {allowed}"
    if err["type"] in ("model_type", "model_attributes_type", "dict_type"):
        return f"{field} must be a mapping of its fields, not {err.get('input')!r}"
    if err["type"] == "extra_forbidden":
        return f"{field} is not a field here; remove it"
    return f"{field}: {err['msg'].removeprefix('Value error, ')}"
