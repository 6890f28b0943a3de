"""Stable content hashes: a snapshot's version is the hash of what it holds."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def content_hash(value: Any, length: int = 12) -> str:
    """Hash any JSON-shaped value independent of dict ordering."""
    try:
        blob = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()
    except TypeError:  # keys of mixed types (int and str) cannot be sorted: compare as text
        blob = json.dumps(_str_keys(value), sort_keys=True, separators=(",", ":"),
                          default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def _str_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _str_keys(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_str_keys(v) for v in value]
    return value
