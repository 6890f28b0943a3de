"""The per-kind support table of docs/validating.md, generated from the code.

For every kind in `kinds.py`: implemented, or accepted with a warning (and the warning's
words). For implemented kinds, every field of the typed model is walked, and a field
counts as *enforced* when the code that acts on manifests (control plane, proxy, rollout
controller) reads its upstream name; one that nothing reads is *accepted, not enforced*:
validated, then ignored. `REFUSED` names the fields upstream has that Tollway refuses
(`unsupported.UPSTREAM_ONLY` those the models do not even have).
So the table changes when the code does, and `tests/config/test_support_doc.py` fails
until the doc is regenerated:

    python -m tollway.config.support --write docs/validating.md
"""

from __future__ import annotations

import argparse
import ast
import sys
import types
import typing
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any, Union

from pydantic import BaseModel

from tollway.config.kinds import ALL_KINDS, KindSpec
from tollway.config.unsupported import UPSTREAM_ONLY

PACKAGE = Path(__file__).resolve().parent.parent
ACTORS = ("control", "proxy", "rollout", "snapshot")  # where manifests are acted on
START = "<!-- support-table:start (generated: python -m tollway.config.support --write " \
        "docs/validating.md) -->"
END = "<!-- support-table:end -->"

# Fields upstream defines that Tollway refuses (the model's validator says why).
REFUSED: dict[str, dict[str, str]] = {
    "VirtualService": {
        "http[].fault.delay.exponentialDelay": "Istio itself refuses it",
        "http[].fault.abort.http2Error": "Istio itself refuses it",
    },
}
# Fields read under another spelling than their upstream name (or only by validation,
# which is what they are for), so the string scan cannot see them.
ENFORCED_ELSEWHERE: dict[str, frozenset[str]] = {
    "Deployment": frozenset({"selector", "selector.matchLabels"}),
}


@cache
def read_names() -> frozenset[str]:
    """Every string literal in the modules that act on manifests."""
    found: set[str] = set()
    for part in ACTORS:
        for path in sorted((PACKAGE / part).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            found.update(n.value for n in ast.walk(tree)
                         if isinstance(n, ast.Constant) and isinstance(n.value, str))
    return frozenset(found)


def _models(tp: Any) -> list[tuple[type[BaseModel], bool]]:
    """(model, is_list) behind an annotation (through Optional, Annotated, list, dict)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _models(typing.get_args(tp)[0])
    if origin in (Union, types.UnionType):
        return [m for a in typing.get_args(tp) for m in _models(a)]
    if origin is list:
        return [(m, True) for m, _ in _models(typing.get_args(tp)[0])]
    if origin is dict:
        return [(m, True) for m, _ in _models(typing.get_args(tp)[1])]
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [(tp, False)]
    return []


def fields(model: type[BaseModel], prefix: str = "",
           seen: tuple[type[BaseModel], ...] = ()) -> Iterator[tuple[str, str]]:
    """(path, upstream name) of every field, nested models included (cycles cut)."""
    for name, info in model.model_fields.items():
        alias = info.alias or name
        path = f"{prefix}{alias}"
        yield path, alias
        for sub, many in _models(info.annotation):
            if sub in seen or sub is model:
                continue
            yield from fields(sub, f"{path}{'[]' if many else ''}.", (*seen, model))


def _parent(path: str) -> str:
    return path.rsplit(".", 1)[0].removesuffix("[]") if "." in path else ""


def field_rows(spec: KindSpec) -> list[tuple[str, str]]:
    """(path, status) for the fields that are not simply enforced; a block of which no
    field is read shows once, as `block.*`."""
    refused = REFUSED.get(spec.kind, {})
    elsewhere = ENFORCED_ELSEWHERE.get(spec.kind, frozenset())
    names = read_names()
    status: dict[str, str] = {}
    for path, alias in fields(spec.model):
        if path in refused:
            status[path] = f"refused ({refused[path]})"
        elif alias in names or path in elsewhere:
            status[path] = "enforced"
        else:
            status[path] = "accepted, not enforced"
    unread = "accepted, not enforced"
    children: dict[str, list[str]] = {}
    for path in status:
        children.setdefault(_parent(path), []).append(path)

    def whole(path: str) -> bool:
        return status[path] == unread and all(whole(c) for c in children.get(path, []))

    rows: list[tuple[str, str]] = []
    for path, st in status.items():
        if st == "enforced" or (_parent(path) and whole(_parent(path))):
            continue
        if children.get(path) and whole(path):
            rows.append((f"{path}.*", f"{unread} (the whole block)"))
        else:
            rows.append((path, st))
    # upstream fields the model does not have, refused with a reason wherever they nest
    for field, why in UPSTREAM_ONLY.get(spec.model.__name__, {}).items():
        rows.append((f"*.{field}", f"refused ({why})"))
    return sorted(rows)


def _versions(spec: KindSpec) -> str:
    return ", ".join(f"`{v}`" for v in spec.api_versions)


def render() -> str:
    out = [START, "", "### Kinds", "",
           "| kind | apiVersion | support |", "|---|---|---|"]
    implemented = [s for s in ALL_KINDS if s.ignored is None]
    accepted = [s for s in ALL_KINDS if s.ignored is not None]
    for s in implemented:
        out.append(f"| {s.kind} | {_versions(s)} | enforced (fields: see below) |")
    for s in accepted:
        reason = s.ignored or ""
        out.append(f"| {s.kind} | {_versions(s)} | accepted with a warning: {reason} |")
    out += ["", "Any other kind is refused (`unknown kind`), and so is a known kind under "
            "an apiVersion that does not serve it.", "",
            "### Fields of the enforced kinds", "",
            "Every field below is validated (types, values, Istio's own rules). Fields not "
            "listed are enforced: the control plane, the proxy or the rollout controller "
            "acts on them. *Accepted, not enforced* fields are validated and then ignored "
            "(nothing in Tollway reads them). Unknown fields are refused.", ""]
    for s in implemented:
        rows = field_rows(s)
        if not rows:
            out += [f"**{s.kind}**: every field enforced.", ""]
            continue
        out += [f"**{s.kind}**", "", "| field | support |", "|---|---|"]
        out += [f"| `{path}` | {status} |" for path, status in rows]
        out.append("")
    out.append(END)
    return "\n".join(out)


def splice(doc: str, table: str) -> str:
    """`doc` with the generated section replaced (or appended when it has none)."""
    if START in doc and END in doc:
        head = doc[:doc.index(START)]
        tail = doc[doc.index(END) + len(END):]
        return head + table + tail
    return doc.rstrip("\n") + "\n\n## What each kind supports\n\n" + table + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--write", metavar="DOC", help="rewrite the table inside DOC")
    args = parser.parse_args(argv)
    if args.write:
        path = Path(args.write)
        path.write_text(splice(path.read_text(encoding="utf-8"), render()), encoding="utf-8")
        return 0
    sys.stdout.write(render() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
