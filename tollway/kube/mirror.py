"""Watch events -> the ConfigStore and ControlPlane that `tollway up` feeds [pure].

Kubernetes is the store: what the API server holds is what the mesh should enforce.
The ConfigStore here is only the in-memory view the translation path reads (as an
informer's cache is), written by nobody else. Each object goes through the same
validation as `tollway validate` and the same all-or-nothing `ConfigStore.transact` as
`tollway apply`; what the store refuses stays out and is retried after every later
commit (a VirtualService applied before the DestinationRule that defines its subsets
gets in once the rule arrives). Ready pods become replicas at their pod IP (mTLS ones
when they have a sidecar).

`handle` returns the status writes to make: a `Reconciled` condition on each Tollway
resource, True when accepted, False with the findings when refused.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tollway.config.findings import Finding
from tollway.config.resource import Resource
from tollway.control.registry import Replica
from tollway.control.store import ConfigStore, Key
from tollway.kube import objects
from tollway.kube.informer import Event, key_of
from tollway.kube.kinds import Watched

ACTOR = "kubernetes"
log = logging.getLogger(__name__)


class ReplicaSink(Protocol):
    """Where pod replicas go: `ControlPlane` (set_replica / remove_replica; touch when
    what a sidecar's own pod says changed; unregister the proxy of a deleted pod)."""

    def set_replica(self, replica: Replica) -> None: ...

    def remove_replica(self, name: str) -> None: ...

    def touch(self) -> None: ...

    def unregister(self, name: str) -> None: ...


@dataclass(frozen=True, slots=True)
class StatusWrite:
    """Set these `status.conditions` on the object (as last seen)."""

    watched: Watched
    obj: Mapping[str, Any]
    conditions: list[dict[str, Any]]


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Item:
    watched: Watched
    obj: Mapping[str, Any]
    resource: Resource | None
    findings: list[Finding]


ItemKey = tuple[str, str, str]  # (kind, namespace, name) as the API names it


@dataclass
class Mirror:
    store: ConfigStore
    replicas: ReplicaSink
    now: Callable[[], str] = utc_now
    items: dict[ItemKey, _Item] = field(default_factory=dict)
    refused: dict[ItemKey, tuple[Finding, ...]] = field(default_factory=dict)
    pods: set[str] = field(default_factory=set)
    # Pods with a sidecar, by proxy node name (POD.NS): what their sidecar's snapshot
    # takes from the pod (kube.compiler.KubeCompiler reads it).
    infos: dict[str, objects.PodInfo] = field(default_factory=dict)
    written: dict[ItemKey, str] = field(default_factory=dict)  # content we wrote status for

    def handle(self, watched: Watched, events: Iterable[Event]) -> list[StatusWrite]:
        """Apply one batch of events of one kind; the status writes they call for."""
        events = list(events)
        if watched.kind == "Pod":
            for event in events:
                self._pod(event)
            return []
        if not watched.into_store:
            return []
        upserts: list[ItemKey] = []
        deletes: list[Key] = []
        for event in events:
            ikey = (watched.kind, *event.key)
            if event.type == "DELETED":
                old = self.items.pop(ikey, None)
                self.refused.pop(ikey, None)
                self.written.pop(ikey, None)
                if old is not None and old.resource is not None:
                    deletes.append(old.resource.key)
                continue
            resource, findings = objects.to_resource(event.obj)
            self.items[ikey] = _Item(watched, event.obj, resource, findings)
            upserts.append(ikey)
        writes: list[StatusWrite] = []
        if deletes:
            result = self.store.delete(deletes, actor=ACTOR, reason="deleted in Kubernetes")
            if not result.ok:  # Kubernetes has it gone; the mesh keeps it until it validates
                log.warning("deleting %s leaves the config invalid; kept until it does: %s",
                            deletes, "; ".join(f.render() for f in result.findings if f.is_error))
        self._apply(upserts, writes)
        self._retry(writes)
        return writes

    def resync_status(self) -> list[StatusWrite]:
        """Every Tollway resource's condition as it should read (a new leader writes
        what the previous one may not have)."""
        writes: list[StatusWrite] = []
        for k, item in sorted(self.items.items()):
            if not item.watched.tollway:
                continue
            if item.resource is None:
                self._status(item, item.findings, False, writes)
            elif k in self.refused:
                self._status(item, _about(self.refused[k], item) or list(self.refused[k]),
                             False, writes)
            else:
                self._status(item, item.findings, True, writes)
        return writes

    # ----------------------------------------------------------------- pods

    def _pod(self, event: Event) -> None:
        name = objects.replica_name(event.obj)
        if event.type == "DELETED":
            # the pod is gone, and its sidecar with it: no more snapshots for it (a
            # registered proxy is otherwise kept, and rebuilt on every change, forever)
            self.replicas.unregister(name)
        info = None if event.type == "DELETED" else objects.pod_info(event.obj)
        if info != self.infos.get(name):
            if info is None:
                del self.infos[name]
            else:
                self.infos[name] = info
            self.replicas.touch()
        replica = None if event.type == "DELETED" else objects.replica_of(event.obj)
        if replica is None:
            if name in self.pods:
                self.pods.discard(name)
                self.replicas.remove_replica(name)
            return
        self.pods.add(name)
        self.replicas.set_replica(replica)

    # --------------------------------------------------------------- config

    def _apply(self, keys: Sequence[ItemKey], writes: list[StatusWrite]) -> None:
        good = [k for k in keys if self.items[k].resource is not None]
        for k in keys:
            if self.items[k].resource is None:  # the object itself does not validate
                self._refuse(k, tuple(self.items[k].findings), writes)
        if not good:
            return
        if len(good) > 1:  # a batch (the first list): together first, it is the common case
            result = self.store.apply([self._res(k) for k in good], actor=ACTOR,
                                      reason="listed from Kubernetes", source=ACTOR)
            if result.ok:
                for k in good:
                    self._accept(k, result.findings, writes)
                return
        for k in good:
            self._one(k, writes)

    def _one(self, k: ItemKey, writes: list[StatusWrite], *, retry: bool = False) -> bool:
        result = self.store.apply([self._res(k)], actor=ACTOR,
                                  reason="changed in Kubernetes", source=ACTOR)
        if result.ok:
            self._accept(k, result.findings, writes)
        elif not (retry and self.refused.get(k) == _errors(result.findings)):
            self._refuse(k, result.findings, writes)  # said once, not on every retry
        return result.ok

    def _retry(self, writes: list[StatusWrite]) -> None:
        """Refused items may fit now: retry until a round admits nothing more."""
        progress = True
        while progress:
            progress = False
            for k in sorted(self.refused):
                item = self.items.get(k)
                if item is None or item.resource is None:
                    continue
                if self._one(k, writes, retry=True):
                    progress = True

    def _res(self, k: ItemKey) -> Resource:
        resource = self.items[k].resource
        assert resource is not None
        return resource

    def _accept(self, k: ItemKey, findings: Sequence[Finding], writes: list[StatusWrite]) -> None:
        # Only the object's own warnings: a re-apply of unchanged content reports no
        # cross-resource warnings, and a message that flips would rewrite status forever.
        del findings
        self.refused.pop(k, None)
        item = self.items[k]
        self._status(item, item.findings, True, writes)

    def _refuse(self, k: ItemKey, findings: Sequence[Finding], writes: list[StatusWrite]) -> None:
        item = self.items[k]
        errors = _errors(findings)
        self.refused[k] = errors
        mine = _about(errors, item) or list(errors)
        self._status(item, mine, False, writes)

    def _status(self, item: _Item, findings: Sequence[Finding], accepted: bool,
                writes: list[StatusWrite]) -> None:
        if not item.watched.tollway:
            if not accepted:
                log.warning("%s not used: %s", objects.source_name(item.obj),
                            "; ".join(f.render() for f in findings))
            return
        generation = int((item.obj.get("metadata") or {}).get("generation") or 0)
        condition = objects.reconciled(findings, accepted, generation, self.now())
        k = (item.watched.kind, *key_of(item.obj))
        digest = objects.content_digest(item.obj)
        conditions = objects.merge_conditions(item.obj, condition,
                                              same_content=self.written.get(k) == digest)
        writes[:] = [w for w in writes if w.obj is not item.obj]
        if conditions is not None:
            self.written[k] = digest
            writes.append(StatusWrite(item.watched, item.obj, conditions))


def _errors(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    return tuple(f for f in findings if f.is_error)


def _about(findings: Iterable[Finding], item: _Item) -> list[Finding]:
    meta = item.obj.get("metadata") or {}
    return [f for f in findings
            if f.kind == item.obj.get("kind") and f.name == meta.get("name")]

