"""A safe evaluator for the subset of Argo's condition language users write.

Argo evaluates `successCondition` / `failureCondition` with expr-lang; manifests use a
small part of it: `result`, indexing (`result[0]`), field access (`result.status`),
comparisons, `and`/`or`/`not` (and `&&`, `||`, `!`), arithmetic, literals, and the
functions `len`, `isNaN`, `isInf`, `default`, `asFloat`, `asInt`, `abs`, `min`, `max`.
We tokenize and parse into a tree and walk it — never `eval` — so a template cannot run
code, and anything outside the subset is refused with the position and what is allowed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class ExprError(ValueError):
    """The condition cannot be parsed or evaluated; the message says where and why."""


_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+(?:[eE][+-]?\d+)?)"
    r"|(?P<str>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>==|!=|<=|>=|&&|\|\||\*\*|[-+*/%<>!()\[\],.]))"
)

_KEYWORDS = {"and": "&&", "or": "||", "not": "!"}


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # num, str, name, op, end
    text: str
    pos: int


def tokenize(source: str) -> list[Token]:
    """Split a condition into tokens; an unknown character is an error naming its position."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(source):
        if source[pos:].strip() == "":
            break
        m = _TOKEN.match(source, pos)
        if m is None or m.end() == pos:
            raise ExprError(f"unexpected character {source[pos:].strip()[:1]!r} at {pos}")
        kind = m.lastgroup or "op"
        text = m.group(kind)
        start = m.start(kind)
        if kind == "name" and text in _KEYWORDS:
            kind, text = "op", _KEYWORDS[text]
        tokens.append(Token(kind, text, start))
        pos = m.end()
    tokens.append(Token("end", "", len(source)))
    return tokens


# The tree: tuples keep it small and hashable. ("lit", v) ("var", name) ("index", a, b)
# ("attr", a, name) ("call", name, args) ("unary", op, a) ("bin", op, a, b)
Node = tuple[Any, ...]

_BINARY_PRECEDENCE = {
    "||": 1, "&&": 2,
    "==": 3, "!=": 3, "<": 4, "<=": 4, ">": 4, ">=": 4, "in": 4,
    "+": 5, "-": 5, "*": 6, "/": 6, "%": 6, "**": 7,
}


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = tokenize(source)
        self.i = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expect(self, text: str) -> None:
        tok = self.take()
        if tok.text != text or tok.kind not in ("op",):
            raise ExprError(f"expected {text!r} at {tok.pos}, found {tok.text or 'end'!r}")

    def parse(self) -> Node:
        node = self.expression(0)
        tok = self.peek()
        if tok.kind != "end":
            raise ExprError(f"unexpected {tok.text!r} at {tok.pos}")
        return node

    def expression(self, min_prec: int) -> Node:
        left = self.unary()
        while True:
            tok = self.peek()
            op = tok.text if tok.kind in ("op", "name") else ""
            prec = _BINARY_PRECEDENCE.get(op, 0)
            if prec == 0 or prec < min_prec:
                return left
            self.take()
            right = self.expression(prec + (0 if op == "**" else 1))
            left = ("bin", op, left, right)

    def unary(self) -> Node:
        tok = self.peek()
        if tok.kind == "op" and tok.text in ("!", "-", "+"):
            self.take()
            return ("unary", tok.text, self.unary())
        return self.postfix(self.primary())

    def postfix(self, node: Node) -> Node:
        while True:
            tok = self.peek()
            if tok.kind == "op" and tok.text == "[":
                self.take()
                node = ("index", node, self.expression(0))
                self.expect("]")
            elif tok.kind == "op" and tok.text == ".":
                self.take()
                name = self.take()
                if name.kind != "name":
                    raise ExprError(f"expected a field name after '.' at {name.pos}")
                node = ("attr", node, name.text)
            else:
                return node

    def primary(self) -> Node:
        tok = self.take()
        if tok.kind == "num":
            text = tok.text
            return ("lit", float(text) if any(c in text for c in ".eE") else int(text))
        if tok.kind == "str":
            try:
                return ("lit", tok.text[1:-1].encode().decode("unicode_escape"))
            except UnicodeDecodeError as exc:
                raise ExprError(f"bad escape in string at {tok.pos}") from exc
        if tok.kind == "name":
            return self.name(tok)
        if tok.kind == "op" and tok.text == "(":
            node = self.expression(0)
            self.expect(")")
            return node
        if tok.kind == "op" and tok.text == "[":
            items: list[Node] = []
            while self.peek().text != "]":
                items.append(self.expression(0))
                if self.peek().text == ",":
                    self.take()
                elif self.peek().text != "]":
                    raise ExprError(f"expected ',' or ']' at {self.peek().pos}")
            self.take()
            return ("list", tuple(items))
        raise ExprError(f"unexpected {tok.text or 'end of condition'!r} at {tok.pos}")

    def name(self, tok: Token) -> Node:
        if tok.text in ("true", "false"):
            return ("lit", tok.text == "true")
        if tok.text in ("nil", "null"):
            return ("lit", None)
        if self.peek().text == "(" and self.peek().kind == "op":
            if tok.text not in FUNCTIONS:
                allowed = ", ".join(sorted(FUNCTIONS))
                raise ExprError(f"function {tok.text!r} at {tok.pos} is not supported ({allowed})")
            self.take()
            args: list[Node] = []
            while self.peek().text != ")":
                args.append(self.expression(0))
                if self.peek().text == ",":
                    self.take()
                elif self.peek().text != ")":
                    raise ExprError(f"expected ',' or ')' at {self.peek().pos}")
            self.take()
            return ("call", tok.text, tuple(args))
        return ("var", tok.text)


def _num(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ExprError(f"{what} needs a number, got {_describe(value)}")
    return value


def _describe(value: Any) -> str:
    if isinstance(value, list | tuple):
        return f"a list of {len(value)}"
    return f"{type(value).__name__} {value!r}"


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise ExprError(f"asFloat cannot convert {_describe(value)}") from exc


def _as_int(value: Any) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError) as exc:
        raise ExprError(f"asInt cannot convert {_describe(value)}") from exc


def _len(value: Any) -> int:
    if isinstance(value, str | list | tuple | dict):
        return len(value)
    raise ExprError(f"len needs a list, map or string, got {_describe(value)}")


def _default(value: Any, fallback: Any) -> Any:
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return fallback
    return value


FUNCTIONS: Mapping[str, Callable[..., Any]] = {
    "len": _len,
    "isNaN": lambda v: isinstance(v, float) and math.isnan(v),
    "isInf": lambda v, sign=0: isinstance(v, float)
    and math.isinf(v)
    and (sign == 0 or (v > 0) == (sign > 0)),
    "default": _default,
    "asFloat": _as_float,
    "asInt": _as_int,
    "float": _as_float,
    "int": _as_int,
    "abs": lambda v: abs(_num(v, "abs")),
    "min": lambda *vs: min(_num(v, "min") for v in vs),
    "max": lambda *vs: max(_num(v, "max") for v in vs),
}


def _index(container: Any, key: Any) -> Any:
    if isinstance(container, list | tuple):
        if isinstance(key, bool) or not isinstance(key, int):
            raise ExprError(f"a list index must be an integer, got {_describe(key)}")
        if not -len(container) <= key < len(container):
            raise ExprError(f"index {key} out of range: the result has {len(container)} values")
        return container[key]
    if isinstance(container, Mapping):
        if key not in container:
            raise ExprError(f"the result has no field {key!r}")
        return container[key]
    raise ExprError(f"cannot index {_describe(container)}")


def _compare(op: str, a: Any, b: Any) -> bool:
    if op == "==":
        return bool(a == b)
    if op == "!=":
        return bool(a != b)
    if isinstance(a, str) and isinstance(b, str):
        pass
    else:
        a, b = _num(a, f"'{op}'"), _num(b, f"'{op}'")
    if op == "<":
        return bool(a < b)
    if op == "<=":
        return bool(a <= b)
    if op == ">":
        return bool(a > b)
    return bool(a >= b)


def _arith(op: str, a: Any, b: Any) -> Any:
    if op == "+" and isinstance(a, str) and isinstance(b, str):
        return a + b
    x, y = _num(a, f"'{op}'"), _num(b, f"'{op}'")
    if op == "+":
        return x + y
    if op == "-":
        return x - y
    if op == "*":
        return x * y
    if op == "**":
        return x**y
    if y == 0:
        if op == "/" and x != 0:
            return math.copysign(math.inf, x)
        return math.nan if op == "/" else _fail("modulo by zero")
    if op == "/":
        return x / y
    return x % y


def _fail(message: str) -> Any:
    raise ExprError(message)


def _truth(value: Any, op: str) -> bool:
    if not isinstance(value, bool):
        raise ExprError(f"'{op}' needs true or false, got {_describe(value)}")
    return value


def _eval(node: Node, env: Mapping[str, Any]) -> Any:
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "var":
        if node[1] not in env:
            raise ExprError(f"unknown name {node[1]!r}; conditions can use {sorted(env)}")
        return env[node[1]]
    if kind == "list":
        return [_eval(n, env) for n in node[1]]
    if kind == "index":
        return _index(_eval(node[1], env), _eval(node[2], env))
    if kind == "attr":
        return _index(_eval(node[1], env), node[2])
    if kind == "call":
        args = [_eval(n, env) for n in node[2]]
        try:
            return FUNCTIONS[node[1]](*args)
        except TypeError as exc:
            raise ExprError(f"{node[1]}() got the wrong number of arguments") from exc
    if kind == "unary":
        value = _eval(node[2], env)
        if node[1] == "!":
            return not _truth(value, "not")
        return -_num(value, "'-'") if node[1] == "-" else _num(value, "'+'")
    return _binary(node, env)


def _binary(node: Node, env: Mapping[str, Any]) -> Any:
    op = node[1]
    if op == "&&":
        return _truth(_eval(node[2], env), "and") and _truth(_eval(node[3], env), "and")
    if op == "||":
        return _truth(_eval(node[2], env), "or") or _truth(_eval(node[3], env), "or")
    a, b = _eval(node[2], env), _eval(node[3], env)
    if op in ("==", "!=", "<", "<=", ">", ">="):
        return _compare(op, a, b)
    if op == "in":
        if isinstance(b, Sequence | Mapping):
            return a in b
        raise ExprError(f"'in' needs a list or map on its right, got {_describe(b)}")
    return _arith(op, a, b)


@dataclass(frozen=True, slots=True)
class Condition:
    """A parsed condition, compiled once per template and evaluated per measurement."""

    source: str
    tree: Node

    def evaluate(self, env: Mapping[str, Any]) -> Any:
        return _eval(self.tree, env)

    def holds(self, result: Any, extra: Mapping[str, Any] | None = None) -> bool:
        """Evaluate with `result` bound; a non-boolean outcome is an error, as in Argo."""
        env = {"result": result, **(extra or {})}
        value = self.evaluate(env)
        if not isinstance(value, bool):
            raise ExprError(f"condition {self.source!r} gave {_describe(value)}, not true/false")
        return value


def compile_condition(source: str) -> Condition:
    """Parse a condition; raise ExprError naming the position of anything unsupported."""
    if not source or not source.strip():
        raise ExprError("empty condition")
    return Condition(source, _Parser(source).parse())


def evaluate(source: str, result: Any, extra: Mapping[str, Any] | None = None) -> bool:
    """Compile and evaluate in one go (convenience for tests and one-off checks)."""
    return compile_condition(source).holds(result, extra)
