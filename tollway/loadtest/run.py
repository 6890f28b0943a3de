"""Run a LoadSpec: workers on one event loop, bounded in count and time, with a summary.

`via` sends every request to a proxy address (e.g. the mesh's client proxy) while
keeping the URL's host in the Host header, which is how a load test reaches `api:8080`
from outside the mesh.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from tollway.loadtest.hey import LoadSpec


@dataclass(slots=True)
class Summary:
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0

    def quantile(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def render(self) -> str:
        rps = self.requests / self.elapsed if self.elapsed else 0.0
        codes = ", ".join(f"[{k}] {v}" for k, v in sorted(self.statuses.items()))
        errs = ", ".join(f"{k}: {v}" for k, v in self.errors.most_common(3))
        return (f"{self.requests} requests in {self.elapsed:.1f}s ({rps:.1f}/s); "
                f"p50 {self.quantile(0.5) * 1000:.1f} ms, p90 {self.quantile(0.9) * 1000:.1f} ms, "
                f"p99 {self.quantile(0.99) * 1000:.1f} ms; status {codes or '-'}"
                + (f"; errors {errs}" if errs else ""))


def _target(spec: LoadSpec, via: str | None) -> tuple[str, dict[str, str]]:
    headers = dict(spec.headers)
    if not via:
        return spec.url, headers
    parts = urlsplit(spec.url)
    headers.setdefault("Host", parts.netloc)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return f"http://{via}{path}", headers


async def run(spec: LoadSpec, *, via: str | None = None,
              stop: asyncio.Event | None = None, max_seconds: float = 3600.0,
              summary: Summary | None = None) -> Summary:
    """Send the load; returns when -z elapses, -n requests are done, or `stop` is set.

    Pass your own `summary` to read it even if this is cancelled (Ctrl-C's summary)."""
    url, headers = _target(spec, via)
    summary = summary if summary is not None else Summary()
    started = time.monotonic()
    deadline = started + min(spec.duration if spec.duration is not None else max_seconds,
                             max_seconds)
    budget = None if spec.duration is not None else spec.requests
    limits = httpx.Limits(max_connections=spec.concurrency)
    async with httpx.AsyncClient(timeout=spec.timeout, limits=limits) as client:

        async def worker() -> None:
            nonlocal budget
            gap = 1.0 / spec.rate_per_worker if spec.rate_per_worker > 0 else 0.0
            next_at = time.monotonic()
            while time.monotonic() < deadline and not (stop and stop.is_set()):
                if budget is not None:
                    if budget <= 0:
                        return
                    budget -= 1
                t0 = time.monotonic()
                try:
                    resp = await client.request(spec.method, url, headers=headers,
                                                content=spec.body or None)
                    summary.statuses[resp.status_code] += 1
                except httpx.HTTPError as exc:
                    summary.errors[type(exc).__name__] += 1
                summary.latencies.append(time.monotonic() - t0)
                summary.requests += 1
                if gap:
                    next_at += gap
                    await asyncio.sleep(max(0.0, next_at - time.monotonic()))

        await asyncio.gather(*(worker() for _ in range(spec.concurrency)))
    summary.elapsed = time.monotonic() - started
    return summary
