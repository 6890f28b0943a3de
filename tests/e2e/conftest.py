"""Fixtures for e2e tests: meshes started from temp copies of examples/, always stopped."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from e2e_mesh import EXAMPLES, Mesh

from tests.conftest import reap_members as _reap


@pytest.fixture
def mesh_factory(tmp_path: Path) -> Iterator[Callable[..., Mesh]]:
    meshes: list[Mesh] = []

    def make(example: str, extra_args: list[str] | None = None) -> Mesh:
        root = tmp_path / example
        shutil.copytree(EXAMPLES / example, root)
        mesh = Mesh(root)
        mesh.extra_args = list(extra_args or ())
        meshes.append(mesh)
        mesh.start()
        return mesh

    yield make
    for mesh in meshes:
        mesh.stop()
        _reap(mesh.root / ".tollway" / "members.json")


