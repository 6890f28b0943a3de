"""Pod volumes as files: what to write for each volume and where each container mounts it.

Kubelet materialises configMap, secret, downwardAPI and projected volumes (including the
`kube-api-access-*` volume the ServiceAccount admission plugin adds: token, ca.crt, namespace)
as files, and emptyDir as a fresh directory. devnode does the same under the pod's state
folder and bind-mounts them at `mountPath` inside the container's private mount namespace.
Pure: ConfigMap/Secret data and tokens come in as arguments; the IO side writes and mounts.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field

from lightkube.models.core_v1 import (
    Container,
    DownwardAPIVolumeFile,
    KeyToPath,
    PodSpec,
    Volume,
)

from tollway.devnode.envvars import EnvError, PodFacts, field_value
from tollway.kit import fieldref

TokenKey = tuple[str, int]  # (audience, expirationSeconds)
DEFAULT_TOKEN_SECONDS = 3607  # what the ServiceAccount admission plugin asks for


class VolumeError(ValueError):
    """A volume devnode cannot provide; the message names the volume and the fix."""


@dataclass(frozen=True)
class VolumePlan:
    name: str
    files: dict[str, tuple[bytes, int]] = field(default_factory=dict)  # rel path -> (data, mode)
    host_path: str | None = None  # hostPath: mount the host's own path
    empty_dir: bool = False


@dataclass(frozen=True)
class Mount:
    volume: str
    sub_path: str
    target: str
    read_only: bool


def _safe_rel(path: str, where: str) -> str:
    norm = posixpath.normpath(path)
    if norm.startswith(("/", "..")) or norm == ".":
        raise VolumeError(f"{where}: path {path!r} must be relative and stay inside the volume")
    return norm


def _keys(
    data: Mapping[str, str], items: list[KeyToPath] | None, mode: int, where: str
) -> dict[str, tuple[bytes, int]]:
    if not items:
        return {_safe_rel(k, where): (v.encode(), mode) for k, v in data.items()}
    out: dict[str, tuple[bytes, int]] = {}
    for item in items:
        if item.key not in data:
            raise VolumeError(f"{where}: key {item.key!r} not found; add it or drop the item")
        out[_safe_rel(item.path, where)] = (data[item.key].encode(), item.mode or mode)
    return out


def _downward(
    items: list[DownwardAPIVolumeFile], pod: PodFacts, mode: int, where: str
) -> dict[str, tuple[bytes, int]]:
    out: dict[str, tuple[bytes, int]] = {}
    for item in items:
        if item.fieldRef is None:
            raise VolumeError(
                f"{where}: {item.path!r} needs fieldRef (resourceFieldRef unsupported)"
            )
        path = item.fieldRef.fieldPath
        if path in ("metadata.labels", "metadata.annotations"):
            text = fieldref.format_map(pod.labels if path == "metadata.labels"
                                       else pod.annotations)
        else:
            try:
                text = field_value(item.fieldRef, pod, where)
            except EnvError as e:
                raise VolumeError(str(e)) from e
        out[_safe_rel(item.path, where)] = (text.encode(), item.mode or mode)
    return out


def needed_tokens(spec: PodSpec) -> list[TokenKey]:
    keys: list[TokenKey] = []
    for v in spec.volumes or []:
        for src in (v.projected.sources or []) if v.projected else []:
            t = src.serviceAccountToken
            if t is not None:
                keys.append((t.audience or "", t.expirationSeconds or DEFAULT_TOKEN_SECONDS))
    return keys


def referenced(spec: PodSpec) -> tuple[set[str], set[str]]:
    """ConfigMap and Secret names the volumes read."""
    maps: set[str] = set()
    secrets: set[str] = set()
    for v in spec.volumes or []:
        if v.configMap is not None and v.configMap.name:
            maps.add(v.configMap.name)
        if v.secret is not None and v.secret.secretName:
            secrets.add(v.secret.secretName)
        for src in (v.projected.sources or []) if v.projected else []:
            if src.configMap is not None and src.configMap.name:
                maps.add(src.configMap.name)
            if src.secret is not None and src.secret.name:
                secrets.add(src.secret.name)
    return maps, secrets


def _lookup(
    store: Mapping[str, Mapping[str, str]], name: str, optional: bool | None, where: str, kind: str
) -> Mapping[str, str]:
    data = store.get(name)
    if data is None:
        if optional:
            return {}
        raise VolumeError(f"{where}: {kind} {name!r} not found; create it or mark it optional")
    return data


@dataclass(frozen=True)
class Sources:
    """What volumes read from the API: ConfigMap/Secret data and issued tokens."""

    config_maps: Mapping[str, Mapping[str, str]]
    secrets: Mapping[str, Mapping[str, str]]
    tokens: Mapping[TokenKey, str] = field(default_factory=dict)

    def keys(
        self,
        kind: str,
        name: str | None,
        items: list[KeyToPath] | None,
        optional: bool | None,
        mode: int,
        where: str,
    ) -> dict[str, tuple[bytes, int]]:
        store = self.config_maps if kind == "configMap" else self.secrets
        return _keys(_lookup(store, name or "", optional, where, kind), items, mode, where)


def plan_volume(v: Volume, pod: PodFacts, src: Sources) -> VolumePlan:
    where = f"volume {v.name!r}"
    if v.emptyDir is not None:
        return VolumePlan(v.name, empty_dir=True)
    if v.hostPath is not None:
        return VolumePlan(v.name, host_path=v.hostPath.path)
    if v.configMap is not None:
        cm = v.configMap
        mode = cm.defaultMode or 0o644
        return VolumePlan(
            v.name, src.keys("configMap", cm.name, cm.items, cm.optional, mode, where)
        )
    if v.secret is not None:
        s = v.secret
        mode = s.defaultMode or 0o644
        return VolumePlan(
            v.name, src.keys("secret", s.secretName, s.items, s.optional, mode, where)
        )
    if v.downwardAPI is not None:
        mode = v.downwardAPI.defaultMode or 0o644
        return VolumePlan(v.name, _downward(v.downwardAPI.items or [], pod, mode, where))
    if v.projected is not None:
        return VolumePlan(v.name, _projected(v, pod, src))
    raise VolumeError(
        f"{where}: only emptyDir, hostPath, configMap, secret, downwardAPI and projected volumes "
        "exist on devnode (no storage drivers); change the volume type"
    )


def _projected(v: Volume, pod: PodFacts, src: Sources) -> dict[str, tuple[bytes, int]]:
    assert v.projected is not None
    where = f"volume {v.name!r}"
    mode = v.projected.defaultMode or 0o644
    files: dict[str, tuple[bytes, int]] = {}
    for one in v.projected.sources or []:
        if one.serviceAccountToken is not None:
            t = one.serviceAccountToken
            key = (t.audience or "", t.expirationSeconds or DEFAULT_TOKEN_SECONDS)
            if key not in src.tokens:
                raise VolumeError(f"{where}: no service account token was issued for {key}")
            files[_safe_rel(t.path, where)] = (src.tokens[key].encode(), mode)
        elif one.configMap is not None:
            cm = one.configMap
            files.update(src.keys("configMap", cm.name, cm.items, cm.optional, mode, where))
        elif one.secret is not None:
            sec = one.secret
            files.update(src.keys("secret", sec.name, sec.items, sec.optional, mode, where))
        elif one.downwardAPI is not None:
            files.update(_downward(one.downwardAPI.items or [], pod, mode, where))
        else:
            raise VolumeError(f"{where}: projected source kind is not supported by devnode")
    return files


def container_mounts(c: Container, volumes: Mapping[str, VolumePlan]) -> list[Mount]:
    out: list[Mount] = []
    for m in c.volumeMounts or []:
        where = f"container {c.name!r} volumeMount {m.name!r}"
        if m.name not in volumes:
            raise VolumeError(f"{where}: no volume of that name in spec.volumes; add it")
        if not m.mountPath.startswith("/"):
            raise VolumeError(f"{where}: mountPath {m.mountPath!r} must be absolute")
        sub = _safe_rel(m.subPath, where) if m.subPath else ""
        out.append(Mount(m.name, sub, posixpath.normpath(m.mountPath), bool(m.readOnly)))
    return out
