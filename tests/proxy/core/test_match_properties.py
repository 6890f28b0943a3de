"""Property tests: the compiled matcher agrees with a slow, literal reading of Istio's rules."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.proxy.core.core_builders import route, sm, table
from tollway.proxy.core.match import RouteTableMatcher
from tollway.snapshot import types

ALPHABET = "ab/A"
text = st.text(alphabet=ALPHABET, max_size=6)
# Regexes both RE2 and Python's re read the same way.
regex = st.lists(st.sampled_from(["a", "b", "/", ".", "a*", "[ab]", "(a|b)", "b+"]),
                 min_size=1, max_size=4).map("".join)


@st.composite
def string_match(draw: st.DrawFn) -> types.StringMatch:
    kind = draw(st.sampled_from(["exact", "prefix", "regex"]))
    return sm(kind, draw(regex) if kind == "regex" else draw(text))


def ref_str(m: types.StringMatch, value: str, fold: bool = False) -> bool:
    if m.kind == "regex":
        return re.fullmatch(m.value, value) is not None
    v, target = (value.lower(), m.value.lower()) if fold else (value, m.value)
    return v == target if m.kind == "exact" else v.startswith(target)


@st.composite
def header_match(draw: st.DrawFn) -> types.HeaderMatch:
    presence = draw(st.booleans())
    return types.HeaderMatch(
        name=draw(st.sampled_from(["x-a", "x-b"])),
        match=None if presence else draw(string_match()),
        invert=draw(st.booleans()),
    )


def ref_header(h: types.HeaderMatch, headers: dict[str, str]) -> bool:
    value = headers.get(h.name)
    if h.match is None:
        return (value is not None) != h.invert
    if h.invert:
        return not ref_str(h.match, value if value is not None else "")
    return value is not None and ref_str(h.match, value)


@st.composite
def route_match(draw: st.DrawFn) -> types.RouteMatch:
    return types.RouteMatch(
        uri=draw(st.none() | string_match()),
        ignore_uri_case=draw(st.booleans()),
        headers=tuple(draw(st.lists(header_match(), max_size=2))),
        method=draw(st.none() | st.just(sm("exact", "POST"))),
    )


def ref_match(m: types.RouteMatch, method: str, path: str, headers: dict[str, str]) -> bool:
    p = path.split("?", 1)[0]
    if m.uri is not None:
        fold = m.ignore_uri_case and m.uri.kind != "regex"
        if not ref_str(m.uri, p, fold):
            return False
    if m.method is not None and not ref_str(m.method, method):
        return False
    return all(ref_header(h, headers) for h in m.headers)


def ref_select(routes: list[types.Route], method: str, path: str,
               headers: dict[str, str]) -> str | None:
    for r in routes:
        if not r.matches or any(ref_match(m, method, path, headers) for m in r.matches):
            return r.name
    return None


routes_st = st.lists(st.lists(route_match(), max_size=3), min_size=1, max_size=10).map(
    lambda ms: [route(f"r{i}", *m) for i, m in enumerate(ms)]
)
request_st = st.tuples(
    st.sampled_from(["GET", "POST"]),
    st.builds(lambda p, q: "/" + p + q, text, st.sampled_from(["", "?a=1", "?"])),
    st.dictionaries(st.sampled_from(["x-a", "x-b"]), text, max_size=2),
)


@settings(max_examples=120, deadline=None)
@given(routes_st, request_st)
def test_select_agrees_with_reference(routes: list[types.Route],
                                      req: tuple[str, str, dict[str, str]]) -> None:
    method, path, headers = req
    got = RouteTableMatcher(table(*routes)).select("svc", method, path, headers)
    assert (got.spec.name if got else None) == ref_select(routes, method, path, headers)


@settings(max_examples=60, deadline=None)
@given(routes_st, request_st)
def test_select_returns_first_route_that_matches_alone(
    routes: list[types.Route], req: tuple[str, str, dict[str, str]]
) -> None:
    method, path, headers = req
    alone = [RouteTableMatcher(table(r)).select("svc", method, path, headers) for r in routes]
    first = next((r.name for r, hit in zip(routes, alone, strict=True) if hit), None)
    got = RouteTableMatcher(table(*routes)).select("svc", method, path, headers)
    assert (got.spec.name if got else None) == first


@settings(max_examples=100, deadline=None)
@given(text, text)
def test_prefix_rewrite_replaces_exactly_the_matched_prefix(prefix: str, rest: str) -> None:
    pfx = "/" + prefix
    r = route("p", types.RouteMatch(uri=sm("prefix", pfx)), rewrite=types.Rewrite(uri="/new"))
    hit = RouteTableMatcher(table(r)).select("svc", "GET", pfx + rest + "?q", {})
    assert hit is not None
    assert hit.rewrite_path(pfx + rest + "?q") == "/new" + rest + "?q"


DOMAINS = ["a.com", "b.a.com", "*.a.com", "*.com", "a.*", "*", "a.com:80", "*.b.a.com"]
AUTHORITIES = ["a.com", "A.COM:80", "b.a.com", "x.b.a.com:8080", "c.org", "a.net", "a.com:81"]


def ref_vhost(vhosts: list[list[str]], authority: str) -> int | None:
    """Envoy's order: exact, then longest suffix wildcard, then longest prefix wildcard,
    then "*"; the full authority first, then without its port; first listed wins ties."""
    full = authority.lower()
    head, _, port = full.rpartition(":")
    names = [full, head] if port.isdigit() and head else [full]
    for name in names:
        for i, ds in enumerate(vhosts):
            if name in ds:
                return i
    for name in names:
        for kind in ("suffix", "prefix"):
            best, best_len = None, -1
            for i, ds in enumerate(vhosts):
                for d in ds:
                    if d == "*":
                        continue
                    core = d[1:] if d.startswith("*") else d[:-1] if d.endswith("*") else None
                    if core is None or (kind == "suffix") != d.startswith("*"):
                        continue
                    ok = name.endswith(core) if kind == "suffix" else name.startswith(core)
                    if ok and len(name) > len(core) and len(core) > best_len:
                        best, best_len = i, len(core)
            if best is not None:
                return best
    return next((i for i, ds in enumerate(vhosts) if "*" in ds), None)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.sampled_from(DOMAINS), min_size=1, max_size=3, unique=True),
                min_size=1, max_size=4),
       st.sampled_from(AUTHORITIES))
def test_virtual_host_choice_agrees_with_reference(vhosts: list[list[str]],
                                                   authority: str) -> None:
    tbl = types.RouteTable(name="t", virtual_hosts=tuple(
        types.VirtualHost(name=f"vh{i}", domains=tuple(ds), routes=(route(f"vh{i}"),))
        for i, ds in enumerate(vhosts)
    ))
    got = RouteTableMatcher(tbl).select(authority, "GET", "/", {})
    want = ref_vhost(vhosts, authority)
    assert (got.spec.name if got else None) == (f"vh{want}" if want is not None else None)
