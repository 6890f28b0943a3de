"""The CEL subset Tollway evaluates: Telemetry access-log filters and metric tag values [pure].

Istio hands these expressions to Envoy's CEL runtime over Envoy's request attributes
(`response.code >= 400`, `request.headers['x-user']`, `xds.route_name`). Tollway parses
them once, when the config is loaded and again when a snapshot is compiled, into a small
tree the proxy turns into closures; nothing is parsed per request. Parsing lives here,
beside the snapshot types both sides import, so the config layer refuses at validation
exactly what the proxy cannot evaluate (the same reason as `snapshot/conditions.py`).

Supported: literals (strings in '' or "", integers, true/false/null), the attributes in
ATTRIBUTES (maps indexed with ['key'] or .key), `!`, `&&`, `||`, `== != < <= > >=`,
`in` over a list literal, `cond ? a : b`, `has(request.headers.x)` / `has(m['x'])`, the
functions `string() int() size()` and the methods `startsWith endsWith contains matches`.
Anything else (arithmetic, macros such as `.exists()`, map literals, other attributes) is
refused with one sentence naming what is not supported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import re2

# attribute -> type: "int", "string", "bool", "map" (string -> string)
ATTRIBUTES: dict[str, str] = {
    "request.path": "string",
    "request.url_path": "string",
    "request.host": "string",
    "request.scheme": "string",
    "request.method": "string",
    "request.headers": "map",
    "request.referer": "string",
    "request.useragent": "string",
    "request.id": "string",
    "request.protocol": "string",
    "request.size": "int",
    "request.total_size": "int",
    "request.duration": "int",  # milliseconds here (Envoy: a duration)
    "response.code": "int",
    "response.flags": "string",  # Envoy's short flags ("UH", "-"); Envoy itself: a bitmask
    "response.size": "int",
    "response.total_size": "int",
    "response.grpc_status": "int",
    "source.address": "string",
    "source.port": "int",
    "destination.address": "string",
    "destination.port": "int",
    "upstream.address": "string",
    "upstream.port": "int",
    "connection.mtls": "bool",
    "connection.requested_server_name": "string",
    "xds.cluster_name": "string",
    "xds.route_name": "string",
    "node.id": "string",
}
FUNCTIONS = ("has", "string", "int", "size")
METHODS = ("startsWith", "endsWith", "contains", "matches")
COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")

# The tree: tuples, first item the node kind.
#   ("lit", value) ("attr", name) ("index", attr_node, key) ("not", e) ("and", a, b)
#   ("or", a, b) ("cmp", op, a, b) ("in", e, (items...)) ("cond", c, a, b)
#   ("has", attr_node) ("call", fn, arg) ("method", name, target, arg)
Node = tuple[Any, ...]
Kind = Literal["bool", "any"]


class CelError(ValueError):
    """An expression outside the subset; the message is one sentence for the user."""


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # str, int, ident, op, end
    text: str
    pos: int


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<num>\d+u?)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op>&&|\|\||==|!=|<=|>=|[<>!?:.,()\[\]{}+\-*/%])
    )""",
    re.VERBOSE,
)
_UNSUPPORTED_OPS = {"+": "arithmetic (+)", "-": "arithmetic (-)", "*": "arithmetic (*)",
                    "/": "arithmetic (/)", "%": "arithmetic (%)", "{": "map literals"}


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m[1], m[1]), body)


def _tokens(src: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(src):
        if src[pos:].strip() == "":
            break
        m = _TOKEN.match(src, pos)
        if m is None or m.end() == pos:
            bad = src[pos:].lstrip()[:1]
            raise CelError(f"`{src}` has `{bad}` at character {pos + 1}, which is not CEL "
                           "Tollway reads")
        kind = m.lastgroup or "op"
        out.append(_Tok(kind, m[kind], m.start(kind)))
        pos = m.end()
    out.append(_Tok("end", "", len(src)))
    return out


class _Parser:
    def __init__(self, src: str) -> None:
        self.src = src
        self.toks = _tokens(src)
        self.i = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self, text: str | None = None) -> _Tok:
        tok = self.toks[self.i]
        if text is not None and tok.text != text:
            found = tok.text or "the end"
            raise CelError(f"`{self.src}` expects `{text}` at character {tok.pos + 1}, "
                           f"found {found}")
        self.i += 1
        return tok

    def at(self, *texts: str) -> bool:
        tok = self.peek()
        return tok.kind in ("op", "ident") and tok.text in texts

    def parse(self) -> Node:
        node = self.cond()
        if self.peek().kind != "end":
            tok = self.peek()
            what = _UNSUPPORTED_OPS.get(tok.text)
            if what:
                raise CelError(f"`{self.src}` uses {what}, which Tollway's CEL subset does "
                               "not support")
            raise CelError(f"`{self.src}` has `{tok.text}` at character {tok.pos + 1} "
                           "where the expression should end")
        return node

    def cond(self) -> Node:
        c = self.or_()
        if self.at("?"):
            self.take("?")
            a = self.cond()
            self.take(":")
            b = self.cond()
            return ("cond", c, a, b)
        return c

    def or_(self) -> Node:
        node = self.and_()
        while self.at("||"):
            self.take()
            node = ("or", node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.rel()
        while self.at("&&"):
            self.take()
            node = ("and", node, self.rel())
        return node

    def rel(self) -> Node:
        node = self.unary()
        if self.at(*COMPARISONS):
            op = self.take().text
            return ("cmp", op, node, self.unary())
        if self.at("in"):
            self.take()
            if not self.at("["):
                raise CelError(f"`{self.src}`: `in` is supported over a list literal "
                               "(`x in ['a', 'b']`) only")
            return ("in", node, self.list_())
        return node

    def unary(self) -> Node:
        if self.at("!"):
            self.take()
            return ("not", self.unary())
        if self.at("-") and self.toks[self.i + 1].kind == "num":
            self.take()
            lit = self.member()
            return ("lit", -int(lit[1]))
        return self.member()

    def list_(self) -> tuple[Any, ...]:
        self.take("[")
        items: list[Any] = []
        while not self.at("]"):
            item = self.cond()
            if item[0] != "lit":
                raise CelError(f"`{self.src}`: list items must be literals")
            items.append(item[1])
            if not self.at("]"):
                self.take(",")
        self.take("]")
        return tuple(items)

    def member(self) -> Node:
        node = self.primary()
        while self.at(".", "["):
            if self.take().text == "[":
                key = self.cond()
                self.take("]")
                node = self._index(node, key)
                continue
            name = self.take()
            if name.kind != "ident":
                raise CelError(f"`{self.src}` expects a name after `.` at character "
                               f"{name.pos + 1}")
            if self.at("("):
                node = self._method(name.text, node)
            elif node[0] == "path":
                node = ("path", f"{node[1]}.{name.text}")
            elif node[0] == "attr" and ATTRIBUTES.get(node[1]) == "map":
                node = ("index", node, name.text)
            else:
                raise CelError(f"`{self.src}`: `.{name.text}` cannot follow this value")
            node = self._resolve(node)
        return self._resolve(node, final=True)

    def _index(self, node: Node, key: Node) -> Node:
        node = self._resolve(node, final=True)
        if node[0] != "attr" or ATTRIBUTES.get(node[1]) != "map":
            raise CelError(f"`{self.src}`: only maps such as request.headers take ['key']")
        if key[0] != "lit" or not isinstance(key[1], str):
            raise CelError(f"`{self.src}`: a map key must be a string literal")
        return ("index", node, key[1].lower() if node[1].endswith("headers") else key[1])

    def _method(self, name: str, target: Node) -> Node:
        if name not in METHODS:
            raise CelError(f"`{self.src}` calls `{name}()`, which Tollway's CEL subset does "
                           f"not support (methods: {', '.join(METHODS)})")
        self.take("(")
        arg = self.cond()
        self.take(")")
        if name == "matches":
            if arg[0] != "lit" or not isinstance(arg[1], str):
                raise CelError(f"`{self.src}`: matches() takes a string literal regex")
            try:
                re2.compile(arg[1])
            except Exception:
                raise CelError(f"`{self.src}`: {arg[1]!r} is not an RE2 regex") from None
        return ("method", name, self._resolve(target, final=True), arg)

    def _resolve(self, node: Node, final: bool = False) -> Node:
        """A dotted path becomes an attribute as soon as it names one."""
        if node[0] != "path":
            return node
        if node[1] in ATTRIBUTES:
            return ("attr", node[1])
        if final:
            known = ", ".join(sorted(ATTRIBUTES))
            raise CelError(f"`{self.src}` reads `{node[1]}`, which is not an attribute "
                           f"Tollway evaluates (known: {known})")
        return node

    def primary(self) -> Node:
        tok = self.take()
        if tok.kind == "str":
            return ("lit", _unquote(tok.text))
        if tok.kind == "num":
            return ("lit", int(tok.text.rstrip("u")))
        if tok.kind == "ident":
            if tok.text in ("true", "false"):
                return ("lit", tok.text == "true")
            if tok.text == "null":
                return ("lit", None)
            if self.at("("):
                return self._function(tok.text)
            return ("path", tok.text)
        if tok.text == "(":
            node = self.cond()
            self.take(")")
            return node
        if tok.text == "[":
            self.i -= 1
            return ("lit", self.list_())
        what = _UNSUPPORTED_OPS.get(tok.text)
        if what:
            raise CelError(f"`{self.src}` uses {what}, which Tollway's CEL subset does not "
                           "support")
        found = tok.text or "the end"
        raise CelError(f"`{self.src}` has {found} at character {tok.pos + 1} where a value "
                       "should be")

    def _function(self, name: str) -> Node:
        if name not in FUNCTIONS:
            raise CelError(f"`{self.src}` calls `{name}()`, which Tollway's CEL subset does "
                           f"not support (functions: {', '.join(FUNCTIONS)})")
        self.take("(")
        if name == "has":
            arg = self.member()
            self.take(")")
            if arg[0] not in ("index", "attr"):
                raise CelError(f"`{self.src}`: has() takes an attribute or a map entry")
            return ("has", arg)
        arg = self.cond()
        self.take(")")
        return ("call", name, arg)


def parse(src: str) -> Node:
    """The tree of `src`, or CelError naming what is outside the subset."""
    if not src.strip():
        raise CelError("the expression is empty")
    if len(src) > 4096:
        raise CelError("the expression is longer than 4096 characters")
    return _Parser(src).parse()


def check(src: str) -> str | None:
    """None when `src` is in the subset, else the one sentence saying why not."""
    try:
        parse(src)
    except CelError as exc:
        return str(exc)
    except RecursionError:
        return f"`{src[:40]}...` nests too deeply"
    return None


def attributes(node: Node) -> set[str]:
    """Every attribute the tree reads (for the proxy: which facts to keep)."""
    out: set[str] = set()
    stack: list[Any] = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, tuple) and n:
            if n[0] == "attr":
                out.add(n[1])
            elif n[0] != "lit":
                stack.extend(n[1:])
    return out
