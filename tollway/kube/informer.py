"""List+watch bookkeeping for one kind, as client-go's reflector does it [pure].

The IO loop (`api.Api.run_informer`) lists, then watches from the list's
resourceVersion; every line of the watch goes through `Cache.apply`:
- ADDED / MODIFIED / DELETED change the cache and come back as an `Event`;
- BOOKMARK (asked for with `allowWatchBookmarks=true`) only moves the resourceVersion, so
  a reconnecting watch resumes from a recent version instead of an expired one;
- ERROR with code 410 (`Gone`: the version was compacted away) raises `Expired`, and the
  loop relists. `Cache.replace` then diffs the fresh list against what the cache held,
  so objects deleted while the watch was down come out as DELETED events (a watch that
  merely restarted from "now" would never tell us).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

EventType = Literal["ADDED", "MODIFIED", "DELETED"]
ObjKey = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped kinds


class Expired(Exception):
    """The watch's resourceVersion is gone (410): relist."""


class WatchFailed(Exception):
    """The server ended the watch with an error other than 410; reconnect after a pause."""


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    obj: Mapping[str, Any]

    @property
    def key(self) -> ObjKey:
        return key_of(self.obj)


def key_of(obj: Mapping[str, Any]) -> ObjKey:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def version_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


@dataclass
class Cache:
    """The objects of one kind as last seen, and the version to watch from."""

    objects: dict[ObjKey, Mapping[str, Any]] = field(default_factory=dict)
    resource_version: str = ""
    synced: bool = False

    def replace(self, items: Iterable[Mapping[str, Any]], resource_version: str) -> list[Event]:
        """A full list: what changed against the cache, deletions included."""
        fresh = {key_of(o): o for o in items}
        events: list[Event] = []
        for key, old in self.objects.items():
            if key not in fresh:
                events.append(Event("DELETED", old))
        for key, obj in fresh.items():
            before = self.objects.get(key)
            if before is None:
                events.append(Event("ADDED", obj))
            elif version_of(before) != version_of(obj):
                events.append(Event("MODIFIED", obj))
        self.objects = fresh
        self.resource_version = resource_version
        self.synced = True
        return events

    def apply(self, line: Mapping[str, Any]) -> Event | None:
        """One decoded watch line; None when the cache does not change (bookmark, replay)."""
        kind = line.get("type")
        obj = line.get("object")
        if not isinstance(obj, Mapping):
            raise WatchFailed(f"watch event {kind!r} carries no object")
        if kind == "ERROR":
            code = obj.get("code")
            self.synced = code != 410 and self.synced
            if code == 410:
                raise Expired(str(obj.get("message") or "resourceVersion too old"))
            raise WatchFailed(str(obj.get("message") or f"watch error {code}"))
        version = version_of(obj)
        if version:
            self.resource_version = version
        if kind == "BOOKMARK":
            return None
        key = key_of(obj)
        if kind == "DELETED":
            if self.objects.pop(key, None) is None:
                return None
            return Event("DELETED", obj)
        if kind not in ("ADDED", "MODIFIED"):
            raise WatchFailed(f"unknown watch event type {kind!r}")
        old = self.objects.get(key)
        if old is not None and version_of(old) == version:
            return None
        self.objects[key] = obj
        return Event("ADDED" if old is None else "MODIFIED", obj)
