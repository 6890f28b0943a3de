"""Running h2spec (pinned in tests/tools/build.sh) and judging its JUnit report, for the
tests that point it at a live listener (tests/proxy/http2/test_h2spec.py, tests/e2e)."""

from __future__ import annotations

import html
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.tools.gotools import tool

# Every case h2spec v2.2.1 has with -S: 1 generic/1 ... hpack/6.3; pinned so that a run cut
# short (h2spec crashed, a section not found) cannot pass by having fewer cases to fail.
CASES = 146


_INNER = re.compile(r"<(failure|error|skipped)>(.*?)</\1>", re.S)


def _escaped(xml: str) -> str:
    """h2spec writes a failure's text as raw inner XML (reporter/junit_report.go:
    `xml:",innerxml"`): a message with `<`, `&` or a control character (a PING frame's
    opaque data `h2spec\\x00\\x00`) made the whole report unreadable and hid which case
    failed."""
    return _INNER.sub(lambda m: f"<{m[1]}>{_text(m[2])}</{m[1]}>", xml)


def _text(raw: str) -> str:
    """Raw text as XML character data: markup escaped, characters XML 1.0 forbids (the
    NULs of a PING's opaque data h2spec prints) as \\xNN."""
    text = html.escape(html.unescape(raw), quote=False)
    return _FORBIDDEN.sub(lambda m: f"\\x{ord(m[0]):02x}", text)


_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def parse_report(xml: str) -> dict[str, str | None]:
    """h2spec's JUnit report as {case id: None when it passed, else what went wrong}.

    A case id is h2spec's own (`http2/6.5.3/1`, as `h2spec http2/6.5.3/1` runs it): the suite's
    package plus the case's 1-based position in it. Skipped cases count as not passed.
    """
    out: dict[str, str | None] = {}
    for suite in ET.fromstring(_escaped(xml)).iter("testsuite"):
        for i, case in enumerate(suite.iter("testcase"), start=1):
            cid = f"{suite.get('package')}/{i}"
            bad = [el for el in case if el.tag in ("failure", "error", "skipped")]
            out[cid] = (None if not bad else
                        f"{case.get('classname')}: {bad[0].tag}: {(bad[0].text or '').strip()}")
    return out


def run_h2spec(address: tuple[str, int], tmp: Path, *, tls: bool) -> dict[str, str | None]:
    report = tmp / ("h2spec-tls.xml" if tls else "h2spec.xml")
    host, port = address
    args = [tool("h2spec"), "-S", "-h", host, "-p", str(port), "-o", "10", "-j", str(report)]
    if tls:
        args += ["-t", "-k"]
    run = subprocess.run(args, capture_output=True, text=True, timeout=900)
    assert report.exists(), f"h2spec wrote no report:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return parse_report(report.read_text())


def check(results: dict[str, str | None], accepted: dict[str, str]) -> None:
    failed = {cid: why for cid, why in results.items() if why is not None}
    unlisted = {cid: why for cid, why in failed.items() if cid not in accepted}
    now_passing = sorted(cid for cid in accepted if results.get(cid, "missing") is None)
    unknown = sorted(cid for cid in accepted if cid not in results)
    assert len(results) == CASES, f"h2spec ran {len(results)} cases, expected {CASES}"
    assert not unlisted, "h2spec cases failed:\n" + "\n".join(f"{k}: {v}" for k, v in
                                                             sorted(unlisted.items()))
    assert not now_passing, f"listed as accepted deviations but now pass (drop them): {now_passing}"
    assert not unknown, f"accepted deviations name cases h2spec does not have: {unknown}"
