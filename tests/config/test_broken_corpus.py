"""The broken-manifest corpus: each file yields its intended finding, at the right line.

Every file in broken/ starts with `# expect: [analyze] SEVERITY PATH | FRAGMENT @ line N`:
the finding it must produce (PATH `-` for findings about the file as a whole). Files
marked `analyze` are valid one by one and wrong only as a set.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tollway.config.analyze import analyze
from tollway.config.findings import Finding
from tollway.config.load import load_paths

BROKEN = Path(__file__).resolve().parent / "broken"
CASES = sorted(BROKEN.glob("*.yaml"))
_EXPECT = re.compile(
    r"^# expect: (?P<analyze>analyze )?(?P<sev>error|warning|info) (?P<path>\S+) \| "
    r"(?P<frag>.+) @ line (?P<line>\d+)$"
)


def _expectation(path: Path) -> re.Match[str]:
    first = path.read_text().splitlines()[0]
    m = _EXPECT.match(first)
    assert m, f"{path.name}: bad expectation header {first!r}"
    return m


def _findings(path: Path, with_analyze: bool) -> list[Finding]:
    result = load_paths([path])
    found = list(result.findings)
    if with_analyze:
        assert result.ok, [f.render() for f in found]
        found += analyze(result.resources)
    return found


def test_corpus_has_at_least_sixty_cases() -> None:
    assert len(CASES) >= 60


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_broken_manifest_yields_intended_finding(path: Path) -> None:
    m = _expectation(path)
    found = _findings(path, bool(m["analyze"]))
    want = (m["sev"], m["path"] if m["path"] != "-" else "", int(m["line"]))
    hits = [f for f in found if (f.severity.value, f.path, f.line) == want
            and m["frag"] in f.message]
    assert hits, f"expected {want} ~ {m['frag']!r}; got:\n" + "\n".join(
        f.render() for f in found)
    assert all(f.file == str(path) for f in found)
