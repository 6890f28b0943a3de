"""World + proxy -> one compiled, versioned snapshot (ProxyConfig) [pure].

`build` is the whole translation for one proxy: its listeners, the route tables those
listeners name, the clusters those route tables name (and nothing else), and its
security settings. The version is the content hash of everything else in the snapshot,
so an unchanged proxy gets the same version and needs no push. `build_standalone` is the
same over manifests alone, for `tollway proxy --config manifests.yaml`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from tollway.config.meshconfig import MeshConfig
from tollway.config.resource import ResourceSet
from tollway.control.registry import Replica
from tollway.control.translate import (
    clusters,
    gateway,
    listeners,
    names,
    requestauthn,
    security,
    sidecar,
    telemetry,
)
from tollway.control.translate.gateway import ReadFile
from tollway.control.translate.listeners import InboundPort
from tollway.control.world import World
from tollway.snapshot import types

__all__ = [
    "DEFAULT_GATEWAY_OFFSET", "InboundPort", "ProxyPorts", "build", "build_standalone",
    "content_hash", "referenced_clusters", "with_version",
]

DEFAULT_GATEWAY_OFFSET = 8000
DEFAULT_MESH = types.Mesh()
DEFAULT_MESH_CONFIG = telemetry.DEFAULT_MESH_CONFIG
_DEFAULT_TELEMETRY = (types.Telemetry(), types.Tracing())


@dataclass(frozen=True)
class ProxyPorts:
    """Where this proxy listens. `inbound` items: (service_port, listen_address,
    listen_port, app_address, app_port); `outbound`: (address, port) or None."""

    inbound: Sequence[tuple[int, str, int, str, int]] = ()
    outbound: tuple[str, int] | None = None
    # A pod's captured inbound: (address, port, app ports), one listener (0.0.0.0:15006)
    # with a chain per app port, each reaching the app at 127.0.0.1:PORT.
    capture: tuple[str, int, tuple[int, ...]] | None = None
    gateway_offset: int = DEFAULT_GATEWAY_OFFSET
    gateway_address: str = "127.0.0.1"


def content_hash(value: Any) -> str:
    """Stable hash of snapshot parts (sorted keys), as `kit.hashing` but via msgspec: the
    version must cost little next to the build itself when 100 proxies recompute.

    Snapshot types have dicts with int keys (PeerAuthn.port_modes: a PeerAuthentication's
    portLevelMtls), which msgspec cannot sort while encoding: those parts are turned into
    builtins with string keys first. Any snapshot value hashes; none raises."""
    try:
        blob = msgspec.json.encode(value, order="sorted")
    except TypeError:  # a dict with non-str keys somewhere: rare, so the slower way
        blob = msgspec.json.encode(msgspec.to_builtins(value, str_keys=True), order="sorted")
    return hashlib.sha256(blob).hexdigest()[:12]


def _once(world: World, what: str, part: Any, compute: Callable[[], Any]) -> Any:
    """What `compute` derives from the shared object `part`, once per World (keyed by
    identity; the memo keeps `part` alive, so the identity cannot be reused)."""
    key = (what, id(part))
    entry = world.memo.get(key)
    if entry is None or entry[0] is not part:
        entry = (part, compute())
        world.memo[key] = entry
    return entry[1]


def _digest(world: World, part: Any) -> str:
    """content_hash of a large shared part, computed once per World."""
    return str(_once(world, "digest", part, lambda: content_hash(part)))


def referenced_clusters(tables: Iterable[types.RouteTable]) -> set[str]:
    out: set[str] = set()
    for t in tables:
        for v in t.virtual_hosts:
            for r in v.routes:
                out.update(c.cluster for c in r.clusters)
                out.update(m.cluster for m in r.mirrors)
    return out


def _inbound(world: World, node: types.Node, items: Sequence[tuple[int, str, int, str, int]]
             ) -> tuple[list[types.Listener], list[types.RouteTable], list[types.Cluster]]:
    own = world.services_of(node)
    ls, ts, cs = [], [], []
    for item in items:
        p = InboundPort(*item)
        svc = next((s for s in own if s.port(p.service_port)), own[0] if own else None)
        host = svc.host if svc else f"{node.workload}.{node.namespace}.svc.{world.cluster_domain}"
        ls.append(listeners.inbound_listener(p))
        ts.append(listeners.inbound_table(p))
        port = svc.port(p.service_port) if svc else None
        cs.append(clusters.inbound(p.service_port, p.app_address, p.app_port, host,
                                   svc.name if svc else node.workload, node.namespace,
                                   port.protocol if port else "HTTP"))
    return ls, ts, cs


def _captured(world: World, node: types.Node, capture: tuple[str, int, tuple[int, ...]]
              ) -> tuple[list[types.Listener], list[types.RouteTable], list[types.Cluster]]:
    """The pod's virtual inbound listener and, per app port, its route table and the
    `inbound|PORT||` cluster to 127.0.0.1:PORT (Istio names inbound clusters by the
    workload's port, which capture preserves as the original destination)."""
    address, port, app_ports = capture
    own = world.services_of(node)
    svc = own[0] if own else None
    host = svc.host if svc else f"{node.workload}.{node.namespace}.svc.{world.cluster_domain}"
    ts, cs, chains = [], [], []
    for p in sorted(set(app_ports)):
        item = InboundPort(p, address, port, "127.0.0.1", p)
        ts.append(listeners.inbound_table(item))
        sport = next((sp for s in own if (sp := s.port(p)) is not None), None) or next(
            (sp for s in own for sp in s.ports if sp.target == p), None)
        cs.append(clusters.inbound(p, "127.0.0.1", p, host,
                                   svc.name if svc else node.workload, node.namespace,
                                   sport.protocol if sport else ""))
        chains.append(types.InboundChain(port=p, route_table=names.inbound_table(p)))
    listener = types.Listener(name=listeners.VIRTUAL_INBOUND, kind="inbound", address=address,
                              port=port, capture=True, chains=tuple(chains))
    return [listener], ts, cs


@dataclass(frozen=True)
class _Shared:
    """The part of a snapshot that every proxy with the same namespace and labels shares."""

    outbound: types.RouteTable | None
    gateway_listeners: tuple[types.Listener, ...]
    gateway_tables: tuple[types.RouteTable, ...]
    clusters: tuple[types.Cluster, ...]
    peer_authn: types.PeerAuthn
    authz: types.Authz
    digest: str
    request_authn: types.RequestAuthn
    telemetry: types.Telemetry
    tracing: types.Tracing


def _shared(world: World, node: types.Node, ports: ProxyPorts, auto_mtls: bool,
            read_file: ReadFile | None, all_gateways: bool,
            short_everywhere: bool, mesh_config: MeshConfig) -> _Shared:
    outbound = (listeners.outbound_table(world, node, short_everywhere)
                if ports.outbound is not None else None)
    gls: list[types.Listener] = []
    gts: list[types.RouteTable] = []
    if node.kind == "gateway" or all_gateways:
        gls, gts = gateway.build(world, node, ports.gateway_offset, ports.gateway_address,
                                 all_gateways, read_file)
    tables = [*([outbound] if outbound else []), *gts]
    named: set[str] = (
        _once(world, "referenced", outbound, lambda: referenced_clusters([outbound]))
        if outbound is not None and not gts else referenced_clusters(tables))
    cs = clusters.build_shared(world, named, node, auto_mtls,
                               mesh_config.h2_upgrade_policy == "UPGRADE")
    if any(n.startswith(sidecar.PASSTHROUGH) for n in named):  # a Sidecar's ALLOW_ANY
        cs = (*cs, *sidecar.passthrough_clusters(world, sorted(named)))
    pa, az = security.peer_authn_for(world, node), security.authz_for(world, node)
    ra = requestauthn.request_authn_for(world, node)
    tel = telemetry.telemetry_for(world.resources, node, mesh_config)
    parts = [_digest(world, outbound), gls, gts, _digest(world, cs), pa, az, ra]
    if tel != _DEFAULT_TELEMETRY:  # (the default is left out: versions stay as they were)
        parts.append(tel)
    return _Shared(outbound, tuple(gls), tuple(gts), cs, pa, az, content_hash(parts), ra,
                   *tel)


def _shared_cached(world: World, node: types.Node, ports: ProxyPorts, auto_mtls: bool,
                   read_file: ReadFile | None, all_gateways: bool,
                   short_everywhere: bool, mesh_config: MeshConfig) -> _Shared:
    if read_file is not None:  # a reader's answers may change: never reuse them
        return _shared(world, node, ports, auto_mtls, read_file, all_gateways,
                       short_everywhere, mesh_config)
    key = ("shared", node.namespace, tuple(sorted(node.labels.items())), node.kind,
           ports.outbound is not None, ports.gateway_offset, ports.gateway_address,
           auto_mtls, all_gateways, short_everywhere, id(mesh_config))
    found = world.memo.get(key)
    if not isinstance(found, _Shared) or world.memo.get(("mesh_config", id(mesh_config))) \
            is not mesh_config:
        found = _shared(world, node, ports, auto_mtls, None, all_gateways, short_everywhere,
                        mesh_config)
        world.memo[key] = found
        world.memo[("mesh_config", id(mesh_config))] = mesh_config  # keeps the id unique
    return found


def build(world: World, node: types.Node, ports: ProxyPorts, *, auto_mtls: bool = True,
          read_file: ReadFile | None = None, all_gateways: bool = False,
          short_everywhere: bool = False, mesh: types.Mesh = DEFAULT_MESH,
          mesh_config: MeshConfig = DEFAULT_MESH_CONFIG,
          ) -> types.ProxyConfig:
    """Everything `node` needs and nothing else; pure and deterministic. `mesh` is the
    mesh config's part every proxy applies (translate/mesh.py); `mesh_config` the whole
    MeshConfig, whose telemetry defaults Telemetry resources override (translate/telemetry.py).

    What proxies of one namespace and label set share (outbound and gateway route
    tables, their clusters, security) is computed once per World and reused.
    """
    ls, ts, cs = _inbound(world, node, ports.inbound)
    if ports.capture is not None:
        cls, cts, ccs = _captured(world, node, ports.capture)
        ls, ts, cs = ls + cls, ts + cts, cs + ccs
    shared = _shared_cached(world, node, ports, auto_mtls, read_file, all_gateways,
                            short_everywhere, mesh_config)
    if ports.outbound is not None and shared.outbound is not None:
        ls.append(listeners.outbound_listener(*ports.outbound))
        ts.append(shared.outbound)
    ls += shared.gateway_listeners
    ts += shared.gateway_tables
    own = [node, ls, [t for t in ts if t.name.startswith("inbound")], cs]
    if mesh != DEFAULT_MESH:  # (the default is left out: versions stay as they were)
        own.append(mesh)
    return types.ProxyConfig(
        version=content_hash([shared.digest, own]), node=node, listeners=tuple(ls),
        route_tables=tuple(ts), clusters=(*cs, *shared.clusters),
        peer_authn=shared.peer_authn, authz=shared.authz, request_authn=shared.request_authn,
        mesh=mesh, telemetry=shared.telemetry, tracing=shared.tracing,
    )


def with_version(config: types.ProxyConfig) -> types.ProxyConfig:
    """Stamp a content hash of everything but the version (for snapshots built elsewhere)."""
    body = msgspec.structs.replace(config, version="")
    return msgspec.structs.replace(config, version=content_hash(body))


def build_standalone(resources: ResourceSet, *, node: types.Node | None = None,
                     listen_port: int, extra_replicas: Sequence[Replica] = (),
                     listen_address: str = "127.0.0.1",
                     gateway_offset: int = DEFAULT_GATEWAY_OFFSET,
                     read_file: ReadFile | None = None,
                     mesh: types.Mesh = DEFAULT_MESH,
                     mesh_config: MeshConfig = DEFAULT_MESH_CONFIG) -> types.ProxyConfig:
    """A snapshot from manifests alone: outbound on `listen_port` routing by Host to every
    host the manifests provide (WorkloadEntry, ServiceEntry, Service, replicas given), plus
    a listener per Gateway server (port + offset). No mTLS (no control plane, no CA)."""
    world = World.build(resources, extra_replicas)
    node = node or types.Node(name="standalone", workload="standalone", kind="gateway")
    ports = ProxyPorts(outbound=(listen_address, listen_port), gateway_offset=gateway_offset,
                       gateway_address=listen_address)
    return build(world, node, ports, auto_mtls=False, read_file=read_file, all_gateways=True,
                 short_everywhere=True, mesh=mesh, mesh_config=mesh_config)

