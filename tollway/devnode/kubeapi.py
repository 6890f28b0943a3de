"""The agent's conversation with kube-apiserver, through lightkube's asyncio client.

Only what a kubelet writes: the Node and its status, the node Lease, pod status (merge patch
with the pod's uid as precondition, as kubelet's status manager does), Events, the final
`DELETE` with grace 0 — plus the reads a container's environment needs (Services for the
link variables, ConfigMaps and Secrets it references).
"""

from __future__ import annotations

import base64
import logging
import time
from typing import Any, cast

from lightkube import ApiError, AsyncClient
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import (
    ConfigMap,
    Event,
    Node,
    Pod,
    Secret,
    Service,
    ServiceAccountToken,
)
from lightkube.types import PatchType

from tollway.devnode import volumes
from tollway.devnode.envvars import ServiceFacts, ServicePort
from tollway.devnode.nodeobj import lease_manifest, micro_time, node_manifest
from tollway.devnode.podstatus import JSON, rfc3339
from tollway.devnode.worker import EnvInputs

log = logging.getLogger("tollway.devnode")


def _meta(pod: Pod) -> tuple[str, str, str]:
    m = pod.metadata
    assert m is not None
    return m.namespace or "default", m.name or "", m.uid or ""


def service_facts(svc: Service) -> ServiceFacts | None:
    if svc.metadata is None or svc.spec is None or not svc.spec.clusterIP:
        return None
    ports = tuple(
        ServicePort(p.name or "", p.port, p.protocol or "TCP") for p in svc.spec.ports or []
    )
    return ServiceFacts(svc.metadata.name or "", svc.spec.clusterIP, ports)


def referenced(pod: Pod) -> tuple[set[str], set[str]]:
    """Names of the ConfigMaps and Secrets the pod's env/envFrom and volumes read."""
    assert pod.spec is not None
    maps, secrets = volumes.referenced(pod.spec)
    for c in [*(pod.spec.initContainers or []), *pod.spec.containers]:
        for src in c.envFrom or []:
            if src.configMapRef is not None and src.configMapRef.name:
                maps.add(src.configMapRef.name)
            if src.secretRef is not None and src.secretRef.name:
                secrets.add(src.secretRef.name)
        for var in c.env or []:
            vf = var.valueFrom
            if vf is not None and vf.configMapKeyRef is not None and vf.configMapKeyRef.name:
                maps.add(vf.configMapKeyRef.name)
            if vf is not None and vf.secretKeyRef is not None and vf.secretKeyRef.name:
                secrets.add(vf.secretKeyRef.name)
    return maps, secrets


class KubeApi:
    def __init__(self, client: AsyncClient, node_name: str) -> None:
        self.client = client
        self.node_name = node_name
        self.events: dict[tuple[str, str, str, str], list[Any]] = {}  # -> [event name, count]

    # ---- node ----------------------------------------------------------------------------
    async def register_node(self) -> Node:
        body = node_manifest(self.node_name)
        try:
            return await self.client.create(cast(Node, Node.from_dict(body)))
        except ApiError as e:
            if e.status.code != 409:
                raise
        return await self.client.patch(
            Node,
            self.node_name,
            {"metadata": {"labels": body["metadata"]["labels"]}},
            patch_type=PatchType.MERGE,
        )

    async def get_node(self) -> Node:
        return await self.client.get(Node, self.node_name)

    async def set_pod_cidr(self, cidr: str) -> None:
        await self.client.patch(
            Node,
            self.node_name,
            {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}},
            patch_type=PatchType.MERGE,
        )

    async def patch_node_status(self, status: JSON) -> None:
        await self.client.patch(
            Node.Status, self.node_name, {"status": status}, patch_type=PatchType.MERGE
        )

    async def renew_lease(self, node_uid: str) -> None:
        now = time.time()
        try:
            await self.client.patch(
                Lease,
                self.node_name,
                {"spec": {"holderIdentity": self.node_name, "renewTime": micro_time(now)}},
                namespace="kube-node-lease",
                patch_type=PatchType.MERGE,
            )
        except ApiError as e:
            if e.status.code != 404:
                raise
            await self.client.create(
                cast(Lease, Lease.from_dict(lease_manifest(self.node_name, node_uid, now)))
            )

    # ---- pods ----------------------------------------------------------------------------
    async def patch_status(self, pod: Pod, status: JSON) -> None:
        ns, name, uid = _meta(pod)
        try:
            await self.client.patch(
                Pod.Status,
                name,
                {"metadata": {"uid": uid}, "status": status},
                namespace=ns,
                patch_type=PatchType.MERGE,
            )
        except ApiError as e:
            if e.status.code not in (404, 409):  # gone or replaced: nothing left to report on
                raise

    async def event(self, pod: Pod, kind: str, reason: str, message: str) -> None:
        ns, name, uid = _meta(pod)
        now = rfc3339(time.time())
        body: dict[str, Any] = {
            "metadata": {"generateName": f"{name}.", "namespace": ns},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": name,
                "namespace": ns,
                "uid": uid,
            },
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {"component": "kubelet", "host": self.node_name},
            "reportingComponent": "kubelet",
            "reportingInstance": self.node_name,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        key = (uid, kind, reason, message)
        seen = self.events.get(key)
        try:
            if seen is not None:  # kubelet's aggregation: one Event, a count and a last time
                seen[1] += 1
                await self.client.patch(
                    Event,
                    seen[0],
                    {"count": seen[1], "lastTimestamp": now},
                    namespace=ns,
                    patch_type=PatchType.MERGE,
                )
                return
            made = await self.client.create(cast(Event, Event.from_dict(body)))
            if made.metadata is not None and made.metadata.name:
                if len(self.events) > 5000:
                    self.events.clear()
                self.events[key] = [made.metadata.name, 1]
        except ApiError as e:  # events are best effort, as in kubelet
            self.events.pop(key, None)
            log.debug("event %s for %s/%s not recorded: %s", reason, ns, name, e)

    async def env_inputs(self, pod: Pod) -> EnvInputs:
        ns, _, _ = _meta(pod)
        services: list[ServiceFacts] = []
        async for svc in self.client.list(Service, namespace=ns):
            facts = service_facts(svc)
            if facts:
                services.append(facts)
        if ns != "default" and not any(s.name == "kubernetes" for s in services):
            try:
                facts = service_facts(
                    await self.client.get(Service, "kubernetes", namespace="default")
                )
                if facts:
                    services.append(facts)
            except ApiError:
                pass
        map_names, secret_names = referenced(pod)
        maps: dict[str, dict[str, str]] = {}
        for name in map_names:
            try:
                cm = await self.client.get(ConfigMap, name, namespace=ns)
                maps[name] = dict(cm.data or {})
            except ApiError:
                continue
        secrets: dict[str, dict[str, str]] = {}
        for name in secret_names:
            try:
                sec = await self.client.get(Secret, name, namespace=ns)
            except ApiError:
                continue
            secrets[name] = {
                k: base64.b64decode(v).decode(errors="replace") for k, v in (sec.data or {}).items()
            }
            secrets[name].update(sec.stringData or {})
        return EnvInputs(services, maps, secrets)

    async def token(self, pod: Pod, service_account: str, audience: str, seconds: int) -> str:
        """A TokenRequest bound to the pod, as kubelet asks for projected token volumes."""
        ns, name, uid = _meta(pod)
        spec: dict[str, Any] = {
            "expirationSeconds": seconds,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid},
        }
        if audience:
            spec["audiences"] = [audience]
        body = {"metadata": {}, "spec": spec}  # lightkube reads metadata.namespace on create
        req = cast(ServiceAccountToken, ServiceAccountToken.from_dict(body))
        try:
            out = await self.client.create(req, service_account, namespace=ns)
        except ApiError as e:
            raise RuntimeError(
                f"token for service account {ns}/{service_account} refused: {e.status.message}"
            ) from e
        if out.status is None or not out.status.token:
            raise RuntimeError(f"token for service account {ns}/{service_account} came back empty")
        return out.status.token

    async def delete(self, pod: Pod) -> None:
        """Kubelet's final step: remove the object with grace 0, only if it is still this pod."""
        ns, name, uid = _meta(pod)
        try:
            current = await self.client.get(Pod, name, namespace=ns)
            if current.metadata is None or current.metadata.uid != uid:
                return
            await self.client.delete(Pod, name, namespace=ns, grace_period=0)
        except ApiError as e:
            if e.status.code != 404:
                raise
