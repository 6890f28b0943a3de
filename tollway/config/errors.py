"""pydantic errors -> (field path, one-sentence message), with "did you mean" for typos.

pydantic reports locations as tuples that may contain union-branch tags; we strip those,
word the message for someone editing YAML (not Python), and for an unknown field we walk
the model's schema along the path to find the closest real field name.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Any, Union

from pydantic import BaseModel, ValidationError

from tollway.config.source import PathKey
from tollway.config.unsupported import upstream_only

_TAG = re.compile(r"^(int|str|float|bool|none|list|dict|.*\[.*\]|[A-Z][A-Za-z0-9]*)$")


def describe(value: Any) -> str:
    """How a YAML author would name this value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"string '{shown}'"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _unwrap(tp: Any) -> list[Any]:
    """The concrete candidates behind Annotated/Optional/Union."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (Union, types.UnionType):
        out: list[Any] = []
        for arg in typing.get_args(tp):
            out.extend(_unwrap(arg))
        return out
    return [tp]


def _step(tp: Any, seg: str | int) -> list[Any]:
    nxt: list[Any] = []
    for cand in _unwrap(tp):
        origin = typing.get_origin(cand)
        if isinstance(cand, type) and issubclass(cand, BaseModel) and isinstance(seg, str):
            for name, info in cand.model_fields.items():
                if (info.alias or name) == seg:
                    nxt.append(info.annotation)
        elif origin in (list, tuple) and isinstance(seg, int):
            nxt.append(typing.get_args(cand)[0])
        elif origin is dict and isinstance(seg, str):
            nxt.append(typing.get_args(cand)[1])
    return nxt


def field_names_at(model: type[BaseModel], path: PathKey) -> list[str]:
    """The field names (aliases) valid at `path` inside `model`."""
    current: list[Any] = [model]
    for seg in path:
        current = [n for c in current for n in _step(c, seg)]
    names: list[str] = []
    for cand in current:
        for c in _unwrap(cand):
            if isinstance(c, type) and issubclass(c, BaseModel):
                names.extend(info.alias or n for n, info in c.model_fields.items())
    return names


def did_you_mean(word: str, options: list[str]) -> str:
    match = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"; did you mean '{match[0]}'?" if match else ""


def _clean(loc: tuple[str | int, ...]) -> PathKey:
    return tuple(s for s in loc if isinstance(s, int) or not _TAG.match(s))


def _message(err: Any, model: type[BaseModel], path: PathKey) -> str:
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    got = describe(value)
    if kind == "missing":
        return f"required field '{path[-1]}' is missing" if path else "required field missing"
    if kind == "extra_forbidden":
        why = upstream_only(model.__name__, str(path[-1]))
        if why is not None:
            return f"'{path[-1]}' is an upstream field Tollway does not implement: {why}"
        options = [o for o in field_names_at(model, path[:-1]) if o != path[-1]]
        return f"unknown field '{path[-1]}'{did_you_mean(str(path[-1]), options)}"
    simple = {
        "int_type": "must be an integer", "int_from_float": "must be a whole number",
        "string_type": "must be a string", "bool_type": "must be true or false",
        "float_type": "must be a number", "list_type": "must be a list",
        "dict_type": "must be a mapping", "model_type": "must be a mapping",
        "model_attributes_type": "must be a mapping", "int_parsing": "must be an integer",
    }
    if kind in simple:
        return f"{simple[kind]}, got {got}"
    if kind in ("literal_error", "enum"):
        expected = str(ctx.get("expected", ""))
        opts = re.findall(r"'([^']*)'", expected)
        hint = did_you_mean(str(value), opts) if isinstance(value, str) else ""
        return f"must be one of {expected}, got {got}{hint}"
    bounds = {
        "greater_than_equal": ("ge", ">="), "less_than_equal": ("le", "<="),
        "greater_than": ("gt", ">"), "less_than": ("lt", "<"),
    }
    if kind in bounds:
        key, op = bounds[kind]
        return f"must be {op} {ctx.get(key)}, got {got}"
    if kind in ("too_short", "too_long"):
        bound = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        word = "at least" if kind == "too_short" else "at most"
        n = len(value) if isinstance(value, list | dict | str) else "?"
        return f"must have {word} {bound} item{'s' if bound != 1 else ''}, got {n}"
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    if kind in ("string_too_short", "string_too_long"):
        word = "at least" if kind == "string_too_short" else "at most"
        bound = ctx.get("min_length" if kind == "string_too_short" else "max_length")
        n = len(value) if isinstance(value, str) else "?"
        return f"must be {word} {bound} characters long, got {n}"
    if kind == "string_pattern_mismatch":
        return f"'{value}' does not match the pattern {ctx.get('pattern')}"
    if kind in ("value_error", "assertion_error"):
        return re.sub(r"^(Value|Assertion) error, ", "", str(err["msg"]))
    return str(err["msg"])


def findings_from_validation(
    exc: ValidationError, model: type[BaseModel]
) -> list[tuple[PathKey, str]]:
    """One (path, message) per distinct location; union alternatives are merged."""
    by_path: dict[PathKey, list[str]] = {}
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        # An unknown key is the user's word, even when it looks like a union tag ("A").
        path = (_clean(loc[:-1]) + loc[-1:]) if err["type"] == "extra_forbidden" else _clean(loc)
        by_path.setdefault(path, []).append(_message(err, model, path))
    out: list[tuple[PathKey, str]] = []
    for path, messages in by_path.items():
        if len(messages) > 1 and all(m.startswith("must be") for m in messages):
            kinds = [m.split(",")[0].removeprefix("must be ") for m in messages]
            tail = messages[0].split(", got ", 1)
            got = f", got {tail[1]}" if len(tail) > 1 else ""
            out.append((path, "must be " + " or ".join(dict.fromkeys(kinds)) + got))
        else:
            out.extend((path, m) for m in dict.fromkeys(messages))
    return out
