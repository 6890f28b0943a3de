"""Istio's MeshConfig, the mesh-wide settings file: the keys Tollway applies, typed.

`tollway up --mesh-config FILE` and `tollway proxy --mesh-config FILE` read a YAML file
in Istio's MeshConfig shape - what the `istio` ConfigMap's `mesh` key or an
IstioOperator's `spec.meshConfig` hold - so a user's existing file works as is:

    pathNormalization:
      normalization: MERGE_SLASHES

Keys Tollway does not apply yet are ignored with one warning each naming them (never an
error: a real mesh config has dozens). A key Tollway applies is validated strictly: a bad
value is one sentence naming the file, the field and the accepted values.

To apply another key: add a field to `MeshConfig` (camelCase alias, Istio's default) and
carry it to the snapshot in `control/translate/mesh.py`; `KNOWN_KEYS` follows the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

PathNormalizationMode = Literal["NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"]


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", alias_generator=to_camel,
                              populate_by_name=False, frozen=True)


class ProxyPathNormalization(_Model):
    """meshConfig.pathNormalization: how paths are normalized before routing and policy."""

    normalization: PathNormalizationMode = "BASE"


class MeshConfig(_Model):
    """The MeshConfig keys Tollway applies (Istio's defaults when absent)."""

    path_normalization: ProxyPathNormalization = ProxyPathNormalization()


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
    warnings = tuple(
        f"{source}: {prefix}{key} is not applied by Tollway (it applies "
        f"{', '.join(sorted(KNOWN_KEYS))}); ignored"
        for key in data if key not in KNOWN_KEYS
    )
    try:
        config = MeshConfig.model_validate(known)
    except ValidationError as exc:
        raise MeshConfigError(f"{source}: {_sentence(exc, prefix)}") from None
    return LoadedMeshConfig(config, warnings)


def _sentence(exc: ValidationError, prefix: str) -> str:
    err = exc.errors()[0]
    field = prefix + ".".join(str(p) for p in err["loc"])
    if err["type"] == "literal_error":
        allowed = err.get("ctx", {}).get("expected", "")
        return f"{field} is {err.get('input')!r}; use one of {allowed}"
    if err["type"] in ("model_type", "model_attributes_type", "dict_type"):
        return f"{field} must be a mapping of its fields, not {err.get('input')!r}"
    if err["type"] == "extra_forbidden":
        return f"{field} is not a field here; remove it"
    return f"{field}: {err['msg']}"
