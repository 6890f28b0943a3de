"""Manifests taken (trimmed) from upstream repositories: Tollway agrees with upstream.

`tests/data/upstream/accepted/` holds manifests upstream accepts that Tollway once
refused; `refused/` holds manifests upstream refuses that Tollway once accepted, and
upstream-valid kinds/fields Tollway deliberately does not model, each with the one
error it must give (`# expect: analyze ...`: an error of `tollway analyze`, the set
being wrong, not one document). Every file names its upstream source on its first line.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tollway.config.analyze import analyze
from tollway.config.load import load_paths

DATA = Path(__file__).resolve().parent.parent / "data" / "upstream"
ACCEPTED = sorted((DATA / "accepted").glob("*.yaml"))
REFUSED = sorted((DATA / "refused").glob("*.yaml"))
_EXPECT = re.compile(r"^# expect: (?P<analyze>analyze )?(?P<path>\S+) \| (?P<frag>.+)$")


def test_every_file_names_its_upstream_source() -> None:
    assert len(ACCEPTED) >= 5 and len(REFUSED) >= 15
    for path in (*ACCEPTED, *REFUSED):
        assert path.read_text().startswith("# upstream: "), path.name


@pytest.mark.parametrize("path", ACCEPTED, ids=lambda p: p.stem)
def test_upstream_valid_manifest_is_accepted(path: Path) -> None:
    result = load_paths([path])
    assert result.ok, [f.render() for f in result.errors]
    docs = path.read_text().count("\nkind: ")
    warned = [f for f in result.findings if f.message.startswith("accepted; ")]
    assert len(result.resources) + len(warned) == docs  # each read or accepted-with-warning


@pytest.mark.parametrize("path", REFUSED, ids=lambda p: p.stem)
def test_upstream_refused_manifest_is_refused_at_its_field(path: Path) -> None:
    m = _EXPECT.match(path.read_text().splitlines()[1])
    assert m, f"{path.name}: second line must be '# expect: PATH | FRAGMENT'"
    result = load_paths([path])
    errors = list(result.errors)
    if m["analyze"]:  # valid one by one, wrong as a set (`tollway analyze`)
        assert not errors, [f.render() for f in errors]
        errors = [f for f in analyze(result.resources) if f.is_error]
    else:
        assert not result.resources  # nothing half-applied
    hits = [f for f in errors if f.path == m["path"] and m["frag"] in f.message]
    assert hits, [f.render() for f in (*result.findings, *errors)]
    for f in errors:  # one sentence: no traceback, no line breaks
        assert "\n" not in f.message and "Traceback" not in f.message
