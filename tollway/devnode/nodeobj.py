"""The Node object, its status heartbeat and its Lease, as a kubelet writes them (pure JSON).

Kept to what the scheduler, node lifecycle controller, EndpointSlice controller and kubectl
read: Ready and the pressure conditions with heartbeats, addresses, capacity/allocatable
(pods > 0 or nothing schedules), the kubelet endpoint port (for `kubectl logs`), nodeInfo and
the well-known labels charts select on.
"""

from __future__ import annotations

import datetime as dt
import platform
from typing import Any

from tollway.devnode.podstatus import rfc3339

JSON = dict[str, Any]
LEASE_SECONDS = 40
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def node_manifest(name: str) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": ARCH,
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": ARCH,
                "node.tollway.dev/devnode": "true",
            },
        },
        "spec": {},
    }


def _cond(kind: str, ok: bool, reason: str, message: str, now: float, since: float) -> JSON:
    return {
        "type": kind,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
        "lastHeartbeatTime": rfc3339(now),
        "lastTransitionTime": rfc3339(since),
    }


def node_status(
    *,
    node_ip: str,
    hostname: str,
    port: int,
    ready: bool,
    ready_message: str,
    version: str,
    now: float,
    since: float,
    cpu: int,
    memory_kib: int,
    max_pods: int = 110,
) -> JSON:
    resources = {
        "cpu": str(cpu),
        "memory": f"{memory_kib}Ki",
        "pods": str(max_pods),
        "ephemeral-storage": "100Gi",
    }
    return {
        "conditions": [
            _cond(
                "MemoryPressure",
                False,
                "KubeletHasSufficientMemory",
                "devnode has sufficient memory available",
                now,
                since,
            ),
            _cond(
                "DiskPressure",
                False,
                "KubeletHasNoDiskPressure",
                "devnode has no disk pressure",
                now,
                since,
            ),
            _cond(
                "PIDPressure",
                False,
                "KubeletHasSufficientPID",
                "devnode has sufficient PID available",
                now,
                since,
            ),
            _cond(
                "Ready",
                ready,
                "KubeletReady" if ready else "KubeletNotReady",
                ready_message,
                now,
                since,
            ),
        ],
        "addresses": [
            {"type": "InternalIP", "address": node_ip},
            {"type": "Hostname", "address": hostname},
        ],
        "capacity": resources,
        "allocatable": resources,
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "nodeInfo": {
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
            "kernelVersion": platform.release(),
            "osImage": "devnode (processes on the host)",
            "containerRuntimeVersion": "devnode://0.1",
            "kubeletVersion": version,
            "kubeProxyVersion": version,
            "operatingSystem": "linux",
            "architecture": ARCH,
        },
        "phase": "Running",
    }


def lease_manifest(node: str, node_uid: str, now: float) -> JSON:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": node,
            "namespace": "kube-node-lease",
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid}
            ],
        },
        "spec": {
            "holderIdentity": node,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": micro_time(now),
        },
    }


def micro_time(wall: float) -> str:
    """Lease times are MicroTime: RFC 3339 with microseconds."""
    return dt.datetime.fromtimestamp(wall, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
