"""One compiled route entry: an (HTTPRoute, match block) pair, ready for the hot path.

istiod emits one Envoy route per match block; doing the same keeps "first match wins" and
makes `matched_prefix` and the rewrite static per entry, so a request allocates nothing
here. See match.py for the selection rules and the per-field semantics.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Final

from tollway.proxy.core import cors, headerops
from tollway.proxy.core.retry import RetryPolicy
from tollway.proxy.core.split import WeightedPicker
from tollway.proxy.core.strmatch import PREFIX, REGEX, StrMatcher, compile_regex
from tollway.snapshot import types

_PSEUDO: Final = (":method", ":authority", ":path", ":scheme")


# Shared by every entry that has none of these (never written to).
_NO_NAMES: Final[frozenset[str]] = frozenset()
_NO_OPS: Final[dict[int, tuple[headerops.CompiledOps, ...] | None]] = {}
_NO_RESPONSE_OPS: Final[dict[int, headerops.ResponseOps | None]] = {}


class CompiledRoute:
    """One route entry (route x match block): its conditions, split and rewrite."""

    __slots__ = (
        "_authority", "_clusters", "_cumulative", "_gateway_bare", "_gateways", "_headers",
        "_ignore_case", "_last", "_method", "_picker", "_port", "_query", "_rewrite_regex",
        "_rewrite_regex_sub", "_rewrite_uri", "_rewrite_whole", "_scheme", "_source_labels",
        "_source_ns", "_uri", "authority_rewrite", "cors", "forward_only", "match_name",
        "matched_prefix", "mirrors", "request_ops", "request_ops_by", "response_ops",
        "response_ops_by", "retry_policy", "rewrites", "shapes_response", "simple", "spec",
        "timeout", "uri_kind", "uri_regex", "uri_value",
    )  # fmt: skip

    def __init__(
        self,
        spec: types.Route,
        match: types.RouteMatch | None,
        picker: WeightedPicker | None,
    ) -> None:
        self.spec = spec
        self.match_name = match.name if match is not None else ""
        m = match if match is not None else types.RouteMatch()
        self._compile_uri(m)
        self._method = StrMatcher(m.method) if m.method else None
        self._authority = StrMatcher(m.authority) if m.authority else None
        self._scheme = StrMatcher(m.scheme) if m.scheme else None
        self._headers = tuple(_compile_header(h) for h in m.headers)
        self._query = tuple(
            (q.name, StrMatcher(q.match) if q.match else None) for q in m.query_params
        )
        self._port = m.port
        self._source_labels = tuple(sorted(m.source_labels.items()))
        self._source_ns = m.source_namespace
        self._gateways = frozenset(m.gateways) if m.gateways else None
        # A bare gateway name (the VirtualService's namespace implied) matches by name.
        self._gateway_bare = (frozenset(g for g in m.gateways if "/" not in g and g != "mesh")
                              if m.gateways else _NO_NAMES)
        self.simple = not (
            self._method or self._authority or self._scheme or self._headers or self._query
            or self._port is not None or self._source_labels or self._source_ns
            or self._gateways
        )  # fmt: skip
        self._clusters = spec.clusters
        self._picker = picker
        # The split inlined (one bisect, no call): None when there is nothing to draw
        # (one destination) or no weight at all (the picker's uniform fallback).
        self._cumulative = picker.cumulative if picker is not None and picker.total else None
        self._last = picker.last if picker is not None else 0
        self._compile_rewrite(spec)
        # What the router reads per request, decided once here.
        self.retry_policy = RetryPolicy.from_spec(spec.retries)
        self.rewrites = spec.rewrite is not None
        # Nothing to do before picking a destination: no CORS, redirect, direct response
        # or fault.
        self.forward_only = (
            spec.cors is None and spec.redirect is None and spec.direct_response is None
            and spec.fault is None
        )  # fmt: skip
        self.request_ops = spec.request_headers is not None or any(
            c.request_headers is not None for c in spec.clusters
        )
        self.response_ops = spec.response_headers is not None or any(
            c.response_headers is not None for c in spec.clusters
        )
        # Compiled here, with the snapshot, never per request: the CORS policy and, per
        # destination (keyed by the identity of the WeightedCluster `pick_cluster`
        # returns, which this entry keeps alive), the header operations to apply in
        # Envoy's order - request: route, then destination; response: destination, then
        # route.
        self.cors = cors.CorsPolicy(spec.cors) if spec.cors is not None else None
        # A route without header operations (most) shares one empty table: every lookup
        # answers None, and 10,000 routes do not hold 20,000 dicts of Nones.
        self.request_ops_by: dict[int, tuple[headerops.CompiledOps, ...] | None] = _NO_OPS
        if self.request_ops:
            self.request_ops_by = {
                id(c): headerops.compile_chain(spec.request_headers, c.request_headers)
                for c in spec.clusters
            }
            self.request_ops_by[id(None)] = headerops.compile_chain(spec.request_headers)
        self.response_ops_by: dict[int, headerops.ResponseOps | None] = _NO_RESPONSE_OPS
        if self.response_ops:
            self.response_ops_by = {
                id(c): headerops.compile_chain(c.response_headers, spec.response_headers)
                for c in spec.clusters
            }
            self.response_ops_by[id(None)] = headerops.compile_chain(spec.response_headers)
        self.shapes_response = self.response_ops or self.cors is not None
        self.timeout = spec.timeout
        self.mirrors = spec.mirrors

    # ------------------------------------------------------------ compile

    def _compile_uri(self, m: types.RouteMatch) -> None:
        uri = m.uri
        self._uri = StrMatcher(uri, lower=m.ignore_uri_case) if uri else None
        self.uri_kind = self._uri.kind if self._uri else 0
        self.uri_value = self._uri.value if self._uri else ""
        self.uri_regex: Any = self._uri.regex if self._uri else None
        self._ignore_case = bool(uri and m.ignore_uri_case and self.uri_kind != REGEX)
        # No uri condition is Envoy's prefix "/" (istiod emits it so): rewrites replace "/".
        self.matched_prefix: str | None = (
            self.uri_value if self.uri_kind == PREFIX else ("/" if uri is None else None)
        )

    def _compile_rewrite(self, spec: types.Route) -> None:
        rw = spec.rewrite
        self._rewrite_uri = rw.uri if rw is not None else None
        self._rewrite_whole = self.matched_prefix is None
        self._rewrite_regex = None
        self._rewrite_regex_sub = ""
        if rw is not None and rw.uri_regex is not None and rw.uri_regex_rewrite is not None:
            self._rewrite_regex = compile_regex(rw.uri_regex)
            self._rewrite_regex_sub = rw.uri_regex_rewrite
        self.authority_rewrite = _authority_rewrite(spec)

    # ------------------------------------------------------------ per request

    def conditions_hold(
        self,
        authority: str,
        method: str,
        headers: Mapping[str, str],
        query: str,
        port: int | None,
        source_labels: Mapping[str, str] | None,
        source_namespace: str | None,
        gateway: str | None,
        scheme: str,
        path: str,
    ) -> bool:
        """Everything but the uri (checked inline by the table for speed). `path` is the
        full request target, as the `:path` pseudo-header carries it."""
        if self._method is not None and not self._method.test(method):
            return False
        if self._authority is not None and not self._authority.test(authority):
            return False
        if self._scheme is not None and not self._scheme.test(scheme):
            return False
        if self._port is not None and port is not None and port != self._port:
            return False
        if self._gateways is not None:
            g = gateway or "mesh"
            if g not in self._gateways and g.rpartition("/")[2] not in self._gateway_bare:
                return False
        # sourceLabels / sourceNamespace are config-time in Istio (the control plane only
        # sends a block to the proxies it selects); checked again only when told the client.
        ns = self._source_ns
        if ns is not None and source_namespace is not None and source_namespace != ns:
            return False
        if self._source_labels and source_labels is not None:
            for k, v in self._source_labels:
                if source_labels.get(k) != v:
                    return False
        for name, pseudo, matcher, invert in self._headers:
            if pseudo:
                value: str | None = (method, authority, path, scheme)[pseudo - 1]
            else:
                value = headers.get(name)
            if matcher is None:  # presence
                if (value is None) != invert:
                    return False
            elif invert:
                if matcher.test(value if value is not None else ""):
                    return False
            elif value is None or not matcher.test(value):
                return False
        if self._query:
            params = parse_query(query)
            for qname, qmatcher in self._query:
                qvalue = params.get(qname)
                if qvalue is None:
                    return False
                if qmatcher is not None and not qmatcher.test(qvalue):
                    return False
        return True

    def response_ops_for(self, wc: types.WeightedCluster | None) -> headerops.ResponseOps | None:
        """The compiled response header operations for a destination of this entry."""
        return self.response_ops_by.get(id(wc))  # id(None): the route's own operations

    def request_ops_for(
        self, wc: types.WeightedCluster | None
    ) -> tuple[headerops.CompiledOps, ...] | None:
        """The compiled request header operations for a destination of this entry."""
        return self.request_ops_by.get(id(wc))

    def pick_cluster(self, r: float) -> types.WeightedCluster | None:
        """The destination for a uniform draw r in [0,1); None for redirect/direct response."""
        clusters = self._clusters
        if not clusters:
            return None
        cumulative = self._cumulative
        if cumulative is not None:
            i = bisect_right(cumulative, r)
            return clusters[i if i <= self._last else self._last]
        picker = self._picker
        if picker is None:
            return clusters[0]
        return clusters[picker.pick(r)]

    def rewrite_path(self, path: str) -> str:
        """The path to send upstream (query string preserved), after rewrite.uri or
        uriRegexRewrite: a prefix match has its matched prefix replaced, an exact or regex
        match the whole path."""
        new = self._rewrite_uri
        rx = self._rewrite_regex
        if new is None and rx is None:
            return path
        q = path.find("?")
        p, tail = (path, "") if q < 0 else (path[:q], path[q:])
        if rx is not None:
            return rx.sub(self._rewrite_regex_sub, p) + tail  # type: ignore[no-any-return]
        assert new is not None
        if self._rewrite_whole:
            return new + tail
        prefix = self.matched_prefix or ""
        return new + p[len(prefix) :] + tail

    def redirect_location(
        self, authority: str, path: str, scheme: str = "http", request_port: int | None = None
    ) -> str | None:
        """Location header for a redirect route (None if the route is not a redirect).

        uri replaces the whole path, prefixRewrite the matched prefix; the query string is
        kept. The port, as Istio defines HTTPRedirect (and Envoy's redirect action does):
        `port` is used as given; derivePort FROM_REQUEST_PORT keeps the port the request
        was sent to (its Host's explicit port, else `request_port`, the listener's);
        FROM_PROTOCOL_DEFAULT uses the redirect scheme's default; neither keeps the Host as
        sent (explicit port included) except a port that was the default of a scheme the
        redirect changes; `authority` replaces host and port. A scheme's default port is
        never written."""
        rd = self.spec.redirect
        if rd is None:
            return None
        q = path.find("?")
        p, tail = (path, "") if q < 0 else (path[:q], path[q:])
        host, req_port = split_host_port(authority)
        out_scheme = rd.scheme or scheme
        port: int | None
        if rd.port is not None:
            port = rd.port
        elif rd.derive_port == "FROM_REQUEST_PORT":
            port = req_port if req_port is not None else request_port
        elif rd.derive_port == "FROM_PROTOCOL_DEFAULT" or rd.authority is not None:
            port = None
        else:
            port = req_port
            if out_scheme != scheme and _DEFAULT_PORTS.get(scheme) == req_port:
                port = None
        if rd.authority is not None:
            host, authority_port = split_host_port(rd.authority)
            if rd.port is None and rd.derive_port is None:
                port = authority_port
        if port is not None and _DEFAULT_PORTS.get(out_scheme) == port:
            port = None
        netloc = host if port is None else f"{host}:{port}"
        if rd.uri is not None:
            p = rd.uri
        elif rd.prefix_rewrite is not None:
            p = rd.prefix_rewrite + p[len(self.matched_prefix or "") :]
        return f"{out_scheme}://{netloc}{p}{tail}"


_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def _compile_header(
    h: types.HeaderMatch,
) -> tuple[str, int, StrMatcher | None, bool]:
    name = h.name.lower()
    pseudo = _PSEUDO.index(name) + 1 if name in _PSEUDO else 0
    m = h.match
    if m is not None and m.kind == "regex" and m.value == "*":
        m = None  # Istio special case: regex "*" means presence
    return (name, pseudo, StrMatcher(m) if m is not None else None, h.invert)


def _authority_rewrite(spec: types.Route) -> str | None:
    if spec.rewrite is not None and spec.rewrite.authority:
        return spec.rewrite.authority
    ops = spec.request_headers
    if ops is not None:
        for key, value in ops.set.items():
            if key.lower() in ("host", ":authority"):
                return value
    return None


@lru_cache(maxsize=512)
def parse_query(query: str) -> dict[str, str]:
    """Query string -> first value per name, raw (not percent-decoded, like Envoy).

    Cached (bounded) because several routes may ask about one request: the returned dict
    is shared, so callers must not modify it."""
    out: dict[str, str] = {}
    if not query:
        return out
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        out.setdefault(name, value)
    return out


def split_host_port(authority: str) -> tuple[str, int | None]:
    """'host:port' -> (host, port); IPv6 literals in brackets; bad ports are no port."""
    if authority.startswith("["):
        end = authority.find("]")
        if end >= 0 and authority[end + 1 : end + 2] == ":":
            rest = authority[end + 2 :]
            return authority[: end + 1], int(rest) if rest.isdigit() else None
        return authority, None
    host, sep, port = authority.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return host, int(port)
    return authority, None


def compile_routes(routes: tuple[types.Route, ...]) -> tuple[CompiledRoute, ...]:
    """One entry per (route, match block), in order; blocks of a route share its picker,
    and so do routes with the same weights (a picker is read-only: one 90/10 picker
    serves every 90/10 route)."""
    out: list[CompiledRoute] = []
    pickers: dict[tuple[int, ...], WeightedPicker] = {}
    for route in routes:
        picker: WeightedPicker | None = None
        if len(route.clusters) > 1:
            weights = tuple(c.weight for c in route.clusters)
            picker = pickers.get(weights)
            if picker is None:
                picker = pickers[weights] = WeightedPicker(weights)
        if not route.matches:
            out.append(CompiledRoute(route, None, picker))
        else:
            out.extend(CompiledRoute(route, m, picker) for m in route.matches)
    return tuple(out)
