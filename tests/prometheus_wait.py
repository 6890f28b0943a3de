"""Waiting until a real Prometheus holds what a query evaluated at time `at` reads.

A query at `at` reads each series' samples scraped at or before `at`. Scrapes run on
their own schedule and a loaded host delays them (and their commit) by seconds, so a
fixed sleep after the traffic ("two more scrapes") only hopes the last samples are in.
Prometheus appends a series' samples in time order, so once every series the query reads
has a sample at or after `at`, nothing before `at` can still arrive.
"""

from __future__ import annotations

import time

import httpx


def newest_common_sample(url: str, selector: str) -> float | None:
    """The oldest of the series' newest sample times (None: no series yet)."""
    r = httpx.get(f"{url}/api/v1/query", params={"query": f"min(timestamp({selector}))"},
                  timeout=10)
    if r.status_code != 200 or r.json().get("status") != "success":
        return None
    result = r.json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def wait_ingested(url: str, selector: str, at: float, timeout: float = 60.0) -> None:
    """Until every series `selector` matches has a sample scraped at or after `at` (wall
    clock seconds, as Prometheus keeps time); `timeout` s at most, then fail saying which
    sample time was reached."""
    deadline = time.monotonic() + timeout
    newest: float | None = None
    while True:
        try:
            newest = newest_common_sample(url, selector)
        except httpx.HTTPError:
            newest = None
        if newest is not None and newest >= at:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"Prometheus at {url} has no sample of every {selector} series at or after "
                f"{at:.3f} within {timeout:.0f}s; the oldest newest sample: {newest}")
        time.sleep(0.25)
