"""A folder of manifests, watched, and applied to the store all-or-nothing.

Polling mtimes every 200 ms is enough: it costs nothing next to a push, works on every
filesystem, and editors that replace files (write + rename) are seen the same way.

The folder only writes what changed *in the folder* since its last successful load, and
prunes only resources it wrote itself: a rollout controller's edit to a VirtualService is
not reverted because somebody touched an unrelated file, and a resource applied with
`tollway apply` is not deleted because it is not in the folder. A resource the API
applied is never overwritten by the folder: the folder's version is shadowed and
reported (`control.applied` has the rule).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tollway.config.findings import Finding
from tollway.config.resource import Resource
from tollway.control.store import ApplyResult, ConfigStore, Key

log = logging.getLogger(__name__)

MANAGER = "folder"
SUFFIXES = (".yaml", ".yml", ".json")
Fingerprint = tuple[tuple[str, int, int], ...]


def manifest_files(root: Path) -> list[Path]:
    """Manifest files directly in `root` (not sub-folders, as `tollway validate DIR`)."""
    if root.is_file():
        return [root]
    return sorted(
        p for p in root.iterdir()
        if p.is_file() and p.suffix.lower() in SUFFIXES and not p.name.startswith(".")
    )


def fingerprint(files: list[Path]) -> Fingerprint:
    out: list[tuple[str, int, int]] = []
    for path in files:
        try:
            st = path.stat()
        except OSError:
            continue
        out.append((str(path), st.st_mtime_ns, st.st_size))
    return tuple(out)


def load_files(files: list[Path]) -> tuple[list[Resource], tuple[Finding, ...], bool]:
    from tollway.config import load  # built in parallel by the config part

    result = load.load_paths([str(f) for f in files])
    return list(result.resources), tuple(result.findings), bool(result.ok)


@dataclass
class ManifestFolder:
    """Keeps the store in line with a folder; `sync()` once, or `watch()` forever."""

    root: Path
    store: ConfigStore
    on_result: Callable[[ApplyResult], None] = lambda _r: None
    on_shadowed: Callable[[Key], None] = lambda _k: None
    _last: dict[Key, Resource] = field(default_factory=dict)
    _seen: Fingerprint | None = None

    def sync(self) -> ApplyResult | None:
        """Load the folder and apply what changed; None when nothing changed on disk."""
        files = manifest_files(self.root)
        seen = fingerprint(files)
        if seen == self._seen:
            return None
        self._seen = seen
        resources, findings, ok = load_files(files)
        if not ok:
            result = ApplyResult(ok=False, findings=findings, revision=self.store.revision)
            self.on_result(result)
            return result
        loaded = {r.key: r for r in resources}
        api = set(self.store.from_source("api"))
        upserts = [r for k, r in loaded.items()
                   if not _same(self._last.get(k), r) and k not in api]
        deletes = [k for k in self._last if k not in loaded]
        deletes = [k for k in deletes if k in self.store.managed_by(MANAGER) and k not in api]
        shadowed = [k for k, r in loaded.items()
                    if k in api and not _same(self._last.get(k), r)
                    and not _same(self.store.get(k), r)]
        result = self.store.transact(
            upserts, deletes, actor=MANAGER, reason=f"{self.root} changed", action="sync",
            source=MANAGER,
        )
        if result.ok:
            self._last = loaded
            result = ApplyResult(True, findings + result.findings, result.changed,
                                 result.deleted, result.revision)
            for key in shadowed:
                log.warning("%s: %s/%s/%s not applied: the version applied through the API "
                            "wins until `tollway delete` removes it", self.root, *key)
                self.on_shadowed(key)
        self.on_result(result)
        return result

    def declared(self, key: Key) -> Resource | None:
        """The folder's version of a resource (as last loaded), or None."""
        return self._last.get(key)

    async def watch(self, interval: float = 0.2) -> None:
        while True:
            try:
                self.sync()
            except Exception:  # a watcher must outlive one bad read; say so and go on
                log.exception("reading manifests from %s failed", self.root)
            await asyncio.sleep(interval)


def _same(old: Resource | None, new: Resource) -> bool:
    return (
        old is not None
        and old.spec == new.spec
        and old.labels == new.labels
        and old.annotations == new.annotations
    )
