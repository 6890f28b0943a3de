"""Fixtures for e2e tests: meshes started from temp copies of examples/, always stopped."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from e2e_mesh import EXAMPLES, Mesh

from tests.conftest import reap_members as _reap

# A mesh alone may take its whole 120 s start-up wait on a loaded 2-core host; the suite's
# default 120 s per test would cut it before the wait can report what `tollway up` said.
E2E_TIMEOUT = 300


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(E2E_TIMEOUT))


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


