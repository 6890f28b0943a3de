"""docs/validating.md's support table is the one the code generates, and says true things."""

from __future__ import annotations

from pathlib import Path

from tollway.config import support
from tollway.config.kinds import ALL_KINDS

DOC = Path(__file__).resolve().parents[2] / "docs" / "validating.md"


def test_the_doc_holds_the_current_table() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert support.splice(text, support.render()) == text, (
        "docs/validating.md is out of date: python -m tollway.config.support "
        "--write docs/validating.md")


def test_every_kind_is_in_the_table_with_its_status() -> None:
    table = support.render()
    for spec in ALL_KINDS:
        versions = ", ".join(f"`{v}`" for v in spec.api_versions)
        row = next(line for line in table.splitlines()
                   if line.startswith(f"| {spec.kind} | {versions}"))
        assert ("accepted with a warning" in row) == (spec.ignored is not None)


def test_refused_fields_exist_in_their_models() -> None:
    by_kind = {s.kind: s for s in ALL_KINDS if s.ignored is None}
    for kind, paths in support.REFUSED.items():
        known = {p for p, _ in support.fields(by_kind[kind].model)}
        assert set(paths) <= known, set(paths) - known


def test_a_field_nothing_reads_is_listed_and_a_read_one_is_not() -> None:
    vs = next(s for s in ALL_KINDS if s.kind == "VirtualService")
    rows = dict(support.field_rows(vs))
    assert "http[].match[].statPrefix" in rows  # validated, never acted on
    assert "http[].route[].weight" not in rows  # the proxy splits by it
    assert rows["http[].fault.delay.exponentialDelay"].startswith("refused")


def test_splice_replaces_only_the_generated_section() -> None:
    doc = f"intro\n{support.START}\nold\n{support.END}\noutro\n"
    assert support.splice(doc, "NEW") == "intro\nNEW\noutro\n"
