"""Istio HTTPMatchRequest semantics, case by case (istio-api-digest §1.2-1.4)."""

from __future__ import annotations

from tests.proxy.core.core_builders import route, sm, table
from tollway.proxy.core.match import RouteTableMatcher, parse_query, split_host_port
from tollway.snapshot import types

M = types.RouteMatch
H = types.HeaderMatch
Q = types.QueryMatch


def name_of(matcher: RouteTableMatcher, path: str, headers: dict[str, str] | None = None,
            **kw: object) -> str | None:
    authority = str(kw.pop("authority", "svc"))
    method = str(kw.pop("method", "GET"))
    r = matcher.select(authority, method, path, headers or {}, **kw)  # type: ignore[arg-type]
    return r.spec.name if r is not None else None


def test_uri_prefix_is_a_string_prefix_not_a_segment() -> None:
    m = RouteTableMatcher(table(route("v2", M(uri=sm("prefix", "/v2")))))
    assert name_of(m, "/v2example") == "v2"
    assert name_of(m, "/v2/x") == "v2"
    assert name_of(m, "/v1") is None


def test_uri_is_matched_without_query_string() -> None:
    m = RouteTableMatcher(table(route("e", M(uri=sm("exact", "/a")))))
    assert name_of(m, "/a?x=1") == "e"
    assert name_of(m, "/a/") is None


def test_uri_regex_is_full_match() -> None:
    m = RouteTableMatcher(table(route("r", M(uri=sm("regex", "/api/v[0-9]+")))))
    assert name_of(m, "/api/v12") == "r"
    assert name_of(m, "/api/v12/x") is None
    assert name_of(m, "/x/api/v1") is None


def test_ignore_uri_case_folds_exact_and_prefix_only() -> None:
    m = RouteTableMatcher(table(
        route("p", M(uri=sm("prefix", "/Foo"), ignore_uri_case=True)),
        route("r", M(uri=sm("regex", "/bar"), ignore_uri_case=True)),
    ))
    assert name_of(m, "/fOO/x") == "p"
    assert name_of(m, "/bar") == "r"
    assert name_of(m, "/BAR") is None


def test_first_matching_route_wins() -> None:
    m = RouteTableMatcher(table(
        route("a", M(uri=sm("prefix", "/api"))),
        route("b", M(uri=sm("prefix", "/api/v2"))),
        route("all"),
    ))
    assert name_of(m, "/api/v2/x") == "a"
    assert name_of(m, "/other") == "all"


def test_match_blocks_are_ored_and_fields_anded() -> None:
    both = M(uri=sm("prefix", "/a"), method=sm("exact", "POST"))
    m = RouteTableMatcher(table(route("x", both, M(uri=sm("exact", "/b")))))
    assert name_of(m, "/a", method="POST") == "x"
    assert name_of(m, "/a", method="GET") is None
    assert name_of(m, "/b", method="GET") == "x"


def test_header_exact_prefix_regex_and_presence() -> None:
    m = RouteTableMatcher(table(
        route("exact", M(headers=(H(name="end-user", match=sm("exact", "jason")),))),
        route("prefix", M(headers=(H(name="x-p", match=sm("prefix", "ab")),))),
        route("regex", M(headers=(H(name="user-agent", match=sm("regex", ".*Firefox.*")),))),
        route("present", M(headers=(H(name="x-canary"),))),
        route("star", M(headers=(H(name="x-star", match=sm("regex", "*")),))),
    ))
    assert name_of(m, "/", {"end-user": "jason"}) == "exact"
    assert name_of(m, "/", {"end-user": "jasonx"}) is None
    assert name_of(m, "/", {"x-p": "abc"}) == "prefix"
    assert name_of(m, "/", {"user-agent": "Mozilla Firefox/1"}) == "regex"
    assert name_of(m, "/", {"x-canary": ""}) == "present"
    assert name_of(m, "/", {"x-star": "anything"}) == "star"
    assert name_of(m, "/", {}) is None


def test_without_headers_treats_missing_header_as_empty() -> None:
    not_jason = M(headers=(H(name="end-user", match=sm("exact", "jason"), invert=True),))
    never = M(headers=(H(name="x", match=sm("regex", ".*"), invert=True),))
    absent = M(headers=(H(name="y", invert=True),))
    m1 = RouteTableMatcher(table(route("nj", not_jason)))
    assert name_of(m1, "/", {}) == "nj"
    assert name_of(m1, "/", {"end-user": "bob"}) == "nj"
    assert name_of(m1, "/", {"end-user": "jason"}) is None
    m2 = RouteTableMatcher(table(route("never", never)))
    assert name_of(m2, "/", {}) is None
    assert name_of(m2, "/", {"x": "1"}) is None
    m3 = RouteTableMatcher(table(route("absent", absent)))
    assert name_of(m3, "/", {}) == "absent"
    assert name_of(m3, "/", {"y": ""}) is None


def test_pseudo_header_keys_match_request_parts() -> None:
    by_method = H(name=":method", match=sm("exact", "PUT"))
    m = RouteTableMatcher(table(route("pm", M(headers=(by_method,)))))
    assert name_of(m, "/", method="PUT") == "pm"
    assert name_of(m, "/", method="GET") is None


def test_query_params_exact_regex_and_empty_value() -> None:
    m = RouteTableMatcher(table(
        route("exact", M(query_params=(Q(name="v", match=sm("exact", "2")),))),
        route("regex", M(query_params=(Q(name="id", match=sm("regex", r"\d+$")),))),
        route("bare", M(query_params=(Q(name="debug", match=sm("exact", "")),))),
    ))
    assert name_of(m, "/p?a=1&v=2") == "exact"
    assert name_of(m, "/p?v=3") is None
    assert name_of(m, "/p?id=123") == "regex"
    assert name_of(m, "/p?id=a123") is None
    assert name_of(m, "/p?debug") == "bare"
    assert name_of(m, "/p?Debug") is None  # names are case-sensitive


def test_method_authority_scheme_port() -> None:
    m = RouteTableMatcher(table(
        route("auth", M(authority=sm("exact", "api.example.com:8080"))),
        route("https", M(scheme=sm("exact", "https"))),
        route("port", M(port=9090)),
    ))
    assert name_of(m, "/", authority="api.example.com:8080") == "auth"
    assert name_of(m, "/", scheme="https") == "https"
    assert name_of(m, "/", port=9090) == "port"
    assert name_of(m, "/", port=9091) is None


def test_gateways_and_source_labels() -> None:
    m = RouteTableMatcher(table(
        route("gw", M(gateways=("istio-system/ingress",))),
        route("mesh-canary", M(gateways=("mesh",), source_labels={"app": "web", "version": "v2"})),
        route("ns", M(source_namespace="team-a")),
    ))
    assert name_of(m, "/", gateway="istio-system/ingress") == "gw"
    assert name_of(m, "/", source_labels={"app": "web", "version": "v2", "x": "y"}) == "mesh-canary"
    assert name_of(m, "/", source_labels={"app": "web"}, source_namespace="b") is None
    assert name_of(m, "/", source_labels={}, source_namespace="team-a") == "ns"
    assert name_of(m, "/", gateway="istio-system/other", source_namespace="zz") is None
    # config-time conditions: re-checked only when the caller states the client
    assert name_of(m, "/") == "mesh-canary"
    bare = RouteTableMatcher(table(route("b", M(gateways=("ingress",)))))
    assert name_of(bare, "/", gateway="istio-system/ingress") == "b"
    assert name_of(bare, "/") is None


def test_virtual_host_by_authority_exact_port_and_wildcards() -> None:
    def vh(name: str, *domains: str) -> types.VirtualHost:
        return types.VirtualHost(name=name, domains=domains, routes=(route(name),))

    t = types.RouteTable(name="t", virtual_hosts=(
        vh("reviews", "reviews", "reviews.default.svc.cluster.local", "reviews:9080"),
        vh("wild", "*.example.com"),
        vh("deeper", "*.api.example.com"),
        vh("pre", "foo.*"),
        vh("any", "*"),
    ))
    m = RouteTableMatcher(t)
    assert name_of(m, "/", authority="reviews") == "reviews"
    assert name_of(m, "/", authority="REVIEWS:9080") == "reviews"
    assert name_of(m, "/", authority="reviews.default.svc.cluster.local:1234") == "reviews"
    assert name_of(m, "/", authority="a.example.com") == "wild"
    assert name_of(m, "/", authority="x.api.example.com:80") == "deeper"
    assert name_of(m, "/", authority="example.com") == "any"
    assert name_of(m, "/", authority="foo.bar") == "pre"
    t2 = types.RouteTable(name="t", virtual_hosts=(vh("only", "a.b"),))
    assert name_of(RouteTableMatcher(t2), "/", authority="c.d") is None


def test_rewrite_prefix_replaces_matched_prefix_and_keeps_query() -> None:
    rw = types.Rewrite(uri="/new")
    m = RouteTableMatcher(table(
        route("p", M(uri=sm("prefix", "/foo")), rewrite=rw),
        route("e", M(uri=sm("exact", "/exact")), rewrite=rw),
        route("slash", M(uri=sm("prefix", "/bar")), rewrite=types.Rewrite(uri="/")),
    ))
    p = m.select("svc", "GET", "/foo/bar?k=v", {})
    assert p is not None and p.matched_prefix == "/foo"
    assert p.rewrite_path("/foo/bar?k=v") == "/new/bar?k=v"
    e = m.select("svc", "GET", "/exact?x", {})
    assert e is not None and e.rewrite_path("/exact?x") == "/new?x"
    s = m.select("svc", "GET", "/bar/baz", {})
    assert s is not None and s.rewrite_path("/bar/baz") == "//baz"


def test_uri_regex_rewrite_and_authority_rewrite() -> None:
    rw = types.Rewrite(uri_regex="^/v1/(.*)$", uri_regex_rewrite=r"/v2/\1", authority="new.host")
    m = RouteTableMatcher(table(route("r", rewrite=rw)))
    r = m.select("svc", "GET", "/v1/items?q=1", {})
    assert r is not None
    assert r.rewrite_path("/v1/items?q=1") == "/v2/items?q=1"
    assert r.authority_rewrite == "new.host"


def test_redirect_location() -> None:
    rd = types.Redirect(uri="/moved", scheme="https")
    m = RouteTableMatcher(table(route("rd", clusters=(), redirect=rd)))
    r = m.select("svc", "GET", "/old?a=1", {})
    assert r is not None and r.pick_cluster(0.5) is None
    assert r.redirect_location("svc:443", "/old?a=1") == "https://svc/moved?a=1"
    assert r.redirect_location("svc:8080", "/old") == "https://svc:8080/moved"
    pr = types.Redirect(prefix_rewrite="/v2/", authority="new.example.com", status=302)
    v1 = M(uri=sm("prefix", "/v1/"))
    m2 = RouteTableMatcher(table(route("pr", v1, clusters=(), redirect=pr)))
    r2 = m2.select("svc", "GET", "/v1/a/b?q", {})
    assert r2 is not None
    assert r2.redirect_location("svc", "/v1/a/b?q") == "http://new.example.com/v2/a/b?q"
    dp = types.Redirect(scheme="https", derive_port="FROM_REQUEST_PORT")
    r3 = RouteTableMatcher(table(route("dp", clusters=(), redirect=dp))).select("h", "GET", "/", {})
    assert r3 is not None
    assert r3.redirect_location("h", "/x", request_port=80) == "https://h:80/x"
    assert r3.redirect_location("h", "/x", request_port=443) == "https://h/x"


def test_parse_query_and_split_host_port() -> None:
    assert parse_query("a=1&a=2&b&c=") == {"a": "1", "b": "", "c": ""}
    assert split_host_port("h:80") == ("h", 80)
    assert split_host_port("[::1]:8080") == ("[::1]", 8080)
    assert split_host_port("[::1]") == ("[::1]", None)
    assert split_host_port("h:x") == ("h:x", None)
