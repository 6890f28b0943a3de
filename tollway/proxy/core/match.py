"""Route selection: virtual host by authority, then the first matching route (Istio).

Compiled once per snapshot. Each (HTTPRoute, match block) pair becomes one
`CompiledRoute`, in order, exactly as istiod emits one Envoy route per match block: that
keeps "first match wins" and lets `matched_prefix` and the rewrite be static per entry, so
a request allocates nothing here. Within a block every condition holds (AND); the blocks of
one route are ORed because they are consecutive entries sharing the same spec and split.

Semantics (see istio-api-digest §1.3): uri is matched without the query string; prefix is
a plain string prefix; regex is an RE2 full match; ignoreUriCase folds exact/prefix only;
header names are lowercase; a presence match is `{}` (or regex "*"); withoutHeaders treats
a missing header as "" except for presence; query parameters match the first occurrence,
`exact: ""` matching `?key`. port, sourceLabels, sourceNamespace and gateways are decided
at config time by the control plane; here they are re-checked only against what the
caller states (port / source given; a sidecar is gateway "mesh"; a bare gateway name
matches that name in any namespace).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from tollway.proxy.core.route import CompiledRoute, compile_routes, parse_query, split_host_port
from tollway.proxy.core.strmatch import EXACT, PREFIX, REGEX
from tollway.snapshot import types

__all__ = ["CompiledRoute", "RouteTableMatcher", "parse_query", "split_host_port"]

_CACHE_LIMIT: Final = 4096
_LINEAR_MAX: Final = 8  # below this many entries a plain scan beats the index
_NONE: Final = 1 << 30


class _Index:
    """A virtual host's entries plus an index by uri, built once.

    Exact and prefix uris go into dicts (prefixes bucketed by length), so a request looks
    up a few slices of its path instead of testing every route; entries with a regex uri
    or none are always candidates. Each group holds entry numbers in order; the answer is
    the smallest number whose entry fully matches, which is exactly "first match wins".
    """

    __slots__ = ("always", "entries", "exact", "exact_ci", "linear", "plen", "plen_ci",
                 "prefix", "prefix_ci")  # fmt: skip

    def __init__(self, entries: tuple[CompiledRoute, ...]) -> None:
        self.entries = entries
        self.linear = len(entries) <= _LINEAR_MAX
        exact: dict[str, list[int]] = {}
        exact_ci: dict[str, list[int]] = {}
        prefix: dict[str, list[int]] = {}
        prefix_ci: dict[str, list[int]] = {}
        always: list[int] = []
        for i, e in enumerate(entries):
            ci = e._ignore_case
            if e.uri_kind == EXACT:
                (exact_ci if ci else exact).setdefault(e.uri_value, []).append(i)
            elif e.uri_kind == PREFIX:
                (prefix_ci if ci else prefix).setdefault(e.uri_value, []).append(i)
            else:
                always.append(i)
        self.exact = {k: tuple(v) for k, v in exact.items()}
        self.exact_ci = {k: tuple(v) for k, v in exact_ci.items()}
        self.prefix = {k: tuple(v) for k, v in prefix.items()}
        self.prefix_ci = {k: tuple(v) for k, v in prefix_ci.items()}
        self.plen = tuple(sorted({len(k) for k in prefix}))
        self.plen_ci = tuple(sorted({len(k) for k in prefix_ci}))
        self.always = tuple(always)


_EMPTY_INDEX: Final = _Index(())


class RouteTableMatcher:
    """A route table compiled for selection; immutable after construction (but for a
    bounded authority -> virtual host cache)."""

    __slots__ = ("_cache", "_exact", "_prefixes", "_star", "_suffixes", "table")

    def __init__(self, table: types.RouteTable) -> None:
        self.table = table
        self._exact: dict[str, _Index] = {}
        suffixes: list[tuple[str, _Index]] = []
        prefixes: list[tuple[str, _Index]] = []
        self._star: _Index | None = None
        for vh in table.virtual_hosts:
            index = _Index(compile_routes(vh.routes))
            for domain in vh.domains:
                d = domain.lower()
                if d == "*":
                    if self._star is None:
                        self._star = index
                elif d.startswith("*"):
                    suffixes.append((d[1:], index))
                elif d.endswith("*"):
                    prefixes.append((d[:-1], index))
                else:
                    self._exact.setdefault(d, index)
        # Longest wildcard first (Envoy): the most specific domain wins. Stable sort keeps
        # snapshot order among equals, so the first virtual host listed wins ties.
        self._suffixes = tuple(sorted(suffixes, key=lambda s: -len(s[0])))
        self._prefixes = tuple(sorted(prefixes, key=lambda s: -len(s[0])))
        self._cache: dict[str, _Index] = {}

    def routes_for(self, authority: str) -> tuple[CompiledRoute, ...]:
        """The route entries of the virtual host serving `authority` (empty if none)."""
        return self._index_for(authority).entries

    def _index_for(self, authority: str) -> _Index:
        hit = self._cache.get(authority)
        if hit is not None:
            return hit
        found = self._lookup(authority)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()  # bounded: hostile Host values cannot grow memory
        self._cache[authority] = found
        return found

    def _lookup(self, authority: str) -> _Index:
        full = authority.lower()
        host, port = split_host_port(full)
        names = (full,) if port is None else (full, host)
        for name in names:
            hit = self._exact.get(name)
            if hit is not None:
                return hit
        for name in names:
            for suffix, index in self._suffixes:
                if len(name) > len(suffix) and name.endswith(suffix):
                    return index
            for prefix, index in self._prefixes:
                if len(name) > len(prefix) and name.startswith(prefix):
                    return index
        return self._star if self._star is not None else _EMPTY_INDEX

    def select(
        self,
        authority: str,
        method: str,
        path: str,
        headers: Mapping[str, str],
        port: int | None = None,
        source_labels: Mapping[str, str] | None = None,
        source_namespace: str | None = None,
        gateway: str | None = None,
        scheme: str = "http",
    ) -> CompiledRoute | None:
        """The first route entry matching the request, or None (404, flag NR).

        `path` is the raw request target path with its query string; `headers` has
        lowercase names. `port`: the listener port (None skips port conditions).
        `gateway`: "namespace/name" of the gateway serving the request, None for a sidecar
        ("mesh"). `source_labels`/`source_namespace` describe the client workload.
        `scheme` is matched by `scheme` conditions (an addition to the agreed API).
        The options may be passed by position (the router does, once per request: a
        keyword call costs more).
        """
        index = self._cache.get(authority)
        if index is None:
            index = self._index_for(authority)
        q = path.find("?")
        if q >= 0:
            p = path[:q]
            query = path[q + 1 :]
        else:
            p = path
            query = ""
        entries = index.entries
        if index.linear:  # inline scan: no helper call, no context tuple
            lower: str | None = None
            for e in entries:
                kind = e.uri_kind
                if kind:
                    if e._ignore_case:
                        if lower is None:
                            lower = p.lower()
                        s = lower
                    else:
                        s = p
                    if kind == PREFIX:
                        if not s.startswith(e.uri_value):
                            continue
                    elif kind == EXACT:
                        if s != e.uri_value:
                            continue
                    elif e.uri_regex.fullmatch(p) is None:
                        continue
                if e.simple or e.conditions_hold(
                    authority, method, headers, query, port, source_labels,
                    source_namespace, gateway, scheme, path,
                ):  # fmt: skip
                    return e
            return None
        ctx = (authority, method, headers, query, port, source_labels,
               source_namespace, gateway, scheme, path)  # fmt: skip
        best = _NONE
        hit = index.exact.get(p)
        if hit is not None:
            best = _first(entries, hit, p, ctx, best)
        prefix = index.prefix
        plen = len(p)
        for n in index.plen:  # ascending: longer prefixes cannot match a shorter path
            if n > plen:
                break
            hit = prefix.get(p[:n])
            if hit is not None and hit[0] < best:
                best = _first(entries, hit, p, ctx, best)
        if index.exact_ci or index.plen_ci:
            lower = p.lower()
            hit = index.exact_ci.get(lower)
            if hit is not None and hit[0] < best:
                best = _first(entries, hit, p, ctx, best)
            for n in index.plen_ci:
                if n > plen:
                    break
                hit = index.prefix_ci.get(lower[:n])
                if hit is not None and hit[0] < best:
                    best = _first(entries, hit, p, ctx, best)
        if index.always and index.always[0] < best:
            best = _first(entries, index.always, p, ctx, best)
        return entries[best] if best != _NONE else None


_Ctx = tuple[
    str, str, Mapping[str, str], str, "int | None", "Mapping[str, str] | None",
    "str | None", "str | None", str, str,
]  # fmt: skip


def _first(entries: tuple[CompiledRoute, ...], idxs: tuple[int, ...], p: str, ctx: _Ctx,
           best: int) -> int:
    """The first index in `idxs` (below `best`) whose entry fully matches, else `best`.
    The uri of indexed entries already matched; regex uris are tested here."""
    for i in idxs:
        if i >= best:
            return best
        e = entries[i]
        if e.uri_kind == REGEX and e.uri_regex.fullmatch(p) is None:
            continue
        if e.simple or e.conditions_hold(*ctx):
            return i
    return best

