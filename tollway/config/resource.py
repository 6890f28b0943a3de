"""The validated resource: the contract between config/ and everything downstream.

`spec` is the user's spec exactly as written (plain dicts and lists, upstream field
names), already validated by the typed model in `model`; translation code may read
either. Keeping the raw form alongside means translation reads Istio's own field names
and never depends on how a model class happens to be spelled.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class SourceRef:
    file: str
    doc: int
    line: int


@dataclass(frozen=True, slots=True)
class Resource:
    api_version: str
    kind: str
    name: str
    namespace: str
    spec: Mapping[str, Any]
    raw: Mapping[str, Any]
    source: SourceRef
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    model: Any = None
    # Line of every field path in the source document (paths from the document root,
    # e.g. ("spec", "http", 0, "route")); lets cross-resource checks point at lines.
    lines: Mapping[tuple[str | int, ...], int] = field(
        default_factory=dict, compare=False, repr=False
    )

    def line_of(self, path: tuple[str | int, ...]) -> int:
        """The line of `path` (or its nearest ancestor that has one) in the source."""
        p = tuple(path)
        while p:
            line = self.lines.get(p)
            if line is not None:
                return line
            p = p[:-1]
        return self.source.line

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"


DEFAULT_NAMESPACE = "default"
CLUSTER_DOMAIN = "cluster.local"


class ResourceSet:
    """An immutable, indexed collection of resources (later ones replace equal keys)."""

    def __init__(self, resources: Iterable[Resource] = ()) -> None:
        by_key: dict[tuple[str, str, str], Resource] = {}
        for r in resources:
            by_key[r.key] = r
        self._by_key = by_key
        by_kind: dict[str, list[Resource]] = {}
        for r in by_key.values():
            by_kind.setdefault(r.kind, []).append(r)
        self._by_kind = {k: tuple(v) for k, v in by_kind.items()}

    def __iter__(self) -> Iterator[Resource]:
        return iter(self._by_key.values())

    def __len__(self) -> int:
        return len(self._by_key)

    def of_kind(self, kind: str) -> tuple[Resource, ...]:
        return self._by_kind.get(kind, ())

    def get(self, kind: str, namespace: str, name: str) -> Resource | None:
        return self._by_key.get((kind, namespace, name))

    def with_changes(
        self, upserts: Iterable[Resource] = (), deletes: Iterable[tuple[str, str, str]] = ()
    ) -> ResourceSet:
        keyed = dict(self._by_key)
        for key in deletes:
            keyed.pop(key, None)
        for r in upserts:
            keyed[r.key] = r
        return ResourceSet(keyed.values())
