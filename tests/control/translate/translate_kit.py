"""Helpers for translation tests: seeds and YAML -> ResourceSet, fake replicas, lookups."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ruamel.yaml import YAML

from tollway.config.load import load_text
from tollway.config.resource import Resource, ResourceSet, SourceRef
from tollway.control import translate
from tollway.control.registry import Replica
from tollway.control.world import World
from tollway.snapshot import types

SEEDS = Path(__file__).resolve().parents[2] / "data" / "seed"
CLIENT = types.Node(name="tollway-client", workload="tollway-client", kind="client")


def seed_text(prefix: str) -> str:
    (path,) = SEEDS.glob(f"{prefix}-*.yaml")
    return path.read_text()


def load(*parts: str) -> ResourceSet:
    """Each part is a seed number ("02") or YAML text; all must load without errors."""
    text = "\n---\n".join(seed_text(p) if len(p) == 2 and p.isdigit() else p for p in parts)
    result = load_text(text, "test.yaml")
    assert result.ok, [f.render() for f in result.findings]
    return result.resources


_next_port = [20000]


def replica(workload: str, labels: Mapping[str, str], *, namespace: str = "default",
            sa: str = "default", healthy: bool = True, kind: str = "Deployment",
            port: int | None = None) -> Replica:
    _next_port[0] += 1
    p = port or _next_port[0]
    return Replica(workload=workload, kind=kind, namespace=namespace, labels=dict(labels),
                   service_account=sa, address="127.0.0.1", port=p, app_port=p + 10000,
                   healthy=healthy, name=f"{workload}-{p}")


def versions(app: str, counts: Mapping[str, int], namespace: str = "default",
             key: str = "version") -> list[Replica]:
    return [replica(f"{app}-{v}", {"app": app, key: v}, namespace=namespace)
            for v, n in counts.items() for _ in range(n)]


def client_config(resources: ResourceSet, replicas: Sequence[Replica] = (),
                  node: types.Node = CLIENT) -> types.ProxyConfig:
    world = World.build(resources, replicas)
    return translate.build(world, node, translate.ProxyPorts(outbound=("127.0.0.1", 15001)),
                           auto_mtls=False)


def vhost(config: types.ProxyConfig, domain: str) -> types.VirtualHost:
    for t in config.route_tables:
        for v in t.virtual_hosts:
            if domain in v.domains:
                return v
    raise AssertionError(f"no virtual host for {domain}")


def cluster(config: types.ProxyConfig, name: str) -> types.Cluster:
    for c in config.clusters:
        if c.name == name:
            return c
    raise AssertionError(f"no cluster {name}; have {[c.name for c in config.clusters]}")


def split(route: types.Route) -> dict[str, int]:
    return {c.cluster: c.weight for c in route.clusters}


def fqdn(name: str, ns: str = "default") -> str:
    return f"{name}.{ns}.svc.cluster.local"


def unvalidated(text: str, doc: int = 99) -> Resource:
    """A resource built straight from YAML (for shapes the validator does not accept yet)."""
    data = YAML(typ="safe").load(text)
    meta = data.get("metadata", {})
    return Resource(api_version=data["apiVersion"], kind=data["kind"], name=meta["name"],
                    namespace=meta.get("namespace", "default"), spec=data.get("spec", {}),
                    raw=data, source=SourceRef("test.yaml", doc, 1),
                    labels=meta.get("labels", {}))
