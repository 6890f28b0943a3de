"""`--mesh-config FILE` for `tollway up` and `tollway proxy`: read, warn, or exit 1."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer

from tollway.config.meshconfig import MeshConfig, MeshConfigError, load_mesh_config

HELP = ("Istio MeshConfig YAML (the `mesh` ConfigMap key); applied: pathNormalization, "
        "enableTracing, defaultProviders, extensionProviders (zipkin, opentelemetry, "
        "envoyFileAccessLog, prometheus), defaultConfig.tracing.sampling, accessLogFile, "
        "accessLogEncoding, accessLogFormat.")


def mesh_from_flag(path: Path | None, warn: Callable[[str], None]) -> MeshConfig | None:
    """The mesh config in FILE (None without the flag); a file that cannot be used ends
    the command with its one sentence (exit 1), before anything starts."""
    if path is None:
        return None
    try:
        loaded = load_mesh_config(path)
    except MeshConfigError as exc:
        typer.echo(f"error: --mesh-config {exc}", err=True)
        raise typer.Exit(1) from None
    for line in loaded.warnings:
        warn(f"warning: {line}")
    return loaded.config
