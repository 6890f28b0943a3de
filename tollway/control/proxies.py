"""Who is in the mesh: the proxies the control plane serves and the replicas behind hosts.

Two kinds of facts, both plain data:
- `ProxyEntry`: a proxy the control plane compiles a snapshot for (a sidecar started by
  `tollway up`, the gateway, the built-in client, or a VM sidecar that registered itself
  with `POST /v1/register`), with the addresses `proxy-status` and Prometheus discovery
  show and the listener ports translation needs.
- `registry.Replica`: a ready workload replica (address:port of its sidecar's inbound
  listener, labels, identity); the registry turns them into endpoints. A VM sidecar that
  registers with an inbound address is both, as a WorkloadEntry would be.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tollway.control import registry
from tollway.snapshot import types

Origin = Literal["local", "vm"]


def split_hostport(value: str) -> tuple[str, int]:
    """"host:port" → (host, port); raises ValueError naming the value when it is not one."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"'{value}' is not host:port (for example 127.0.0.1:15006)")
    return host.strip("[]"), int(port)


@dataclass(frozen=True, slots=True)
class ProxyEntry:
    """One proxy: identity, where its admin and inbound listener are, and its ports.

    `ports` keys: "admin", "inbound", "outbound", "app" (the local app's port) — whichever
    apply; a gateway has "gateway_offset" instead of inbound/outbound.
    """

    node: types.Node
    admin: str = ""
    inbound: str = ""
    address: str = "127.0.0.1"
    ports: Mapping[str, int] = field(default_factory=dict)
    origin: Origin = "local"

    @property
    def name(self) -> str:
        return self.node.name

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.node.name,
            "workload": self.node.workload,
            "namespace": self.node.namespace,
            "kind": self.node.kind,
            "service_account": self.node.service_account,
            "labels": dict(self.node.labels),
            "admin": self.admin,
            "inbound": self.inbound,
            "address": self.address,
            "ports": dict(self.ports),
            "origin": self.origin,
        }


@dataclass
class ProxyBook:
    """Registered proxies by name (the ledger of *who*; push.Ledger keeps *what they have*)."""

    _entries: dict[str, ProxyEntry] = field(default_factory=dict)

    def upsert(self, entry: ProxyEntry) -> bool:
        """Add or replace; True when anything changed."""
        old = self._entries.get(entry.name)
        self._entries[entry.name] = entry
        return old != entry

    def remove(self, name: str) -> bool:
        return self._entries.pop(name, None) is not None

    def get(self, name: str) -> ProxyEntry | None:
        return self._entries.get(name)

    def all(self) -> tuple[ProxyEntry, ...]:
        return tuple(self._entries[k] for k in sorted(self._entries))


def entry_from_register(body: Mapping[str, Any]) -> ProxyEntry:
    """Read a `POST /v1/register` body (see docs/contracts.md); ValueError says what is wrong."""
    node_raw = body.get("node")
    if not isinstance(node_raw, Mapping) or not node_raw.get("name"):
        raise ValueError("register: 'node' must be an object with at least a 'name'")
    import msgspec

    try:
        node = msgspec.convert(dict(node_raw), types.Node)
    except msgspec.ValidationError as exc:
        raise ValueError(f"register: 'node' is not a Node: {exc}") from exc
    admin = str(body.get("admin") or "")
    inbound = str(body.get("inbound") or "")
    for value in (admin, inbound):
        if value:
            split_hostport(value)
    ports_raw = body.get("ports") or {}
    if not isinstance(ports_raw, Mapping):
        raise ValueError("register: 'ports' must be an object of name: port")
    ports = {str(k): int(v) for k, v in ports_raw.items()}
    address = str(body.get("address") or (split_hostport(inbound)[0] if inbound else "127.0.0.1"))
    return ProxyEntry(node, admin, inbound, address, ports, origin="vm")


def replica_from_entry(entry: ProxyEntry) -> registry.Replica | None:
    """A registered VM sidecar with an inbound listener backs hosts like a WorkloadEntry."""
    if not entry.inbound or entry.node.kind != "sidecar":
        return None
    host, port = split_hostport(entry.inbound)
    return registry.Replica(
        workload=entry.node.workload,
        kind="WorkloadEntry",
        namespace=entry.node.namespace,
        labels=dict(entry.node.labels),
        service_account=entry.node.service_account,
        address=host,
        port=port,
        app_port=entry.ports.get("app", port),
        name=entry.name,
    )
