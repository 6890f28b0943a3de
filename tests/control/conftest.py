"""Fixtures for control-plane tests: resources built without YAML, a fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from tollway.config.resource import Resource, SourceRef
from tollway.kit.clock import FakeClock


def _make_resource(
    kind: str, name: str, spec: dict[str, Any] | None = None, namespace: str = "default",
    labels: dict[str, str] | None = None,
) -> Resource:
    spec = spec or {}
    return Resource(
        api_version="v1", kind=kind, name=name, namespace=namespace, spec=spec,
        raw={"kind": kind, "metadata": {"name": name}, "spec": spec},
        source=SourceRef("test.yaml", 0, 1), labels=labels or {},
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(name="make_resource")
def make_resource_fixture() -> object:
    return _make_resource


class FakeCompiler:
    """Snapshots whose version is the resource names + ready replicas + the node name."""

    def world(self, resources: Any, replicas: Any) -> Any:
        return (tuple(sorted(r.name for r in resources)), tuple(sorted(r.name for r in replicas)))

    def config(self, world: Any, entry: Any) -> Any:
        from tollway.kit.hashing import content_hash
        from tollway.snapshot import types

        return types.ProxyConfig(
            version=content_hash([world, entry.name]), node=entry.node,
            route_tables=tuple(types.RouteTable(name=n) for n in world[0]),
        )

    def endpoints(self, world: Any) -> dict[str, Any]:
        return {"replicas": list(world[1])}


class FakeServer:
    """Stands for ProxyServer: records applied snapshots, refuses route table 'bad'."""

    def __init__(self) -> None:
        self.version: str | None = None
        self.applied: list[Any] = []

    def apply(self, config: Any) -> None:
        from tollway.snapshot import codec

        if any(t.name == "bad" for t in config.route_tables):
            raise codec.SnapshotError("route table 'bad' refused")
        self.version = config.version
        self.applied.append(config)


@pytest.fixture
def fake_compiler() -> FakeCompiler:
    return FakeCompiler()


@pytest.fixture
def fake_server_cls() -> type[FakeServer]:
    return FakeServer
