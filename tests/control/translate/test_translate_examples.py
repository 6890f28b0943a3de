"""Every seed and every examples/ folder translates, for a client, a sidecar and a gateway,
into a snapshot whose references hold together."""

from __future__ import annotations

from pathlib import Path

import pytest
from translate_kit import SEEDS

from tollway.config.load import load_paths
from tollway.config.resource import ResourceSet
from tollway.control import translate
from tollway.control.registry import Replica, as_int, pod_labels
from tollway.control.world import World
from tollway.snapshot import codec, types

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
FOLDERS = sorted(p for p in EXAMPLES.iterdir() if p.is_dir()) if EXAMPLES.is_dir() else []


def _replicas(resources: ResourceSet) -> list[Replica]:
    out = []
    for kind in ("Deployment", "Rollout"):
        for i, r in enumerate(resources.of_kind(kind)):
            count = min(as_int(r.spec.get("replicas"), 1) or 1, 3)
            out += [Replica(r.name, kind, r.namespace, pod_labels(r), "default", "127.0.0.1",
                            21000 + 10 * i + n, 31000 + 10 * i + n, name=f"{r.name}-{n}")
                    for n in range(count)]
    return out


def _check(config: types.ProxyConfig) -> None:
    tables = {t.name for t in config.route_tables}
    assert all(li.route_table in tables for li in config.listeners)
    clusters = {c.name for c in config.clusters}
    named = translate.referenced_clusters(config.route_tables)
    assert clusters <= named
    assert codec.decode(codec.encode(config)) == config
    for c in config.clusters:
        assert all(e.healthy for e in c.endpoints)


def _translate_all(resources: ResourceSet) -> list[types.ProxyConfig]:
    replicas = _replicas(resources)
    world = World.build(resources, replicas)
    ports = translate.ProxyPorts(inbound=[(8080, "127.0.0.1", 1, "127.0.0.1", 2)],
                                 outbound=("127.0.0.1", 3))
    nodes = [types.Node(name="client", workload="tollway-client", kind="client"),
             types.Node(name="gw", kind="gateway")]
    nodes += [types.Node(name=r.name, workload=r.workload, namespace=r.namespace,
                         labels=dict(r.labels)) for r in replicas[:3]]
    configs = [translate.build(world, n, ports) for n in nodes]
    configs.append(translate.build_standalone(resources, listen_port=4))
    for c in configs:
        _check(c)
    return configs


@pytest.mark.parametrize("seed", sorted(p.name for p in SEEDS.glob("*.yaml")))
def test_seed_translates(seed: str) -> None:
    result = load_paths([SEEDS / seed])
    _translate_all(result.resources)


@pytest.mark.parametrize("folder", [p.name for p in FOLDERS])
def test_example_translates(folder: str) -> None:
    result = load_paths([EXAMPLES / folder])
    assert result.resources
    configs = _translate_all(result.resources)
    client = configs[0]
    if result.resources.of_kind("VirtualService") and _replicas(result.resources):
        assert any(c.endpoints for c in client.clusters), "no endpoints reached from client"


def test_example_gateway_serves_https_from_secret() -> None:
    (gw,) = [c for c in _translate_all(load_paths([EXAMPLES / "gateway"]).resources)
             if c.node.name == "gw"]
    (listener,) = [li for li in gw.listeners if li.kind == "gateway"]
    assert listener.port == 8443 and listener.tls is not None
    assert listener.tls.credential is not None
    assert listener.tls.credential.cert_chain.startswith("-----BEGIN CERTIFICATE-----")
