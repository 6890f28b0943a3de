"""The `tollway` provider: the proxies' own live metrics, no Prometheus needed.

The controller scrapes every proxy's admin `/stats/prometheus` (Istio's standard metrics)
on a short period and keeps a little history; a measurement reads the window it needs as
the difference of two scrapes, per destination workload. The stable and canary replica
sets are different workloads (NAME-<hash>, or NAME-primary and NAME for Flagger), so
canary and stable come apart without any query language.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence

import httpx

from tollway.rollout.analysis.providers import ProviderError
from tollway.rollout.analysis.providers.histogram import Counts, Key, parse_istio

Target = tuple[str, dict[str, str]]


class MeshMetrics:
    """Cumulative per-workload counts over time, from periodic scrapes."""

    def __init__(self, keep_seconds: float = 900.0) -> None:
        self.keep = keep_seconds
        self.history: deque[tuple[float, dict[Key, Counts]]] = deque()

    def add(self, at: float, snapshot: dict[Key, Counts]) -> None:
        self.history.append((at, snapshot))
        while self.history and self.history[0][0] < at - self.keep:
            self.history.popleft()

    def latest(self) -> dict[Key, Counts]:
        return self.history[-1][1] if self.history else {}

    def window(self, key: Key, seconds: float, now: float) -> Counts:
        """Counts for `key` over the last `seconds` (as much of it as has been seen).

        The base is the newest scrape at least `seconds` old; failing that the oldest
        scrape taken before the newest one; with a single scrape, everything it counted.
        """
        if not self.history:
            return Counts()
        latest_at, latest = self.history[-1]
        base: dict[Key, Counts] = {}
        older = [(at, snap) for at, snap in self.history if at < latest_at]
        if older:
            base = older[0][1]
            for at, snap in older:
                if at <= now - seconds:
                    base = snap
        return latest.get(key, Counts()).minus(base.get(key, Counts()))


async def scrape(client: httpx.AsyncClient, targets: Sequence[Target],
                 timeout: float = 2.0) -> dict[Key, Counts]:
    """Scrape all proxies at once and sum per destination workload; dead ones are skipped."""

    async def one(admin: str) -> dict[Key, Counts]:
        try:
            resp = await client.get(f"http://{admin}/stats/prometheus", timeout=timeout)
            resp.raise_for_status()
            return parse_istio(resp.text)
        except (httpx.HTTPError, ValueError):
            return {}

    total: dict[Key, Counts] = {}
    for part in await asyncio.gather(*(one(admin) for admin, _ in targets)):
        for key, counts in part.items():
            total.setdefault(key, Counts()).add(counts)
    return total


class MeshScraper:
    """Keeps MeshMetrics current: `await tick(now)` scrapes once."""

    def __init__(self, targets: Callable[[], list[Target]], client: httpx.AsyncClient,
                 metrics: MeshMetrics | None = None) -> None:
        self.targets = targets
        self.client = client
        self.metrics = metrics or MeshMetrics()

    async def tick(self, now: float) -> None:
        try:
            snapshot = await scrape(self.client, self.targets())
        except Exception as exc:  # a scrape must never stop the controller
            raise ProviderError(f"scraping the proxies failed: {exc}") from exc
        self.metrics.add(now, snapshot)
