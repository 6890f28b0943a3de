"""hey's command line → a LoadSpec (pure). Supported: -z, -n, -q, -c, -m, -H, -d, -T, -t.

As in hey, -q is a rate limit per worker (so -q 10 -c 2 sends about 20 requests/s), -z
runs for a duration (and then -n is ignored), -n defaults to 200, -c to 50.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from tollway.kit.durations import parse_duration


class HeyError(ValueError):
    """A command this load tester cannot run; the message names the flag."""


@dataclass(frozen=True, slots=True)
class LoadSpec:
    url: str
    duration: float | None = None
    requests: int = 200
    rate_per_worker: float = 0.0  # 0 = no limit
    concurrency: int = 50
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    body: bytes = b""
    timeout: float = 20.0


def _value(args: list[str], i: int, flag: str) -> str:
    if i + 1 >= len(args):
        raise HeyError(f"hey flag {flag} needs a value")
    return args[i + 1]


def parse(cmd: str | list[str]) -> LoadSpec:
    """Parse `hey [flags] URL`; the leading `hey` is optional."""
    args = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
    if args and args[0].endswith("hey"):
        args = args[1:]
    kw: dict[str, object] = {}
    headers: list[tuple[str, str]] = []
    url = ""
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-z", "-n", "-q", "-c", "-m", "-H", "-d", "-T", "-t"):
            v = _value(args, i, a)
            try:
                _apply(a, v, kw, headers)
            except ValueError as exc:
                raise HeyError(f"hey flag {a} {v!r}: {exc}") from exc
            i += 2
            continue
        if a.startswith("-"):
            raise HeyError(f"hey flag {a} is not supported (use -z -n -q -c -m -H -d -T -t)")
        url = a
        i += 1
    if not url.startswith(("http://", "https://")):
        raise HeyError("hey needs a URL like http://api:8080/health as its last argument")
    return LoadSpec(url=url, headers=tuple(headers), **kw)  # type: ignore[arg-type]


def _apply(flag: str, v: str, kw: dict[str, object], headers: list[tuple[str, str]]) -> None:
    if flag == "-z":
        kw["duration"] = parse_duration(v)
    elif flag == "-n":
        kw["requests"] = int(v)
    elif flag == "-q":
        kw["rate_per_worker"] = float(v)
    elif flag == "-c":
        kw["concurrency"] = max(1, int(v))
    elif flag == "-m":
        kw["method"] = v.upper()
    elif flag == "-d":
        kw["body"] = v.encode()
    elif flag == "-t":
        kw["timeout"] = float(v)
    elif flag == "-T":
        headers.append(("Content-Type", v))
    else:
        name, sep, value = v.partition(":")
        if not sep:
            raise ValueError("a header is written 'Name: value'")
        headers.append((name.strip(), value.strip()))
