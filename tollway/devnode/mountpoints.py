"""Mount targets on the host filesystem: created only when missing, recorded, removed by cleanup.

A container sees a volume at its mountPath through a bind mount inside its private mount
namespace, and a bind mount needs an existing target. When the host has no such path (e.g.
/var/run/secrets/kubernetes.io/serviceaccount) the agent creates the missing part — empty
directories, or one empty file for a file subPath — and records the topmost path it created in
`<state-dir>/mountpoints.json` *before* creating it, so `cleanup` (and `tollway dev cluster
down`) can take every one of them away. Existing host paths are never modified: the bind mount
hides them from the container only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

LEDGER = "mountpoints.json"


def _read(state_dir: Path) -> list[str]:
    try:
        data = json.loads((state_dir / LEDGER).read_text())
    except (OSError, ValueError):
        return []
    return [str(p) for p in data] if isinstance(data, list) else []


def _write(state_dir: Path, paths: list[str]) -> None:
    tmp = state_dir / (LEDGER + ".tmp")
    tmp.write_text(json.dumps(sorted(set(paths)), indent=1))
    os.replace(tmp, state_dir / LEDGER)


def ensure(state_dir: Path, target: Path, *, is_dir: bool) -> None:
    if target.exists() or target.is_symlink():
        return
    top = target
    while not top.parent.exists():
        top = top.parent
    _write(state_dir, [*_read(state_dir), str(top)])
    if is_dir:
        target.mkdir(parents=True, exist_ok=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch()


def _remove_empty(path: Path) -> bool:
    """Remove path if it is an empty file or a tree of empty dirs/files; True when gone."""
    if path.is_symlink():
        return False
    if path.is_file():
        if path.stat().st_size:
            return False
        path.unlink()
        return True
    if path.is_dir():
        gone = all([_remove_empty(child) for child in path.iterdir()])
        if gone:
            path.rmdir()
        return gone
    return True


def cleanup(state_dir: Path) -> list[str]:
    removed: list[str] = []
    kept: list[str] = []
    for p in _read(state_dir):
        path = Path(p)
        try:
            if _remove_empty(path):
                removed.append(f"mountpoint {p}")
            else:
                kept.append(p)
        except OSError:
            kept.append(p)
    if (state_dir / LEDGER).exists():
        _write(state_dir, kept)
    return removed
