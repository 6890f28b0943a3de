"""MeshConfig (config/meshconfig.py) -> the snapshot's mesh-wide settings (types.Mesh)."""

from __future__ import annotations

from tollway.config.meshconfig import MeshConfig
from tollway.snapshot import types


def mesh_settings(config: MeshConfig | None) -> types.Mesh:
    """What every proxy applies from the mesh config (Istio's defaults for None)."""
    if config is None:
        return types.Mesh()
    return types.Mesh(path_normalization=config.path_normalization.normalization)
