"""Endpoint choice within a cluster: ROUND_ROBIN, LEAST_REQUEST (P2C), RANDOM, ring hash.

`candidates` are the usable endpoint indices (the outlier detector's answer), never empty;
`r` is one uniform draw in [0, 1); `active` holds in-flight requests per endpoint index.

Ring hash (Istio consistentHash): every endpoint owns a fixed set of points derived only
from its own address, so adding or removing one endpoint moves only the keys whose nearest
point changes owner (~1/n of them). Ejected endpoints are skipped by walking clockwise to
the next usable owner, which keeps the other keys where they were. A request without a
hash key (header absent ...) falls back to a random pick, as Envoy does.
"""

from __future__ import annotations

import random
import zlib
from array import array
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from typing import Final, Protocol

from tollway.proxy.core.match import parse_query
from tollway.snapshot import types

_RING_CAP: Final = 1 << 17  # total points per cluster (memory bound)
_M32: Final = 0xFFFFFFFF


class Balancer(Protocol):
    def pick(
        self,
        candidates: Sequence[int],
        *,
        r: float,
        hash_key: str | None,
        active: Sequence[int],
    ) -> int: ...


class RoundRobin:
    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0

    def pick(
        self, candidates: Sequence[int], *, r: float, hash_key: str | None, active: Sequence[int]
    ) -> int:
        i = self._next
        self._next = i + 1
        return candidates[i % len(candidates)]


class RandomPick:
    __slots__ = ()

    def pick(
        self, candidates: Sequence[int], *, r: float, hash_key: str | None, active: Sequence[int]
    ) -> int:
        n = len(candidates)
        i = int(r * n)
        return candidates[i if i < n else n - 1]


class LeastRequest:
    """Power of two choices (Envoy's default choice_count 2): two distinct random
    candidates from one draw, the one with fewer in-flight requests wins."""

    __slots__ = ()

    def pick(
        self, candidates: Sequence[int], *, r: float, hash_key: str | None, active: Sequence[int]
    ) -> int:
        n = len(candidates)
        if n == 1:
            return candidates[0]
        x = r * n
        i = int(x)
        if i >= n:
            i = n - 1
        j = int((x - i) * (n - 1))
        if j >= n - 1:
            j = n - 2
        if j >= i:
            j += 1
        a = candidates[i]
        b = candidates[j]
        return a if active[a] <= active[b] else b


class RingHash:
    """Ketama-style ring over all endpoints, built once per snapshot."""

    __slots__ = ("_fallback", "_n", "_owners", "_points")

    def __init__(self, endpoints: Sequence[types.Endpoint], minimum_ring_size: int = 1024) -> None:
        self._n = len(endpoints)
        self._fallback = RandomPick()
        total_weight = sum(max(1, e.weight) for e in endpoints) or 1
        per_weight = max(1, min(max(minimum_ring_size, 1), _RING_CAP // total_weight))
        pairs: list[tuple[int, int]] = []
        for idx, ep in enumerate(endpoints):
            rng = random.Random(f"{ep.address}:{ep.port}")  # str seed: stable across runs
            pairs.extend((rng.getrandbits(32), idx) for _ in range(per_weight * max(1, ep.weight)))
        pairs.sort()
        self._points = array("I", (p for p, _ in pairs))
        self._owners = array("I", (o for _, o in pairs))

    def owner(self, hash_key: str) -> int:
        """The endpoint index owning `hash_key` when every endpoint is usable."""
        i = bisect_left(self._points, key_hash(hash_key))
        return self._owners[i if i < len(self._points) else 0]

    def pick(
        self, candidates: Sequence[int], *, r: float, hash_key: str | None, active: Sequence[int]
    ) -> int:
        points = self._points
        if hash_key is None or not points:
            return self._fallback.pick(candidates, r=r, hash_key=None, active=active)
        size = len(points)
        i = bisect_left(points, key_hash(hash_key))
        if i >= size:
            i = 0
        owner = self._owners[i]
        if len(candidates) >= self._n:
            return owner
        usable = set(candidates)
        owners = self._owners
        for step in range(size):
            o = owners[(i + step) % size]
            if o in usable:
                return o
        return candidates[0]


class WeightedRoundRobin:
    """Smooth weighted round robin (nginx's), for endpoints with unequal weights: each
    pick raises every candidate by its weight and lowers the winner by the total."""

    __slots__ = ("_current", "_weights")

    def __init__(self, weights: Sequence[int]) -> None:
        self._weights = tuple(max(1, w) for w in weights)
        self._current = [0] * len(weights)

    def pick(
        self, candidates: Sequence[int], *, r: float, hash_key: str | None, active: Sequence[int]
    ) -> int:
        cur = self._current
        weights = self._weights
        total = 0
        best = candidates[0]
        for c in candidates:
            cur[c] += weights[c]
            total += weights[c]
            if cur[c] > cur[best]:
                best = c
        cur[best] -= total
        return best


class WeightedRandom:
    """RANDOM with unequal endpoint weights: probability weight / sum over candidates."""

    __slots__ = ("_weights",)

    def __init__(self, weights: Sequence[int]) -> None:
        self._weights = tuple(max(1, w) for w in weights)

    def pick(
        self, candidates: Sequence[int], *, r: float, hash_key: str | None, active: Sequence[int]
    ) -> int:
        weights = self._weights
        target = r * sum(weights[c] for c in candidates)
        for c in candidates:
            target -= weights[c]
            if target < 0:
                return c
        return candidates[-1]


class WeightedLeastRequest:
    """P2C with unequal weights (Envoy's effective weight = weight / (active + 1)): two
    distinct candidates from one draw, the higher effective weight wins."""

    __slots__ = ("_weights",)

    def __init__(self, weights: Sequence[int]) -> None:
        self._weights = tuple(max(1, w) for w in weights)

    def pick(
        self, candidates: Sequence[int], *, r: float, hash_key: str | None, active: Sequence[int]
    ) -> int:
        n = len(candidates)
        if n == 1:
            return candidates[0]
        x = r * n
        i = min(int(x), n - 1)
        j = min(int((x - i) * (n - 1)), n - 2)
        if j >= i:
            j += 1
        a = candidates[i]
        b = candidates[j]
        w = self._weights
        return a if w[a] * (active[b] + 1) >= w[b] * (active[a] + 1) else b


def key_hash(key: str) -> int:
    """32-bit hash with good avalanche: CRC32 (C speed) through murmur3's finaliser."""
    h = zlib.crc32(key.encode())
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _M32
    return h ^ (h >> 16)


def make_balancer(lb: types.LoadBalancer, endpoints: Sequence[types.Endpoint]) -> Balancer:
    """consistentHash wins over simple (Istio: they are a oneof); LEAST_REQUEST is the
    default, PASSTHROUGH/UNSPECIFIED behave as it here. Unequal endpoint weights
    (WorkloadEntry weight) select the weighted variants."""
    if lb.consistent_hash is not None:
        return RingHash(endpoints, lb.consistent_hash.minimum_ring_size)
    weights = [e.weight for e in endpoints]
    weighted = len(set(weights)) > 1
    if lb.simple == "ROUND_ROBIN":
        return WeightedRoundRobin(weights) if weighted else RoundRobin()
    if lb.simple == "RANDOM":
        return WeightedRandom(weights) if weighted else RandomPick()
    return WeightedLeastRequest(weights) if weighted else LeastRequest()


def hash_key_for(
    lb: types.LoadBalancer, headers: Mapping[str, str], source_ip: str, query: str
) -> str | None:
    """The consistent-hash key of a request, or None when it has none (random pick).

    `headers` has lowercase names; `query` is the query string without the "?"."""
    ch = lb.consistent_hash
    if ch is None:
        return None
    kind = ch.kind
    if kind == "header":
        return headers.get(ch.name.lower())
    if kind == "source_ip":
        return source_ip or None
    if kind == "query_param":
        return parse_query(query).get(ch.name)
    return cookie_value(headers.get("cookie"), ch.name)


def cookie_value(header: str | None, name: str) -> str | None:
    """The value of cookie `name` in a Cookie header, or None."""
    if not header:
        return None
    for part in header.split(";"):
        k, sep, v = part.strip().partition("=")
        if sep and k == name:
            return v.strip('"')
    return None
