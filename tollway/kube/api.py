"""The HTTP edge to the API server: list, watch, patch status (IO only).

Configuration and credentials come from lightkube (kubeconfig, context, in-cluster
service account; its httpx client does the TLS and auth). The list+watch loop is written
here rather than taken from lightkube's `watch` because ours must ask for bookmarks and,
on `410 Gone`, relist and diff (`informer.Cache.replace`), where lightkube's restarts
the watch from "now" and would miss deletions made meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx2
from lightkube.config import client_adapter
from lightkube.config.kubeconfig import KubeConfig, SingleConfig
from lightkube.core.exceptions import ConfigError

from tollway.kube.informer import Cache, Event, Expired, WatchFailed
from tollway.kube.kinds import Watched

log = logging.getLogger(__name__)
PAGE = 500
RETRY = 2.0
MISSING_RETRY = 15.0  # a kind whose CRD is not installed yet is looked for again this often
OnEvents = Callable[[Watched, list[Event]], Awaitable[None]]


class ApiUnavailable(Exception):
    """No way to reach the API server; `str(exc)` is one sentence naming the fix."""


def load_config(kubeconfig: Path | None = None, context: str | None = None) -> SingleConfig:
    """`--kubeconfig`/`--context`, else in-cluster (a pod's service account), else
    $KUBECONFIG or ~/.kube/config."""
    try:
        if kubeconfig is not None:
            config = KubeConfig.from_file(kubeconfig)
        else:
            config = KubeConfig.from_env()
        single = config.get(context_name=context)
    except (ConfigError, OSError, KeyError, ValueError) as exc:
        where = f"--kubeconfig {kubeconfig}" if kubeconfig else "$KUBECONFIG / ~/.kube/config"
        raise ApiUnavailable(f"cannot load a Kubernetes config from {where}: {exc}; pass "
                             "--kubeconfig PATH (and --context NAME), or run in a pod with "
                             "a service account") from exc
    if single is None:
        raise ApiUnavailable(f"the kubeconfig has no context {context!r}; pass --context "
                             "with one of `kubectl config get-contexts`")
    return single


def _status_code(body: Mapping[str, Any]) -> int:
    code = body.get("code")
    return code if isinstance(code, int) else 0


class Api:
    """One connection pool to the API server, for informers and status writes."""

    def __init__(self, config: SingleConfig) -> None:
        self.config = config
        self.server = config.cluster.server
        params = client_adapter.ConnectionParams(timeout=httpx2.Timeout(10.0, read=None))
        self.http: httpx2.AsyncClient = client_adapter.AsyncClient(config, params)

    async def close(self) -> None:
        await self.http.aclose()

    async def request(self, method: str, path: str, *, body: Any = None,
                      content_type: str = "application/json",
                      params: Mapping[str, str] | None = None) -> tuple[int, Any]:
        """(status code, decoded JSON body or None)."""
        content = None if body is None else json.dumps(body).encode()
        resp = await self.http.request(method, path, content=content, params=params,
                                       headers={"Content-Type": content_type},
                                       timeout=httpx2.Timeout(10.0))
        try:
            data = resp.json()
        except ValueError:
            data = None
        return resp.status_code, data

    async def list_all(self, watched: Watched) -> tuple[list[dict[str, Any]], str] | None:
        """Every object of the kind and the list's resourceVersion; None when the kind
        is not served (its CRD is not installed)."""
        items: list[dict[str, Any]] = []
        params = {"limit": str(PAGE)}
        while True:
            code, data = await self.request("GET", watched.path(), params=params)
            if code == 404:
                return None
            if code != 200 or not isinstance(data, dict):
                why = data.get("message") if isinstance(data, dict) else ""
                raise WatchFailed(f"listing {watched.plural}: HTTP {code}: {why}")
            for item in data.get("items") or []:
                item.setdefault("apiVersion", watched.api_version)  # lists omit them
                item.setdefault("kind", watched.kind)
                items.append(item)
            meta = data.get("metadata") or {}
            if not meta.get("continue"):
                return items, str(meta.get("resourceVersion") or "")
            params = {"limit": str(PAGE), "continue": str(meta["continue"])}

    async def watch(self, watched: Watched, resource_version: str) -> AsyncIterator[dict[str, Any]]:
        """Decoded watch lines from `resource_version`, bookmarks asked for; ends when the
        server closes the watch (its timeout), raises Expired on 410."""
        params = {"watch": "1", "allowWatchBookmarks": "true",
                  "resourceVersion": resource_version,
                  "timeoutSeconds": str(random.randint(240, 480))}
        async with self.http.stream("GET", watched.path(), params=params) as resp:
            if resp.status_code == 410:
                raise Expired("resourceVersion too old")
            if resp.status_code != 200:
                await resp.aread()
                raise WatchFailed(f"watching {watched.plural}: HTTP {resp.status_code}")
            async for line in resp.aiter_lines():
                if line.strip():
                    event = json.loads(line)
                    if isinstance(event, dict):
                        yield event

    async def run_informer(self, watched: Watched, on_events: OnEvents,
                           synced: asyncio.Event) -> None:
        """List, then watch forever; relist after 410; reconnect after errors."""
        cache = Cache()
        said_missing = False
        while True:
            try:
                if not cache.synced:
                    listed = await self.list_all(watched)
                    if listed is None:
                        if not said_missing:
                            log.warning("%s (%s) is not served: is its CRD installed? "
                                        "looking again every %.0f s", watched.kind,
                                        watched.api_version, MISSING_RETRY)
                            said_missing = True
                        synced.set()  # nothing to wait for; it comes when the CRD does
                        await asyncio.sleep(MISSING_RETRY)
                        continue
                    await on_events(watched, cache.replace(*listed))
                    synced.set()
                async for line in self.watch(watched, cache.resource_version):
                    event = cache.apply(line)
                    if event is not None:
                        await on_events(watched, [event])
            except Expired as exc:
                log.info("%s watch expired (%s): relisting", watched.plural, exc)
                cache.synced = False
            except (WatchFailed, httpx2.HTTPError, ValueError) as exc:
                log.warning("%s watch interrupted (%s); resuming", watched.plural, exc)
                await asyncio.sleep(RETRY)

    async def patch_status(self, watched: Watched, obj: Mapping[str, Any],
                           conditions: list[dict[str, Any]]) -> bool:
        """Merge-patch `status.conditions` through the status subresource, or the object
        itself when the CRD has none; False when the object is gone or refuses it."""
        meta = obj.get("metadata") or {}
        ns, name = meta.get("namespace"), str(meta.get("name") or "")
        body = {"status": {"conditions": conditions}}
        for sub in ("status", None):
            code, data = await self.request("PATCH", watched.path(ns, name, sub), body=body,
                                            content_type="application/merge-patch+json")
            if code == 200:
                return True
            if code == 404 and sub is not None:
                continue  # no status subresource (the API says "not found" then too)
            log.warning("status of %s %s/%s not written: HTTP %s %s", watched.kind, ns, name,
                        code, data.get("message") if isinstance(data, dict) else "")
            return False
        return False
