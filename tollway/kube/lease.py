"""Leader election with a `coordination.k8s.io/v1` Lease, as client-go's leaderelection.

Every replica serves sidecars; only the holder of the Lease writes status (and, later,
runs the rollout reconcilers), so two replicas never fight over the same field.

`decide` is the pure rule: take a Lease nobody holds or whose holder has not renewed
within `leaseDurationSeconds`; renew our own; otherwise wait. The IO loop (`Elector`)
reads the Lease, writes what `decide` says with the resourceVersion it read (a replica
that loses the race gets 409 and waits), and steps down when it could not renew within
the lease duration, so it never believes it leads longer than the others would wait.
A replica that stops cleanly releases the Lease (holder emptied) so the other takes it
at once instead of after the duration.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from tollway.kube.api import Api

log = logging.getLogger(__name__)
LEASE_DURATION = 15.0
RETRY_PERIOD = 2.0
Action = Literal["acquire", "renew", "wait"]


def _fmt(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: Any) -> dt.datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    spec: dict[str, Any]  # the Lease spec to write (unchanged for "wait")


def decide(spec: Mapping[str, Any] | None, me: str, now: dt.datetime,
           duration: float = LEASE_DURATION) -> Decision:
    """What replica `me` does with the Lease whose spec it read (None: no Lease yet)."""
    spec = dict(spec or {})
    holder = str(spec.get("holderIdentity") or "")
    renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
    held_for = float(spec.get("leaseDurationSeconds") or duration)
    expired = renewed is None or (now - renewed).total_seconds() > held_for
    if holder == me:
        return Decision("renew", {**spec, "renewTime": _fmt(now),
                                  "leaseDurationSeconds": int(duration)})
    if holder and not expired:
        return Decision("wait", spec)
    return Decision("acquire", {
        **spec, "holderIdentity": me, "leaseDurationSeconds": int(duration),
        "acquireTime": _fmt(now), "renewTime": _fmt(now),
        "leaseTransitions": int(spec.get("leaseTransitions") or 0) + (1 if holder else 0),
    })


@dataclass
class Elector:
    """Keeps trying to hold Lease `namespace/name` as `me`; `on_change(leading)`."""

    api: Api
    namespace: str
    name: str
    me: str
    on_change: Callable[[bool], None]
    duration: float = LEASE_DURATION
    retry: float = RETRY_PERIOD
    leading: bool = False
    _last_renew: float = 0.0

    @property
    def path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases"

    def _set(self, leading: bool) -> None:
        if leading != self.leading:
            self.leading = leading
            log.info("%s %s the lease %s/%s", self.me, "holds" if leading else "does not hold",
                     self.namespace, self.name)
            self.on_change(leading)

    async def step(self) -> None:
        """One round: read, decide, write."""
        loop = asyncio.get_running_loop()
        code, lease = await self.api.request("GET", f"{self.path}/{self.name}")
        now = dt.datetime.now(dt.UTC)
        if code == 404:
            decision = decide(None, self.me, now, self.duration)
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": decision.spec}
            code, _ = await self.api.request("POST", self.path, body=body)
            ok = code in (200, 201)
        elif code == 200 and isinstance(lease, dict):
            decision = decide(lease.get("spec"), self.me, now, self.duration)
            if decision.action == "wait":
                self._set(False)
                return
            lease["spec"] = decision.spec  # metadata.resourceVersion kept: 409 if it moved
            code, _ = await self.api.request("PUT", f"{self.path}/{self.name}", body=lease)
            ok = code == 200
        else:
            ok = False
        if ok:
            self._last_renew = loop.time()
            self._set(True)
        elif self.leading and loop.time() - self._last_renew > self.duration * 2 / 3:
            self._set(False)  # could not renew in time: the others may take it soon

    async def run(self) -> None:
        while True:
            try:
                await self.step()
            except Exception as exc:  # the API is down: keep trying; step down when stale
                log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
                if self.leading and asyncio.get_running_loop().time() - self._last_renew > \
                        self.duration * 2 / 3:
                    self._set(False)
            await asyncio.sleep(self.retry)

    async def release(self) -> None:
        """Give the Lease up (clean stop) so the next replica need not wait it out."""
        if not self.leading:
            return
        self._set(False)
        code, lease = await self.api.request("GET", f"{self.path}/{self.name}")
        if code == 200 and isinstance(lease, dict) and \
                (lease.get("spec") or {}).get("holderIdentity") == self.me:
            lease["spec"] = {**lease["spec"], "holderIdentity": "", "renewTime": None}
            await self.api.request("PUT", f"{self.path}/{self.name}", body=lease)
