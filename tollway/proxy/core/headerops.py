"""Istio header operations (set / add / remove) on a header block, names case-insensitive.

Order as Envoy applies them: remove, then set (replacing every existing value), then add
(appending another line, so an upstream sees "orig,added"). Pseudo-headers and Host are
never touched here: setting `host`/`:authority` is an authority rewrite, which the router
applies once (see `authority_from`). "%%" in a value is a literal "%"; other Envoy
%VAR% formatters are passed through unexpanded.

Operations are compiled when the snapshot is (core/route.py keeps, per route entry and
destination, the `ResponseOps` / request ops to apply, in Envoy's order: destination
first, then route), so a request only pays for the list rebuild. `apply` compiles on the
fly for callers outside the hot path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from tollway.snapshot import types

_AUTHORITY: Final = frozenset({"host", ":authority"})
_CACHE_LIMIT: Final = 1024


Pairs = list[tuple[str, str]]


class CompiledOps:
    """One HeaderOps, ready to apply: call it on a header list for a new list."""

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

    def __call__(self, headers: Pairs) -> Pairs:
        if not (self.drop or self.add):
            return headers
        drop = self.drop
        out = [h for h in headers if h[0].lower() not in drop] if drop else list(headers)
        out.extend(self.set)
        out.extend(self.add)
        return out


class AddHeaders:
    """Headers appended as they are (CORS answers, which depend on the request's Origin)."""

    __slots__ = ("extra",)

    def __init__(self, extra: tuple[tuple[str, str], ...]) -> None:
        self.extra = extra

    def __call__(self, headers: Pairs) -> Pairs:
        return [*headers, *self.extra]


HeaderOp = Callable[[Pairs], Pairs]
# The response header operations of one route entry and destination, in order.
ResponseOps = tuple[HeaderOp, ...]


def compile_chain(*ops: types.HeaderOps | None) -> tuple[CompiledOps, ...] | None:
    """The compiled operations of those given (None skipped), in order; None if none."""
    out = tuple(CompiledOps(o) for o in ops if o is not None)
    return out or None


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
    return compile_ops(ops)(headers)


def authority_from(ops: types.HeaderOps | None) -> str | None:
    """The authority a `set` (or `add`) of host / :authority asks for, if any."""
    if ops is None:
        return None
    for source in (ops.set, ops.add):
        for k, v in source.items():
            if k.lower() in _AUTHORITY:
                return v
    return None
