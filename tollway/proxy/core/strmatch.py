"""Compiled Istio StringMatch: exact / prefix / RE2 full match, built once per snapshot.

Kept apart from match.py so that header, query, method and authority matchers (and other
modules, e.g. CORS origins) share one small, well-tested primitive.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from tollway.snapshot import types

if TYPE_CHECKING:
    import re2

EXACT: Final = 1
PREFIX: Final = 2
REGEX: Final = 3
_KINDS: Final = {"exact": EXACT, "prefix": PREFIX, "regex": REGEX}


class StrMatcher:
    """One StringMatch, ready to test values; `lower` folds case (ignoreUriCase)."""

    __slots__ = ("kind", "regex", "value")

    def __init__(self, spec: types.StringMatch, *, lower: bool = False) -> None:
        self.kind: int = _KINDS[spec.kind]
        # ignoreUriCase applies to exact and prefix only, never to regex (Istio).
        self.value: str = spec.value.lower() if lower and self.kind != REGEX else spec.value
        self.regex: re2._Regexp | None = (
            compile_regex(spec.value) if self.kind == REGEX else None
        )

    def test(self, s: str) -> bool:
        """True if `s` matches (RE2 anchored full match for regex)."""
        kind = self.kind
        if kind == EXACT:
            return s == self.value
        if kind == PREFIX:
            return s.startswith(self.value)
        assert self.regex is not None
        return self.regex.fullmatch(s) is not None


def compile_regex(pattern: str) -> re2._Regexp:
    """Compile with RE2 (linear time: user regexes cannot blow up the hot path).

    RE2 is imported here, at the first regex of a config, not with the module: its
    library is ~2.5 MB of a sidecar's RSS, paid only by configs that use regexes."""
    import re2

    return re2.compile(pattern)
