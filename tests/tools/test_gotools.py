"""The pinned Go tools are built as build.sh pins them: the stamp cannot drift from a binary."""

from __future__ import annotations

import re
import subprocess

from tests.tools.gotools import BUILD_SCRIPT, tool


def _pinned(var: str) -> str:
    m = re.search(rf"^{var}=(\S+)", BUILD_SCRIPT.read_text(), re.M)
    assert m, f"{var} is not set in {BUILD_SCRIPT}"
    return m.group(1)


def test_h2spec_is_the_pinned_release() -> None:
    out = subprocess.run([tool("h2spec"), "--version"], capture_output=True, text=True, timeout=30)
    assert out.stdout.split()[1] == _pinned("H2SPEC_VERSION").split("+")[0], out.stdout


def test_grpcurl_is_the_pinned_release() -> None:
    out = subprocess.run([tool("grpcurl"), "-version"], capture_output=True, text=True, timeout=30)
    assert (out.stdout + out.stderr).split() == ["grpcurl", _pinned("GRPCURL_VERSION")]
