"""The default compiler: `World.build` once per recompute, `translate.build` per proxy.

Adapts a `ProxyEntry` (what the runtime, or a registering VM, said about a proxy) to
translate's `ProxyPorts`. A sidecar has ONE inbound listener, standing for its first
container port (8080 when none is declared): in local mode the app listens on one `PORT`,
so every service port of the workload reaches it through that listener.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tollway.config.meshconfig import MeshConfig
from tollway.config.resource import ResourceSet
from tollway.control import translate
from tollway.control import world as world_mod
from tollway.control.proxies import ProxyEntry, split_hostport
from tollway.control.registry import DEFAULT_PORT, Replica
from tollway.control.translate.mesh import mesh_settings
from tollway.snapshot import types


def proxy_ports(entry: ProxyEntry) -> translate.ProxyPorts:
    """The entry's ports (keys: inbound, outbound, app, service_port, gateway_offset,
    capture)."""
    ports = entry.ports
    inbound: tuple[tuple[int, str, int, str, int], ...] = ()
    listen = ports.get("inbound")
    listen_host = "127.0.0.1"
    if entry.inbound:
        listen_host, listen_port = split_hostport(entry.inbound)
        listen = listen or listen_port
    if listen and "app" in ports:
        service_port = ports.get("service_port", DEFAULT_PORT)
        inbound = ((service_port, listen_host, listen, "127.0.0.1", ports["app"]),)
    outbound = ("127.0.0.1", ports["outbound"]) if "outbound" in ports else None
    # A pod's sidecar behind capture rules: inbound arrives redirected on every address
    # of the pod, so the listener takes 0.0.0.0 (outbound is redirected to 127.0.0.1).
    capture = ("0.0.0.0", ports["capture"], ()) if "capture" in ports else None
    return translate.ProxyPorts(
        inbound=inbound,
        outbound=outbound,
        capture=capture,
        gateway_offset=ports.get("gateway_offset", translate.DEFAULT_GATEWAY_OFFSET),
    )


class MeshCompiler:
    """World + translate, as docs/contracts.md describes them; `mesh_config`: the mesh
    config (`tollway up --mesh-config`): its settings every proxy gets and the telemetry
    defaults Telemetry resources override."""

    def __init__(self, mesh_config: MeshConfig | None = None) -> None:
        self.use_mesh_config(mesh_config)

    def use_mesh_config(self, mesh_config: MeshConfig | None) -> None:
        """Compile with this mesh config from the next recompute on (Kubernetes: the
        `istio` ConfigMap changed; the caller touches the plane)."""
        self.mesh_config = mesh_config or translate.DEFAULT_MESH_CONFIG
        self.mesh: types.Mesh = mesh_settings(mesh_config)

    def world(self, resources: ResourceSet, replicas: Sequence[Replica]) -> world_mod.World:
        return world_mod.World.build(resources, replicas)

    def config(self, world: Any, entry: ProxyEntry) -> types.ProxyConfig:
        return translate.build(world, entry.node, proxy_ports(entry), mesh=self.mesh,
                               mesh_config=self.mesh_config)

    def endpoints(self, world: Any) -> dict[str, Any]:
        return dict(world.endpoints)
