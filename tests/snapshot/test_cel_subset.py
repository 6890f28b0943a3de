"""The CEL subset (snapshot/cel.py): what parses, what is refused in one sentence, and
that no input makes the parser raise anything but CelError."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollway.snapshot import cel


@pytest.mark.parametrize(("src", "tree"), [
    ("response.code >= 400", ("cmp", ">=", ("attr", "response.code"), ("lit", 400))),
    ("request.headers['X-User']", ("index", ("attr", "request.headers"), "x-user")),
    ("request.headers.foo", ("index", ("attr", "request.headers"), "foo")),
    ("!(request.url_path == '/healthz')",
     ("not", ("cmp", "==", ("attr", "request.url_path"), ("lit", "/healthz")))),
    ("xds.route_name", ("attr", "xds.route_name")),
    ("'literal'", ("lit", "literal")),
    ("string(destination.port)", ("call", "string", ("attr", "destination.port"))),
    ("has(request.headers.x) ? request.headers.x : 'none'",
     ("cond", ("has", ("index", ("attr", "request.headers"), "x")),
      ("index", ("attr", "request.headers"), "x"), ("lit", "none"))),
    ("request.method in ['GET', \"HEAD\"]", ("in", ("attr", "request.method"), ("GET", "HEAD"))),
    ("request.path.startsWith('/a') && response.code != 200 || false",
     ("or", ("and", ("method", "startsWith", ("attr", "request.path"), ("lit", "/a")),
             ("cmp", "!=", ("attr", "response.code"), ("lit", 200))), ("lit", False))),
    ("request.host.matches('^api[.]')",
     ("method", "matches", ("attr", "request.host"), ("lit", "^api[.]"))),
])
def test_subset_parses(src: str, tree: cel.Node) -> None:
    assert cel.parse(src) == tree
    assert cel.check(src) is None


@pytest.mark.parametrize(("src", "says"), [
    ("response.code + 1 > 400", "uses arithmetic (+)"),
    ("request.headers.exists(h, h == 'x')", "calls `exists()`"),
    ("filter_state.x", "reads `filter_state.x`, which is not an attribute"),
    ("duration(request.duration)", "calls `duration()`"),
    ("{'a': 1}", "uses map literals"),
    ("response.code >=", "where a value should be"),
    ("(response.code", "expects `)`"),
    ("request.host.matches('(')", "is not an RE2 regex"),
    ("request.method in request.headers", "over a list literal"),
    ("", "the expression is empty"),
    ("response.code == 200 200", "where the expression should end"),
    ("request.host # x", "has `#`"),
])
def test_outside_the_subset_is_one_sentence(src: str, says: str) -> None:
    problem = cel.check(src)
    assert problem is not None and says in problem and "\n" not in problem


def test_attributes_lists_what_a_tree_reads() -> None:
    tree = cel.parse("response.code >= 500 || has(request.headers.x) && xds.route_name == 'r'")
    assert cel.attributes(tree) == {"response.code", "request.headers", "xds.route_name"}


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz._'\"()[]!&|=<>?:,0123456789 -+{}",
               max_size=60))
def test_any_text_parses_or_is_refused_never_crashes(src: str) -> None:
    try:
        cel.parse(src)
    except cel.CelError as exc:
        assert str(exc)
    except RecursionError:
        pass
