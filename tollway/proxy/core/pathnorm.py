"""Istio's `meshConfig.pathNormalization`: the path routing, policy and the app all see.

AuthorizationPolicy `paths` and VirtualService `uri` matches compare strings, so a path
the policy reads one way and the app another (`/admin/../public`, `/public/..%2Fadmin`,
`//admin`, `/%61dmin`) is a way around them. Envoy normalizes the `:path` once, before
routing and every filter, and forwards the normalized path; so does this module, with
Istio's four modes mapped to Envoy's settings as istiod maps them:

  NONE                       nothing (the fragment is still dropped)
  BASE (default)             `normalize_path`: RFC 3986 section 6 as Chromium's URL
                             canonicalizer does it (Envoy's): `\\` is a `/`; percent-encoded
                             unreserved characters (ALPHA DIGIT - . _ ~) are decoded, other
                             escapes kept as sent (hex case included); `"<>`{}` escaped;
                             `.` and `..` segments (also as `%2e`) resolved, never above `/`;
                             an escaped NUL (`%00`) makes the path invalid (400)
  MERGE_SLASHES              BASE, then runs of `/` merged (`merge_slashes`)
  DECODE_AND_MERGE_SLASHES   `%2F` `%2f` `%5C` `%5c` decoded first
                             (`path_with_escaped_slashes_action: UNESCAPE_AND_FORWARD`),
                             then BASE, then slashes merged

The query string is never touched; a fragment (`#...`, which a client should not send) is
dropped in every mode. Only origin-form paths (starting with `/`) are normalized.

Most paths are already normal: `normalize` first asks one precompiled character-class
search and one or two substring tests whether any of the above could apply (~0.15 us)
and returns the path itself when not; `reference` always runs the full algorithm (and
returns early when only the query looked suspect), and the tests hold the two equal.
"""

from __future__ import annotations

import re
from typing import Final, Literal

Mode = Literal["NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"]
MODES: Final[tuple[Mode, ...]] = ("NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES")

_UNRESERVED: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
)
_HEXDIGITS: Final = frozenset("0123456789abcdefABCDEF")
# Characters Chromium's path canonicalizer percent-encodes (the WHATWG path set; llhttp has
# already refused controls, space and non-ASCII bytes in the request target).
_ESCAPE: Final = {c: f"%{ord(c):02X}" for c in '"<>`{}'}
# Anything that could make BASE change a path (the `/.` and `//` tests are done apart: an
# alternation in the pattern costs more than the two substring tests).
_SUSPECT: Final = re.compile(r'[%\\"<>`{}#]')
_FRAGMENT: Final = re.compile("#")
_SLASHES: Final = re.compile(r"/{2,}")
_ESCAPED_SLASH: Final = re.compile(r"%(?:2[fF]|5[cC])")


class PathNormalizer:
    """One mode's normalization; `normalize(path)` is what the listener calls per request."""

    __slots__ = ("decode_slashes", "merge", "mode", "rfc", "suspect")

    def __init__(self, mode: Mode = "BASE") -> None:
        if mode not in MODES:
            raise ValueError(f"unknown pathNormalization {mode!r}; use one of {', '.join(MODES)}")
        self.mode = mode
        self.rfc = mode != "NONE"
        self.merge = mode in ("MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES")
        self.decode_slashes = mode == "DECODE_AND_MERGE_SLASHES"
        # Over the whole target, query included: cheaper than finding the "?" first; a
        # query with escapes only costs the second look in `reference`.
        self.suspect = (_SUSPECT if self.rfc else _FRAGMENT).search

    def normalize(self, target: str) -> str | None:
        """The path to route, authorize and forward; None when it cannot be normalized
        (answer 400). Returns `target` itself when it is already normal.

        The listener inlines this first test (listener._exchange): keep the two alike."""
        if self.suspect(target) is None and "/." not in target and not (
            self.merge and "//" in target
        ):
            return target
        return self.reference(target)

    def reference(self, target: str) -> str | None:
        """The full algorithm, for any target (see module doc)."""
        hash_at = target.find("#")
        if hash_at >= 0:
            target = target[:hash_at]
        q = target.find("?")
        path, query = (target, "") if q < 0 else (target[:q], target[q:])
        if not self.rfc or not path.startswith("/"):
            return path + query
        if (
            _SUSPECT.search(path) is None and "/." not in path
            and not (self.merge and "//" in path)
        ):  # only the query (or a fragment) looked suspect
            return path + query
        if self.decode_slashes:
            path = _ESCAPED_SLASH.sub(_unescape_slash, path)
        canonical = canonical_path(path)
        if canonical is None:
            return None
        if self.merge:
            canonical = _SLASHES.sub("/", canonical)
        return canonical + query


def _unescape_slash(m: re.Match[str]) -> str:
    return "/" if m.group(0)[1] == "2" else "\\"


def canonical_path(path: str) -> str | None:
    """RFC 3986 normalization of an absolute path, as Chromium's canonicalizer does it
    (see module doc); None for an escaped NUL."""
    out: list[str] = []
    i, n = 0, len(path)
    while i < n:
        c = path[i]
        if c == "%" and i + 2 < n and path[i + 1] in _HEXDIGITS and path[i + 2] in _HEXDIGITS:
            value = int(path[i + 1 : i + 3], 16)
            if value == 0:
                return None
            ch = chr(value)
            out.append(ch if ch in _UNRESERVED else path[i : i + 3])
            i += 3
            continue
        if c == "\\":
            c = "/"
        out.append(_ESCAPE.get(c, c))
        i += 1
    return _remove_dot_segments("".join(out))


def _remove_dot_segments(path: str) -> str:
    """`.` and `..` segments resolved (RFC 3986 5.2.4); `..` above the root stays at `/`."""
    segments = path.split("/")[1:]  # path starts with "/"
    stack: list[str] = []
    last = len(segments) - 1
    for i, seg in enumerate(segments):
        if seg == ".":
            if i == last:
                stack.append("")
        elif seg == "..":
            if stack:
                stack.pop()
            if i == last:
                stack.append("")
        else:
            stack.append(seg)
    return "/" + "/".join(stack)
