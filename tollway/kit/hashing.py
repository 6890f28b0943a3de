"""Stable content hashes: a snapshot's version is the hash of what it holds."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def content_hash(value: Any, length: int = 12) -> str:
    """Hash any JSON-shaped value independent of dict ordering."""
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]
