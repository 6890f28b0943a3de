"""The `istio` ConfigMap's `mesh` key: Istio's place for MeshConfig, read by the control plane.

The chart ships the ConfigMap (charts/tollway/templates/configmap.yaml, from
`.Values.meshConfig`) in the control plane's namespace. Like istiod, the control plane
follows it while running: it re-reads the ConfigMap every few seconds and, when the text
changed, parses it with the same rules as `tollway up --mesh-config` (config/meshconfig.py)
and recompiles every proxy's snapshot. A ConfigMap that cannot be used is said in one
sentence and the mesh config in force stays (Istio's defaults at start); a missing
ConfigMap means Istio's defaults.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from tollway.config.meshconfig import MeshConfig, MeshConfigError, parse_mesh_config

log = logging.getLogger(__name__)
NAME = "istio"
KEY = "mesh"


class Requester(Protocol):
    async def request(self, method: str, path: str, *, body: Any = None,
                      content_type: str = ..., params: Mapping[str, str] | None = None,
                      ) -> tuple[int, Any]: ...


@dataclass(frozen=True)
class Read:
    """One reading: the text seen, and the config (None: keep what is in force)."""

    text: str | None
    config: MeshConfig | None
    messages: tuple[str, ...] = ()


def parse_configmap(obj: Mapping[str, Any] | None, namespace: str) -> Read:
    """The MeshConfig in a ConfigMap object (None: no ConfigMap, Istio's defaults)."""
    where = f"ConfigMap {namespace}/{NAME} key {KEY}"
    if obj is None:
        return Read(None, MeshConfig())
    data = obj.get("data")
    text = data.get(KEY) if isinstance(data, Mapping) else None
    if not isinstance(text, str):
        return Read(None, MeshConfig())
    try:
        parsed = YAML(typ="safe").load(text)
    except YAMLError as exc:
        return Read(text, None, (f"{where}: not YAML ({str(exc).splitlines()[0]}); the mesh "
                                 "config in force stays",))
    try:
        loaded = parse_mesh_config(parsed, where)
    except MeshConfigError as exc:
        return Read(text, None, (f"{exc}; the mesh config in force stays",))
    return Read(text, loaded.config, tuple(f"warning: {w}" for w in loaded.warnings))


async def read(api: Requester, namespace: str) -> Read:
    status, body = await api.request("GET", f"/api/v1/namespaces/{namespace}/configmaps/{NAME}")
    if status == 404:
        return parse_configmap(None, namespace)
    if status != 200 or not isinstance(body, Mapping):
        return Read("\0unreadable", None, (f"ConfigMap {namespace}/{NAME}: the API server "
                                           f"answered {status}; the mesh config in force "
                                           "stays",))
    return parse_configmap(body, namespace)


async def follow(api: Requester, namespace: str, apply: Callable[[MeshConfig], None],
                 echo: Callable[[str], None], *, interval: float = 5.0,
                 stop: asyncio.Event | None = None) -> None:
    """Apply the ConfigMap's mesh config now and each time its text changes."""
    seen: str | None = "\0never"
    stop = stop or asyncio.Event()
    while not stop.is_set():
        try:
            found = await read(api, namespace)
        except Exception as exc:  # the API server away: try again, keep what is in force
            log.warning("reading ConfigMap %s/%s: %s", namespace, NAME, exc)
            found = Read(seen, None)
        if found.text != seen:
            seen = found.text
            for line in found.messages:
                echo(f"tollway control-plane: {line}")
            if found.config is not None:
                apply(found.config)
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except TimeoutError:
            pass
