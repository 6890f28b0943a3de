"""The README's setup in a fresh clone with the system's PATH only.

A warm developer machine hides a missing install step: a tool found on someone's PATH, a
file never committed. This clones the committed HEAD into a temp folder and runs
`make test` there under `env -i` (HOME, PATH=/usr/local/bin:/usr/bin:/bin), with a reduced
pytest selection so it stays minutes, not the whole suite: the venv is created from
scratch, then ruff, mypy, lint-imports and pytest run exactly as the README's command runs
them. `make demo` in a real terminal is covered by tests/cli/test_demo_pty.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MINIMAL_PATH = "/usr/local/bin:/usr/bin:/bin"

pytestmark = pytest.mark.slow


def _clone(tmp_path: Path) -> Path:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing committed to clone")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    return clone


@pytest.mark.timeout(1500)
def test_make_test_in_a_fresh_clone_with_the_system_path_only(tmp_path: Path) -> None:
    for tool in ("make", "git", "python3"):
        assert shutil.which(tool, path=MINIMAL_PATH), f"{tool} is not on the system PATH"
    clone = _clone(tmp_path)
    env = {"HOME": str(Path.home()), "PATH": MINIMAL_PATH, "LANG": "C.UTF-8"}
    proc = subprocess.run(
        ["make", "test", "TESTS=tests/test_architecture.py"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=1400)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert (clone / ".venv" / "bin" / "lint-imports").exists()
    assert " passed" in out, out[-2000:]
