"""`--mesh-config FILE` for `tollway up` and `tollway proxy`: read, warn, or exit 1."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer

from tollway.config.meshconfig import MeshConfigError, load_mesh_config
from tollway.control.translate.mesh import mesh_settings
from tollway.snapshot import types

HELP = ("Istio MeshConfig YAML (the `mesh` ConfigMap key); applied: pathNormalization "
        "(NONE, BASE default, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES).")


def mesh_from_flag(path: Path | None, warn: Callable[[str], None]) -> types.Mesh | None:
    """The snapshot's mesh settings from FILE (None without the flag); a file that cannot
    be used ends the command with its one sentence (exit 1), before anything starts."""
    if path is None:
        return None
    try:
        loaded = load_mesh_config(path)
    except MeshConfigError as exc:
        typer.echo(f"error: --mesh-config {exc}", err=True)
        raise typer.Exit(1) from None
    for line in loaded.warnings:
        warn(f"warning: {line}")
    return mesh_settings(loaded.config)
