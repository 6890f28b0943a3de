"""The parts of an HTTPRoute besides matching and destinations, with Istio's defaults [pure].

Retries: no `retries` means the mesh default (2 attempts, Istio's retryOn list);
`attempts: 0` disables; integers in retryOn become retriable status codes. Timeouts: none
unless given. Fault: no `percentage` means no request is affected. Header operations drop
`:`-names and `host`, whose set/add rewrites the authority instead.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from tollway.config.models.istio_rules import GRPC_STATUSES
from tollway.control.registry import as_int, as_list, as_map
from tollway.control.translate.match import string_match
from tollway.kit.durations import DurationError, parse_duration
from tollway.snapshot import types

DEFAULT_RETRY = types.Retry()
AUTHORITY_NAMES = ("host", ":authority")


def seconds(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        return None
    try:
        return parse_duration(value)
    except DurationError:
        return None


def timeout(route: Mapping[str, Any]) -> float | None:
    t = seconds(route.get("timeout"))
    return t if t else None


def retries(route: Mapping[str, Any]) -> types.Retry | None:
    if "retries" not in route or route.get("retries") is None:
        return DEFAULT_RETRY
    spec = as_map(route.get("retries"))
    attempts = as_int(spec.get("attempts"), 0) or 0
    if attempts <= 0:
        return None
    per_try = seconds(spec.get("perTryTimeout")) or None
    remote = bool(spec.get("retryRemoteLocalities", False))
    raw = spec.get("retryOn")
    if not isinstance(raw, str) or not raw.strip():
        return types.Retry(attempts=attempts, per_try_timeout=per_try,
                           retry_remote_localities=remote)
    tokens: list[str] = []
    codes: list[int] = []
    for token in (t.strip() for t in raw.split(",")):
        if token.isdigit():
            codes.append(int(token))
        elif token and token not in tokens:
            tokens.append(token)
    if codes and "retriable-status-codes" not in tokens:
        tokens.append("retriable-status-codes")
    return types.Retry(attempts=attempts, per_try_timeout=per_try, retry_on=tuple(tokens),
                       retriable_status_codes=tuple(codes), retry_remote_localities=remote)


def percentage(spec: Mapping[str, Any], *, default: float) -> float:
    """`percentage: {value}` (double), or the deprecated integer `percent`."""
    p = spec.get("percentage")
    if isinstance(p, Mapping) and isinstance(p.get("value"), (int, float)):
        return max(0.0, min(100.0, float(p["value"])))
    legacy = spec.get("percent")
    if isinstance(legacy, (int, float)) and not isinstance(legacy, bool):
        return max(0.0, min(100.0, float(legacy)))
    return default


def fault(route: Mapping[str, Any]) -> types.Fault | None:
    spec = as_map(route.get("fault"))
    if not spec:
        return None
    delay = as_map(spec.get("delay"))
    abort = as_map(spec.get("abort"))
    d = seconds(delay.get("fixedDelay")) if delay else None
    status = as_int(abort.get("httpStatus")) if abort else None
    grpc_name = str(abort.get("grpcStatus") or "") if abort else ""
    grpc = GRPC_STATUSES.index(grpc_name) if grpc_name in GRPC_STATUSES else None
    if grpc is not None:  # Envoy answers a gRPC abort as HTTP 200 + grpc-status
        status = 200
    return types.Fault(
        delay=d, delay_percent=percentage(delay, default=0.0) if d is not None else 0.0,
        abort_status=status,
        abort_percent=percentage(abort, default=0.0) if status is not None else 0.0,
        abort_grpc_status=grpc,
    )


def header_ops(spec: Any) -> tuple[types.HeaderOps | None, str | None]:
    """(operations, authority rewrite) from `{set, add, remove}`."""
    m = as_map(spec)
    if not m:
        return None, None
    authority: str | None = None
    kept: dict[str, dict[str, str]] = {"set": {}, "add": {}}
    for op in ("set", "add"):
        for k, v in as_map(m.get(op)).items():
            name = str(k).lower()
            if name in AUTHORITY_NAMES:
                authority = str(v)
            elif not name.startswith(":"):
                kept[op][name] = str(v)
    remove = tuple(str(n).lower() for n in as_list(m.get("remove"))
                   if not str(n).startswith(":") and str(n).lower() != "host")
    if not kept["set"] and not kept["add"] and not remove:
        return None, authority
    return types.HeaderOps(set=kept["set"], add=kept["add"], remove=remove), authority


def request_response(spec: Any) -> tuple[types.HeaderOps | None, types.HeaderOps | None,
                                          str | None]:
    m = as_map(spec)
    req, authority = header_ops(m.get("request"))
    resp, _ = header_ops(m.get("response"))
    return req, resp, authority


def rewrite(route: Mapping[str, Any], authority: str | None) -> types.Rewrite | None:
    spec = as_map(route.get("rewrite"))
    regex = as_map(spec.get("uriRegexRewrite"))
    auth = spec.get("authority") or authority
    if not spec and auth is None:
        return None
    return types.Rewrite(
        uri=spec.get("uri"), authority=str(auth) if auth else None,
        uri_regex=regex.get("match"), uri_regex_rewrite=regex.get("rewrite"),
    )


def redirect(route: Mapping[str, Any]) -> types.Redirect | None:
    spec = route.get("redirect")
    if not isinstance(spec, Mapping):
        return None
    return types.Redirect(
        uri=spec.get("uri"), authority=spec.get("authority"), port=as_int(spec.get("port")),
        scheme=spec.get("scheme"), status=as_int(spec.get("redirectCode"), 301) or 301,
        prefix_rewrite=spec.get("prefixRewrite"),
        derive_port=spec.get("derivePort"),
    )


def direct_response(route: Mapping[str, Any]) -> types.DirectResponse | None:
    spec = route.get("directResponse")
    if not isinstance(spec, Mapping):
        return None
    body = as_map(spec.get("body"))
    text: str | None = None
    if isinstance(body.get("string"), str):
        text = body["string"]
    elif isinstance(body.get("bytes"), str):
        try:
            text = base64.b64decode(body["bytes"]).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            text = None
    return types.DirectResponse(status=as_int(spec.get("status"), 200) or 200, body=text)


def cors(route: Mapping[str, Any]) -> types.Cors | None:
    spec = route.get("corsPolicy")
    if not isinstance(spec, Mapping):
        return None
    origins = [m for o in as_list(spec.get("allowOrigins")) if (m := string_match(o))]
    origins += [types.StringMatch(kind="exact", value=str(o))
                for o in as_list(spec.get("allowOrigin"))]
    creds = spec.get("allowCredentials")
    return types.Cors(
        allow_origins=tuple(origins),
        allow_methods=tuple(str(m) for m in as_list(spec.get("allowMethods"))),
        allow_headers=tuple(str(h) for h in as_list(spec.get("allowHeaders"))),
        expose_headers=tuple(str(h) for h in as_list(spec.get("exposeHeaders"))),
        max_age=seconds(spec.get("maxAge")),
        allow_credentials=creds if isinstance(creds, bool) else None,
    )
