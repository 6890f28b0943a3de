"""Argo's `web` provider: an HTTP request whose JSON answer, narrowed by jsonPath, is the
result. Supported jsonPath: `{$.a.b[0].c}` / `$.a["b"]` — dotted fields and indexes."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import httpx

from tollway.rollout.analysis.providers import ProviderError

_PART = re.compile(r"\.([A-Za-z_][\w-]*)|\[(\d+)\]|\[['\"]([^'\"]+)['\"]\]")


def json_path(value: Any, path: str | None) -> Any:
    """Follow a jsonPath subset; ProviderError naming the missing part."""
    if not path:
        return value
    p = path.strip()
    if p.startswith("{") and p.endswith("}"):
        p = p[1:-1].strip()
    if not p.startswith("$"):
        raise ProviderError(f"jsonPath {path!r} must start with $")
    pos, cur = 1, value
    while pos < len(p):
        m = _PART.match(p, pos)
        if m is None:
            raise ProviderError(f"jsonPath {path!r}: unsupported syntax at {p[pos:]!r}")
        field, index, quoted = m.groups()
        try:
            cur = cur[int(index)] if index is not None else cur[field or quoted]
        except (KeyError, IndexError, TypeError) as exc:
            raise ProviderError(f"jsonPath {path!r}: {p[:m.end()]} not in the answer") from exc
        pos = m.end()
    return cur


async def measure(client: httpx.AsyncClient, spec: Mapping[str, Any]) -> Any:
    url = spec.get("url")
    if not url:
        raise ProviderError("provider.web.url is required")
    headers = {str(h["key"]): str(h["value"]) for h in spec.get("headers") or ()}
    method = str(spec.get("method", "GET")).upper()
    body = spec.get("jsonBody")
    content = json.dumps(body) if body is not None else spec.get("body")
    timeout = float(spec.get("timeoutSeconds", 10))
    try:
        resp = await client.request(method, str(url), headers=headers, content=content,
                                    timeout=timeout)
    except httpx.HTTPError as exc:
        raise ProviderError(f"web provider: {url} unreachable: {exc}") from exc
    if resp.status_code >= 300:
        raise ProviderError(f"web provider: {url} answered {resp.status_code}")
    try:
        data = resp.json()
    except ValueError as exc:
        raise ProviderError(f"web provider: {url} did not answer JSON") from exc
    return json_path(data, spec.get("jsonPath"))
