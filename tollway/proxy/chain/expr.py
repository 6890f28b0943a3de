"""CEL subset trees (snapshot/cel.py) -> closures over a finished Exchange.

Compiled once per snapshot; per request a filter or tag value is a few Python calls.
Attributes read Envoy's names off the Exchange (ATTRIBUTE_GETTERS). Evaluation never
raises on the request path: a type error or a missing value makes a filter false and a
tag `unknown`, as Envoy's CEL treats an error.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import re2

from tollway.proxy.core.grpc import http_to_grpc
from tollway.snapshot import cel

if TYPE_CHECKING:
    from tollway.proxy.chain.stream import Exchange

Fn = Callable[[Any, float], Any]  # (exchange, loop now)
_MISSING = object()


def _port(hostport: str) -> int | None:
    _, _, port = hostport.rpartition(":")
    return int(port) if port.isdigit() else None


def trace_id(ex: Exchange) -> str:
    """The request's trace id (its span when sampled, else the incoming context)."""
    span = ex.span
    if span is not None:
        return str(span[0])
    h = ex.headers
    tp = h.get("traceparent", "")
    if len(tp) >= 35:
        return tp[3:35]
    return h.get("x-b3-traceid", "")


def _grpc_status(ex: Exchange) -> Any:
    """Envoy's `response.grpc_status`: the call's status (trailers, head, the HTTP status
    mapped); Envoy maps the HTTP status for any request, gRPC or not (2 for a plain 200:
    envoyproxy/envoy#31483), and so does this, so a filter behaves as under Envoy."""
    if ex.grpc_status is not None:
        return ex.grpc_status
    return http_to_grpc(ex.status) if ex.status else _MISSING


ATTRIBUTE_GETTERS: dict[str, Fn] = {
    "request.path": lambda ex, now: ex.target if ex.target.startswith("/") else ex.path,
    "request.url_path": lambda ex, now: ex.path.partition("?")[0],
    "request.host": lambda ex, now: ex.authority,
    "request.scheme": lambda ex, now: ex.plan.scheme,
    "request.method": lambda ex, now: ex.method,
    "request.headers": lambda ex, now: ex.headers,
    "request.referer": lambda ex, now: ex.headers.get("referer", _MISSING),
    "request.useragent": lambda ex, now: ex.headers.get("user-agent", _MISSING),
    "request.id": lambda ex, now: ex.request_id or ex.headers.get("x-request-id", _MISSING),
    "request.protocol": lambda ex, now: ex.attrs.get("protocol") or (
        "HTTP/1.1" if ex.http11 else "HTTP/1.0"),
    "request.size": lambda ex, now: ex.body_size,
    "request.total_size": lambda ex, now: ex.bytes_in,
    "request.duration": lambda ex, now: int((now - ex.start) * 1000),
    "response.code": lambda ex, now: ex.status,
    "response.flags": lambda ex, now: ex.flags,
    "response.size": lambda ex, now: ex.bytes_out,
    "response.total_size": lambda ex, now: ex.bytes_out,
    "response.grpc_status": lambda ex, now: _grpc_status(ex),
    "source.address": lambda ex, now: ex.source_ip,
    "source.port": lambda ex, now: ex.source_port,
    "destination.address": lambda ex, now: ex.plan.spec.address,
    "destination.port": lambda ex, now: ex.listener_port,
    "upstream.address": lambda ex, now: ex.upstream_host or _MISSING,
    "upstream.port": lambda ex, now: _port(ex.upstream_host) or _MISSING,
    "connection.mtls": lambda ex, now: ex.principal is not None,
    "connection.requested_server_name": lambda ex, now: _MISSING,
    "xds.cluster_name": lambda ex, now: ex.cluster_name or _MISSING,
    "xds.route_name": lambda ex, now: ex.route_name or _MISSING,
    "node.id": lambda ex, now: ex.plan.snapshot.config.node.name,
}
assert set(ATTRIBUTE_GETTERS) == set(cel.ATTRIBUTES), "snapshot/cel.py and expr.py drifted"

_CMP: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
}


class EvalError(Exception):
    """A CEL runtime error (missing value, wrong type): never leaves this module's API."""


def _value(v: Any) -> Any:
    if v is _MISSING:
        raise EvalError("no such value")
    return v


def _compile(node: cel.Node) -> Fn:  # a dispatch over node kinds
    kind = node[0]
    if kind == "lit":
        value = node[1]
        return lambda ex, now: value
    if kind == "attr":
        get = ATTRIBUTE_GETTERS[node[1]]
        return lambda ex, now: _value(get(ex, now))
    if kind == "index":
        get, key = ATTRIBUTE_GETTERS[node[1][1]], node[2]
        return lambda ex, now: _value(get(ex, now).get(key, _MISSING))
    if kind == "has":
        inner = _compile(node[1])
        return lambda ex, now: _has(inner, ex, now)
    if kind == "not":
        inner = _compile(node[1])
        return lambda ex, now: not _bool(inner(ex, now))
    if kind in ("and", "or"):
        return _logic(kind, _compile(node[1]), _compile(node[2]))
    if kind == "cmp":
        op, a, b = _CMP[node[1]], _compile(node[2]), _compile(node[3])
        return lambda ex, now: _compare(op, a(ex, now), b(ex, now))
    if kind == "in":
        a, items = _compile(node[1]), node[2]
        return lambda ex, now: a(ex, now) in items
    if kind == "cond":
        c, a, b = _compile(node[1]), _compile(node[2]), _compile(node[3])
        return lambda ex, now: a(ex, now) if _bool(c(ex, now)) else b(ex, now)
    if kind == "call":
        return _call(node[1], _compile(node[2]))
    if kind == "method":
        return _method(node[1], _compile(node[2]), node[3])
    raise AssertionError(f"unknown CEL node {kind!r}")


def _has(inner: Fn, ex: Exchange, now: float) -> bool:
    try:
        inner(ex, now)
    except EvalError:
        return False
    return True


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise EvalError("not a bool")
    return v


def _logic(kind: str, a: Fn, b: Fn) -> Fn:
    # CEL's && / || are commutative over errors: false && error is false, true || error true
    want = kind == "or"

    def run(ex: Exchange, now: float) -> bool:
        try:
            if _bool(a(ex, now)) is want:
                return want
        except EvalError:
            if _bool(b(ex, now)) is want:
                return want
            raise
        return _bool(b(ex, now))

    return run


def _compare(op: Callable[[Any, Any], bool], a: Any, b: Any) -> bool:
    if isinstance(a, bool) != isinstance(b, bool) or (
            isinstance(a, str) != isinstance(b, str)):
        raise EvalError("no such overload")
    try:
        return op(a, b)
    except TypeError:
        raise EvalError("no such overload") from None


def _call(name: str, arg: Fn) -> Fn:
    if name == "string":
        return lambda ex, now: _to_string(arg(ex, now))
    if name == "int":
        return lambda ex, now: _to_int(arg(ex, now))
    return lambda ex, now: len(arg(ex, now))  # size


def _to_string(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _to_int(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        raise EvalError("bad int") from None


def _method(name: str, target: Fn, arg_node: cel.Node) -> Fn:
    if name == "matches":
        rx = re2.compile(arg_node[1])
        return lambda ex, now: rx.search(_str(target(ex, now))) is not None
    arg = _compile(arg_node)
    if name == "startsWith":
        return lambda ex, now: _str(target(ex, now)).startswith(_str(arg(ex, now)))
    if name == "endsWith":
        return lambda ex, now: _str(target(ex, now)).endswith(_str(arg(ex, now)))
    return lambda ex, now: _str(arg(ex, now)) in _str(target(ex, now))  # contains


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise EvalError("not a string")
    return v


def compile_filter(src: str) -> Callable[[Exchange, float], bool]:
    """`src` as a predicate: true logs the request; an error or non-bool result is false."""
    fn = _compile(cel.parse(src))

    def run(ex: Exchange, now: float) -> bool:
        try:
            return fn(ex, now) is True
        except (EvalError, TypeError, ValueError, AttributeError, re2.error):
            return False

    return run


def compile_value(src: str) -> Callable[[Exchange, float], str]:
    """`src` as a metric tag value: its string form, `unknown` on an error."""
    fn = _compile(cel.parse(src))

    def run(ex: Exchange, now: float) -> str:
        try:
            return _to_string(fn(ex, now))
        except (EvalError, TypeError, ValueError, AttributeError, re2.error):
            return "unknown"

    return run
