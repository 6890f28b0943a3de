"""meshConfig.pathNormalization: a table of paths per mode, and the fast check held equal
to the full algorithm.

Expectations come from Istio's documentation of the modes and Envoy's path_utility tests
(Chromium's canonicalizer): escapes of reserved characters are kept as sent, hex case
included; `%2e` is a dot; `..` never climbs above `/`; `%00` is invalid; queries are
never touched and fragments always dropped.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tollway.proxy.core.pathnorm import MODES, PathNormalizer

# target -> (NONE, BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES); None = invalid (400)
TABLE: dict[str, tuple[str | None, str | None, str | None, str | None]] = {
    "/": ("/", "/", "/", "/"),
    "/api/v1/users": ("/api/v1/users",) * 4,
    "/a/b/../c": ("/a/b/../c", "/a/c", "/a/c", "/a/c"),
    "/a/b/./c": ("/a/b/./c", "/a/b/c", "/a/b/c", "/a/b/c"),
    "/a/b/../../../../c": ("/a/b/../../../../c", "/c", "/c", "/c"),
    "/../admin": ("/../admin", "/admin", "/admin", "/admin"),
    "/public/..": ("/public/..", "/", "/", "/"),
    "/public/.": ("/public/.", "/public/", "/public/", "/public/"),
    "/a/b/%2E%2E/c": ("/a/b/%2E%2E/c", "/a/c", "/a/c", "/a/c"),
    "/a/b/%2e%2e/c": ("/a/b/%2e%2e/c", "/a/c", "/a/c", "/a/c"),
    "/a/b/%2E./c": ("/a/b/%2E./c", "/a/c", "/a/c", "/a/c"),
    "/a/b/%2E/c": ("/a/b/%2E/c", "/a/b/c", "/a/b/c", "/a/b/c"),
    "/a/..\\c": ("/a/..\\c", "/c", "/c", "/c"),
    "/admin\\secret": ("/admin\\secret", "/admin/secret", "/admin/secret", "/admin/secret"),
    "//admin": ("//admin", "//admin", "/admin", "/admin"),
    "/a//b///c/": ("/a//b///c/", "/a//b///c/", "/a/b/c/", "/a/b/c/"),
    "/a/%2F%2f/c": ("/a/%2F%2f/c", "/a/%2F%2f/c", "/a/%2F%2f/c", "/a/c"),
    "/public%2F..%2Fadmin": ("/public%2F..%2Fadmin", "/public%2F..%2Fadmin",
                             "/public%2F..%2Fadmin", "/admin"),
    "/public%5C..%5Cadmin": ("/public%5C..%5Cadmin", "/public%5C..%5Cadmin",
                             "/public%5C..%5Cadmin", "/admin"),
    "/%5c%25": ("/%5c%25", "/%5c%25", "/%5c%25", "/%25"),
    "/%c0%af": ("/%c0%af",) * 4,
    "/%61dmin": ("/%61dmin", "/admin", "/admin", "/admin"),
    "/%7Euser/%2D%5F": ("/%7Euser/%2D%5F", "/~user/-_", "/~user/-_", "/~user/-_"),
    "/a%20b": ("/a%20b",) * 4,
    "/a%zz%": ("/a%zz%",) * 4,
    '/a"b<c>': ('/a"b<c>', "/a%22b%3Cc%3E", "/a%22b%3Cc%3E", "/a%22b%3Cc%3E"),
    "/xyz/.%00../abc": ("/xyz/.%00../abc", None, None, None),
    "/xyz/AAAAA%%0000/abc": ("/xyz/AAAAA%%0000/abc", None, None, None),
    "/A/B/C": ("/A/B/C",) * 4,
    "/a/../b?x=/../y&z=%2F//": ("/a/../b?x=/../y&z=%2F//", "/b?x=/../y&z=%2F//",
                                "/b?x=/../y&z=%2F//", "/b?x=/../y&z=%2F//"),
    "//a/?b//c": ("//a/?b//c", "//a/?b//c", "/a/?b//c", "/a/?b//c"),
    "/public#/../admin": ("/public", "/public", "/public", "/public"),
    "/a/./b?q=1#frag": ("/a/./b?q=1", "/a/b?q=1", "/a/b?q=1", "/a/b?q=1"),
    "/a#b?c": ("/a", "/a", "/a", "/a"),
    "*": ("*",) * 4,
}


@pytest.mark.parametrize("target", list(TABLE))
@pytest.mark.parametrize("mode_index", range(4))
def test_paths_per_mode(target: str, mode_index: int) -> None:
    norm = PathNormalizer(MODES[mode_index])
    want = TABLE[target][mode_index]
    assert norm.normalize(target) == want
    assert norm.reference(target) == want


def test_unknown_mode_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="BASE"):
        PathNormalizer("LOOSE")  # type: ignore[arg-type]


# targets as llhttp can deliver them: printable ASCII, heavy on the characters that matter
_CHARS = st.sampled_from([*list('/./%2eEfFcC5\\?#aZ09~-_"<{'), "%2F", "%2e", "%5c", "%00", "//"])
targets = st.lists(_CHARS, max_size=24).map(lambda parts: "/" + "".join(parts))


@settings(max_examples=1500, deadline=None)
@given(targets, st.sampled_from(MODES))
def test_the_fast_check_never_disagrees_with_the_full_algorithm(target: str, mode: str) -> None:
    norm = PathNormalizer(mode)  # type: ignore[arg-type]
    assert norm.normalize(target) == norm.reference(target)


@settings(max_examples=800, deadline=None)
@given(targets, st.sampled_from(MODES[1:]))
def test_normalizing_twice_changes_nothing_more(target: str, mode: str) -> None:
    """Idempotent: what the proxy forwards is what a second proxy would route on."""
    norm = PathNormalizer(mode)  # type: ignore[arg-type]
    once = norm.normalize(target)
    if once is not None:
        assert norm.normalize(once) == once


@settings(max_examples=800, deadline=None)
@given(targets, st.sampled_from(MODES[1:]))
def test_no_dot_segment_survives(target: str, mode: str) -> None:
    out = PathNormalizer(mode).normalize(target)  # type: ignore[arg-type]
    if out is not None:
        segments = out.partition("?")[0].split("/")
        assert "." not in segments and ".." not in segments
