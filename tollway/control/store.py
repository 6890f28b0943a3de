"""ConfigStore: the resources in force, changed only all-or-nothing, with an audit trail.

Every writer (the manifest folder, `tollway apply`, the rollout controller) goes through
`transact`, which validates the *resulting* set with `tollway.config.analyze` before
anything changes: one invalid resource and nothing of that write takes effect (Istio's
"config errors are data, never half-applied"). Readers take `current()`, an immutable
`ResourceSet`, so a translation always sees one consistent revision.

Kubernetes bookkeeping is kept beside each resource, not inside it (resources are frozen):
`resourceVersion` is the store-wide revision at which the resource last changed in any
way; `generation` starts at 1 and bumps only when the spec changes (labels and annotations
do not count), which is what a controller compares with its observedGeneration.

Subscribers are called synchronously after each committed change with a `Change`; they
must be quick (schedule work, do not do it). Status (`set_status`/`status`) is a separate
per-resource dict written by controllers (the rollout controller's phase, step, weights);
it never changes the resource and never notifies subscribers, as in Kubernetes' status
subresource.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tollway.config import analyze
from tollway.config.findings import Finding, Severity
from tollway.config.resource import Resource, ResourceSet
from tollway.kit.clock import Clock, MonotonicClock

Key = tuple[str, str, str]  # (kind, namespace, name), as Resource.key
Validator = Callable[[ResourceSet], Sequence[Finding]]
AUDIT_LIMIT = 2000


@dataclass(frozen=True, slots=True)
class Meta:
    """Bookkeeping for one resource: what a Kubernetes API server would put in metadata."""

    resource_version: int
    generation: int
    manager: str  # the actor that last wrote it ("folder", "user", "rollout", ...)
    created: float  # wall-clock seconds
    updated: float
    source: str = ""  # where it came from: "folder", "api", or the controller that made it


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What a write did: `ok` False means nothing changed and `findings` say why."""

    ok: bool
    findings: tuple[Finding, ...] = ()
    changed: tuple[Key, ...] = ()  # created or updated
    deleted: tuple[Key, ...] = ()
    revision: int = 0


@dataclass(frozen=True, slots=True)
class Change:
    """Passed to subscribers after each committed write."""

    revision: int
    changed: tuple[Key, ...]
    deleted: tuple[Key, ...]
    actor: str
    reason: str


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """Who changed what and why."""

    time: float
    revision: int
    actor: str
    action: str  # "apply" | "delete" | "sync"
    reason: str
    changed: tuple[Key, ...]
    deleted: tuple[Key, ...]


def default_validator(resources: ResourceSet) -> Sequence[Finding]:
    """Cross-resource checks: `tollway.config.analyze`, as `tollway analyze` prints them."""
    return analyze.analyze(resources)


def _same_content(a: Resource, b: Resource) -> bool:
    return a.spec == b.spec and a.labels == b.labels and a.annotations == b.annotations


@dataclass
class ConfigStore:
    """In-memory store; the one place resources change. See the module docstring."""

    validator: Validator = default_validator
    clock: Clock = field(default_factory=MonotonicClock)
    _set: ResourceSet = field(default_factory=ResourceSet)
    _meta: dict[Key, Meta] = field(default_factory=dict)
    _status: dict[Key, dict[str, Any]] = field(default_factory=dict)
    _audit: list[AuditEntry] = field(default_factory=list)
    _subscribers: list[Callable[[Change], None]] = field(default_factory=list)
    revision: int = 0

    # ------------------------------------------------------------------ reads

    def current(self) -> ResourceSet:
        return self._set

    def get(self, key: Key) -> Resource | None:
        return self._set.get(*key)

    def meta(self, key: Key) -> Meta | None:
        return self._meta.get(key)

    def audit(self) -> tuple[AuditEntry, ...]:
        return tuple(self._audit)

    def status(self, key: Key) -> dict[str, Any]:
        return dict(self._status.get(key, {}))

    def set_status(self, key: Key, status: Mapping[str, Any]) -> None:
        """Replace the status of one resource (it need not exist: status outlives deletes)."""
        self._status[key] = dict(status)

    def subscribe(self, callback: Callable[[Change], None]) -> Callable[[], None]:
        """Call `callback(change)` after every committed write; returns the unsubscribe."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    # ----------------------------------------------------------------- writes

    def apply(
        self, resources: Sequence[Resource], *, actor: str = "user", reason: str = "",
        source: str | None = None,
    ) -> ApplyResult:
        """Create or update `resources` together, or change nothing."""
        return self.transact(resources, (), actor=actor, reason=reason, action="apply",
                             source=source)

    def delete(
        self, keys: Iterable[Key], *, actor: str = "user", reason: str = ""
    ) -> ApplyResult:
        """Delete `keys` together (absent keys are ignored), or change nothing."""
        return self.transact((), tuple(keys), actor=actor, reason=reason, action="delete")

    def transact(
        self,
        upserts: Sequence[Resource],
        deletes: Sequence[Key],
        *,
        actor: str = "user",
        reason: str = "",
        action: str = "apply",
        source: str | None = None,
    ) -> ApplyResult:
        """The single write path: validate the resulting set, then commit and notify.

        `source` says where the written resources come from ("folder", "api"); None
        keeps each one's previous source (a controller editing a folder's resource), or
        the actor for a new one. Rewriting the same content from another source only
        changes the source: that writer owns it from now on.
        """
        changed = tuple(r.key for r in upserts if not self._unchanged(r))
        deleted = tuple(k for k in dict.fromkeys(deletes) if self._set.get(*k) is not None)
        if source is not None:
            for r in upserts:
                meta = self._meta.get(r.key)
                if r.key not in changed and meta is not None and meta.source != source:
                    self._meta[r.key] = dataclasses.replace(meta, source=source)
        if not changed and not deleted:
            return ApplyResult(ok=True, revision=self.revision)
        candidate = self._set.with_changes(
            [r for r in upserts if r.key in changed], deleted
        )
        findings = tuple(self.validator(candidate))
        if any(f.severity is Severity.ERROR for f in findings):
            return ApplyResult(ok=False, findings=findings, revision=self.revision)
        self._commit(candidate, changed, deleted, actor, source)
        change = Change(self.revision, changed, deleted, actor, reason)
        self._record(change, action)
        for callback in list(self._subscribers):
            callback(change)
        return ApplyResult(True, findings, changed, deleted, self.revision)

    def _unchanged(self, resource: Resource) -> bool:
        old = self._set.get(*resource.key)
        return old is not None and _same_content(old, resource)

    def _commit(
        self, candidate: ResourceSet, changed: tuple[Key, ...], deleted: tuple[Key, ...],
        actor: str, source: str | None,
    ) -> None:
        self.revision += 1
        now = self.clock.wall()
        for key in changed:
            old_meta = self._meta.get(key)
            old = self._set.get(*key)
            new = candidate.get(*key)
            assert new is not None
            if old_meta is None or old is None:
                self._meta[key] = Meta(self.revision, 1, actor, now, now, source or actor)
                continue
            bump = 0 if old.spec == new.spec else 1
            self._meta[key] = Meta(
                self.revision, old_meta.generation + bump, actor, old_meta.created, now,
                source or old_meta.source or actor,
            )
        for key in deleted:
            self._meta.pop(key, None)
        self._set = candidate

    def _record(self, change: Change, action: str) -> None:
        self._audit.append(
            AuditEntry(
                self.clock.wall(), change.revision, change.actor, action, change.reason,
                change.changed, change.deleted,
            )
        )
        del self._audit[:-AUDIT_LIMIT]

    def from_source(self, source: str) -> tuple[Key, ...]:
        """Keys whose source is `source` (what the API persists: "api")."""
        return tuple(k for k, m in self._meta.items() if m.source == source)

    def managed_by(self, manager: str) -> tuple[Key, ...]:
        """Keys last written by `manager` (the folder prunes only what it wrote)."""
        return tuple(k for k, m in self._meta.items() if m.manager == manager)
