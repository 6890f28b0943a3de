"""Envoy/Istio-style names for clusters, route tables and listeners [pure].

Clusters are `outbound|PORT|SUBSET|FQDN` and `inbound|PORT||` exactly as istiod names
them, so `/config_dump` and metrics read like Istio's to people who know it.
"""

from __future__ import annotations

from typing import NamedTuple

OUTBOUND_TABLE = "outbound"


class ClusterRef(NamedTuple):
    direction: str
    port: int
    subset: str
    host: str


def outbound_cluster(port: int, subset: str, host: str) -> str:
    return f"outbound|{port}|{subset}|{host}"


def inbound_cluster(port: int) -> str:
    return f"inbound|{port}||"


def parse_cluster(name: str) -> ClusterRef | None:
    parts = name.split("|", 3)
    if len(parts) != 4 or not parts[1].isdigit():
        return None
    return ClusterRef(parts[0], int(parts[1]), parts[2], parts[3])


def inbound_table(service_port: int) -> str:
    return f"inbound|{service_port}"


def gateway_table(port: int) -> str:
    return f"gateway|{port}"
