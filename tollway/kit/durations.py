"""Durations as users write them ("5s", "1m30s", "500ms", "1.5h") to seconds and back.

Istio uses protobuf Duration strings ("5s", "0.25s"); Argo and Flagger use Go's
time.ParseDuration format ("1m30s", "500ms"). One parser accepts both, so every resource
kind reads durations the same way.
"""

from __future__ import annotations

import re

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


class DurationError(ValueError):
    """A duration string that is not one; the message says what a valid one looks like."""


def parse_duration(text: str) -> float:
    """Return seconds for a Go/protobuf duration string; raise DurationError otherwise."""
    if not isinstance(text, str):
        raise DurationError(f"expected a duration string like '5s', got {type(text).__name__}")
    s = text.strip()
    if s in ("0", "0s"):
        return 0.0
    if not s:
        raise DurationError("empty duration; write it like '5s', '500ms' or '1m30s'")
    sign = 1.0
    if s[0] in "+-":
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    pos = 0
    total = 0.0
    while pos < len(s):
        m = _PART.match(s, pos)
        if m is None:
            raise DurationError(
                f"'{text}' is not a duration; write it like '5s', '500ms' or '1m30s'"
            )
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return sign * total


def format_duration(seconds: float) -> str:
    """Render seconds the way users write them: '5s', '250ms', '1m30s'."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        ms = seconds * 1000
        return f"{ms:g}ms"
    whole = int(seconds)
    if whole != seconds:
        return f"{seconds:g}s"
    h, rem = divmod(whole, 3600)
    m, s = divmod(rem, 60)
    out = ""
    if h:
        out += f"{h}h"
    if m:
        out += f"{m}m"
    if s or not out:
        out += f"{s}s"
    return out
