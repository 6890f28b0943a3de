"""Argo/Flagger `prometheus` provider: the PromQL exactly as written, as an instant query.

Address: the template's `address` when it is reachable from here; otherwise the mesh's
own Prometheus. In-cluster names cannot resolve on one machine, so an address whose host
is a bare name (`prometheus`), `name.namespace` (`prometheus.monitoring`) or ends in
`.svc` / `.cluster.local` maps to the mesh's Prometheus; so does an omitted address.
An IP, `localhost` or a fully qualified outside name is used as given. `tollway up` runs
the mesh's Prometheus itself (`tollway.control.local.prometheus`) when the `prometheus`
binary is installed; without one the error says how to get it.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlsplit

import httpx

from tollway.rollout.analysis.providers import ProviderError

# `tollway up` runs the mesh's own Prometheus only when the binary is installed and
# neither --no-prometheus nor $TOLLWAY_PROMETHEUS_URL says otherwise.
NO_PROMETHEUS_FIX = ("install Prometheus (`apt-get install prometheus`) and restart `tollway up` "
                     "without --no-prometheus, or set TOLLWAY_PROMETHEUS_URL to a Prometheus "
                     "that scrapes the sidecars")


def in_cluster(address: str) -> bool:
    host = urlsplit(address if "//" in address else f"http://{address}").hostname or ""
    if host == "localhost" or host.replace(".", "").isdigit() or ":" in host:
        return False
    if host.endswith((".svc", ".cluster.local")) or ".svc." in host:
        return True
    return host.count(".") <= 1


def resolve_address(given: str | None, mesh_default: str | None) -> str:
    """The Prometheus to ask (see the module docstring for the mapping)."""
    if given and not in_cluster(given):
        return given
    if mesh_default:
        return mesh_default
    if given:
        raise ProviderError(f"Prometheus address {given} is an in-cluster name and the mesh "
                            f"runs no Prometheus; {NO_PROMETHEUS_FIX}")
    raise ProviderError("the template gives no Prometheus address and the mesh runs none; "
                        f"{NO_PROMETHEUS_FIX}")


def _number(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def parse_response(body: Any) -> float | list[float]:
    """Argo's shape: a vector becomes a list of values, a scalar one value."""
    if not isinstance(body, dict) or body.get("status") != "success":
        err = body.get("error") if isinstance(body, dict) else body
        raise ProviderError(f"Prometheus answered an error: {err}")
    data = body.get("data") or {}
    kind = data.get("resultType")
    result = data.get("result")
    if kind == "vector":
        return [_number(s.get("value", [0, "NaN"])[1]) for s in result or []]
    if kind == "scalar":
        return _number((result or [0, "NaN"])[1])
    raise ProviderError(f"Prometheus returned a {kind} result; Argo supports vector and scalar")


async def query(client: httpx.AsyncClient, address: str, promql: str,
                timeout: float = 10.0) -> float | list[float]:
    """Run one instant query; ProviderError on any failure."""
    url = address.rstrip("/") + "/api/v1/query"
    try:
        resp = await client.get(url, params={"query": promql}, timeout=timeout)
    except httpx.HTTPError as exc:
        raise ProviderError(f"Prometheus at {address} unreachable: {exc}") from exc
    try:
        body = resp.json()
    except ValueError as exc:
        raise ProviderError(f"Prometheus at {address} answered {resp.status_code}, "
                            "not JSON") from exc
    return parse_response(body)
