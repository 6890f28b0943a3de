"""Save and resume rollout state across controller restarts.

One JSON file per rollout in the state directory, written atomically (temp file +
rename) after every decision that changed something. The file holds the machine state,
the templates seen per revision (so the stable replica set can still be run after the
spec moved on), the analysis runs and the judge's evidence: everything a restarted
controller needs to continue at the same step, with the same timers.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Protocol

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


class RecordFile(Protocol):
    """Where a worker's record is kept: a file here, a ConfigMap on Kubernetes."""

    def load(self) -> dict[str, Any] | None: ...

    def save(self, record: dict[str, Any]) -> None: ...


class StateFile:
    """The persisted record of one rollout, keyed by kind/namespace/name."""

    def __init__(self, state_dir: Path, kind: str, namespace: str, name: str) -> None:
        safe = _SAFE.sub("_", f"{kind}.{namespace}.{name}")
        self.path = state_dir / f"{safe}.json"

    def load(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None  # a torn or foreign file: start fresh rather than crash
        return data if isinstance(data, dict) else None

    def save(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(record, sort_keys=True, default=str))
        os.replace(tmp, self.path)

    def remove(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
