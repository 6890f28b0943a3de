"""Istio header operations (set / add / remove) on a header block, names case-insensitive.

Order as Envoy applies them: remove, then set (replacing every existing value), then add
(appending another line, so an upstream sees "orig,added"). Pseudo-headers and Host are
never touched here: setting `host`/`:authority` is an authority rewrite, which the router
applies once (see `authority_from`). "%%" in a value is a literal "%"; other Envoy
%VAR% formatters are passed through unexpanded. Operations are compiled once per HeaderOps
object and cached, so a request only pays for the list rebuild.
"""

from __future__ import annotations

from typing import Final

from tollway.snapshot import types

_AUTHORITY: Final = frozenset({"host", ":authority"})
_CACHE_LIMIT: Final = 1024


class CompiledOps:
    __slots__ = ("add", "drop", "set")

    def __init__(self, ops: types.HeaderOps) -> None:
        def keep(name: str) -> bool:
            return not name.startswith(":") and name not in _AUTHORITY

        self.set = tuple(
            (k.lower(), v.replace("%%", "%")) for k, v in ops.set.items() if keep(k.lower())
        )
        self.add = tuple(
            (k.lower(), v.replace("%%", "%")) for k, v in ops.add.items() if keep(k.lower())
        )
        # Headers removed outright, or replaced by `set`, are dropped in one pass.
        self.drop = frozenset(n.lower() for n in ops.remove if keep(n.lower())) | frozenset(
            k for k, _ in self.set
        )


_compiled: dict[int, tuple[types.HeaderOps, CompiledOps]] = {}


def compile_ops(ops: types.HeaderOps) -> CompiledOps:
    """The compiled form of `ops`, cached by identity (snapshot objects live long)."""
    hit = _compiled.get(id(ops))
    if hit is not None and hit[0] is ops:
        return hit[1]
    compiled = CompiledOps(ops)
    if len(_compiled) >= _CACHE_LIMIT:
        _compiled.clear()
    _compiled[id(ops)] = (ops, compiled)
    return compiled


def apply(headers: list[tuple[str, str]], ops: types.HeaderOps | None) -> list[tuple[str, str]]:
    """A new header list with `ops` applied (the input list is not modified)."""
    if ops is None:
        return headers
    c = compile_ops(ops)
    if not (c.drop or c.add):
        return headers
    drop = c.drop
    out = [h for h in headers if h[0].lower() not in drop] if drop else list(headers)
    out.extend(c.set)
    out.extend(c.add)
    return out


def authority_from(ops: types.HeaderOps | None) -> str | None:
    """The authority a `set` (or `add`) of host / :authority asks for, if any."""
    if ops is None:
        return None
    for source in (ops.set, ops.add):
        for k, v in source.items():
            if k.lower() in _AUTHORITY:
                return v
    return None
