"""Config and proxy status as the page shows them (the data of `tollway proxy-status`).

[pure] The rows are the control plane's own `proxy_rows()` (what `proxy-status -o json`
prints), with one column added: whether the dashboard could read the proxy's metrics,
since a proxy it cannot scrape is a proxy missing from the graph.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tollway.config.resource import ResourceSet

STATUSES = ("SYNCED", "STALE", "NACKED", "DISCONNECTED")


def view(rows: Sequence[Mapping[str, Any]], scrape_errors: Mapping[str, str],
         resources: ResourceSet, revision: int, audit: Iterable[Any],
         names: Mapping[tuple[str, str], Mapping[str, str]] | None = None) -> dict[str, Any]:
    """Proxies with their sync status and metrics, config revision, kinds, recent changes.

    `scrape_errors` maps each admin address scraped to "" (read fine) or why it failed;
    `names` (rollouts.workload_tracks) says which version and track a workload runs, so a
    replica named by template hash also reads as `web v2 · canary`.
    """
    proxies = []
    for row in rows:
        admin = str(row.get("admin") or "")
        err = scrape_errors.get(admin) if admin else "no admin address"
        proxies.append({
            **{k: row.get(k) for k in ("name", "workload", "namespace", "kind", "status",
                                       "acked", "version", "nacked", "nack_reason", "admin",
                                       "inbound", "origin", "error")},
            "metrics": "ok" if err == "" else (err or "not scraped yet"),
            "display": _display(names or {}, row),
        })
    counts = Counter(str(p["status"]) for p in proxies)
    kinds = Counter(r.kind for r in resources)
    changes = []
    for entry in list(audit)[-8:][::-1]:
        changes.append({
            "time": getattr(entry, "time", None),
            "revision": getattr(entry, "revision", None),
            "actor": getattr(entry, "actor", ""),
            "action": getattr(entry, "action", ""),
            "reason": getattr(entry, "reason", ""),
            "changed": ["/".join(k) for k in getattr(entry, "changed", ())],
            "deleted": ["/".join(k) for k in getattr(entry, "deleted", ())],
        })
    return {
        "revision": revision,
        "summary": {"proxies": len(proxies), **{s.lower(): counts.get(s, 0) for s in STATUSES}},
        "proxies": proxies,
        "resources": [{"kind": k, "count": n} for k, n in sorted(kinds.items())],
        "changes": changes,
    }


def _display(names: Mapping[tuple[str, str], Mapping[str, str]], row: Mapping[str, Any]) -> str:
    """"web v2 · canary" for a rollout's replica, "" when the workload name says it all."""
    info = names.get((str(row.get("namespace") or ""), str(row.get("workload") or "")))
    if not info or info.get("display", row.get("workload")) == row.get("workload"):
        return ""
    return " · ".join(x for x in (info.get("display", ""), info.get("track", "")) if x)
