"""Snapshots for sidecars in pods: the pod, as the API server has it, completes the node.

A sidecar registers as POD.NAMESPACE with its service account (checked against its
token by TokenReview); its labels and workload are taken from the Pod object, never
from what the sidecar says, and its captured inbound listener gets a chain per
container port the pod declares (other ports are served as they come: types.Listener).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import msgspec

from tollway.config.meshconfig import MeshConfig
from tollway.control import translate
from tollway.control.compiler import MeshCompiler, proxy_ports
from tollway.control.proxies import ProxyEntry
from tollway.kube.objects import PodInfo
from tollway.snapshot import types


class KubeCompiler(MeshCompiler):
    """MeshCompiler whose sidecars in pods see their pod (`pods`: kept by the Mirror)."""

    def __init__(self, pods: Mapping[str, PodInfo],
                 mesh_config: MeshConfig | None = None) -> None:
        super().__init__(mesh_config)
        self.pods = pods

    def config(self, world: Any, entry: ProxyEntry) -> types.ProxyConfig:
        info = self.pods.get(entry.name)
        if info is None or entry.origin != "vm":
            return super().config(world, entry)
        node = msgspec.structs.replace(entry.node, labels=dict(info.labels),
                                       workload=info.workload)
        ports = proxy_ports(entry)
        if ports.capture is not None:
            address, port, _ = ports.capture
            ports = replace(ports, capture=(address, port, info.app_ports))
        return translate.build(world, node, ports, mesh=self.mesh,
                               mesh_config=self.mesh_config)
