"""Fixtures for e2e tests: meshes started from temp copies of examples/, always stopped."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from e2e_mesh import EXAMPLES, Mesh


@pytest.fixture
def mesh_factory(tmp_path: Path) -> Iterator[Callable[[str], Mesh]]:
    meshes: list[Mesh] = []

    def make(example: str) -> Mesh:
        root = tmp_path / example
        shutil.copytree(EXAMPLES / example, root)
        mesh = Mesh(root)
        meshes.append(mesh)
        mesh.start()
        return mesh

    yield make
    for mesh in meshes:
        mesh.stop()
        _reap(mesh.root / ".tollway" / "members.json")


def _reap(members: Path) -> None:
    """If a test killed `tollway up` and failed before restarting it, stop what it left."""
    try:
        rows = json.loads(members.read_text())
    except (OSError, ValueError):
        return
    for row in rows.values():
        for key in ("sidecar_pid", "app_pid"):
            if row.get(key):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(row[key]), signal.SIGTERM)
