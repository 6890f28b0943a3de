"""Layers are enforced, not hoped for: import contracts and the "no IO in pure modules" rule."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "tollway"

# Modules and packages that must stay sans-IO (ARCHITECTURE.md §11, marked [pure]).
PURE = (
    "kit",
    "snapshot",
    "proxy/core",
    "proxy/http1",
    "proxy/h2/headers.py",
    "proxy/h2/guard.py",
    "proxy/h2/framing.py",
    "proxy/h2/hpack_fast.py",
    "proxy/h2/wire.py",
    "proxy/h2/conn.py",
    "control/translate",
    "control/world.py",
    "control/registry.py",
    "control/protocol.py",
    "control/scope.py",
    "control/push.py",
    "control/local/plan.py",
    "rollout/model.py",
    "rollout/plans.py",
    "rollout/machine.py",
    "rollout/traffic.py",
    "rollout/bluegreen.py",
    "rollout/flagger.py",
    "rollout/replicas.py",
    "dashboard/graph.py",
    "dashboard/rollouts.py",
    "rollout/analysis/runs.py",
    "rollout/analysis/expr.py",
    "rollout/analysis/judge.py",
    "devnode/lifecycle.py",
    "devnode/probes.py",
    "devnode/podstatus.py",
    "devnode/envvars.py",
    "devnode/ipam.py",
    "devnode/nodeobj.py",
    "devnode/podfiles.py",
    "devnode/volumes.py",
    "capture/rules.py",
    "kube/inject.py",
)
# The real clock has to read time somewhere; it is injected everywhere else.
EXEMPT = {"kit/clock.py"}
IO_MODULES = {
    "asyncio", "socket", "ssl", "subprocess", "httpx", "aiohttp", "selectors", "threading",
    "uvloop", "urllib.request", "http.client",
}


def _pure_files() -> list[Path]:
    files: list[Path] = []
    for entry in PURE:
        path = PKG / entry
        if path.is_dir():
            files.extend(sorted(path.rglob("*.py")))
        elif path.exists():
            files.append(path)
    return [f for f in files if str(f.relative_to(PKG)) not in EXEMPT]


def _io_uses(tree: ast.AST) -> list[str]:
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name in IO_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module in IO_MODULES:
            found.append(node.module)
        elif (
            isinstance(node, ast.Attribute)
            and node.attr == "sleep"
            and isinstance(node.value, ast.Name)
            and node.value.id == "time"
        ):
            found.append("time.sleep")
    return found


def test_pure_modules_exist() -> None:
    assert len(_pure_files()) >= 5


@pytest.mark.parametrize("path", _pure_files(), ids=lambda p: str(p.relative_to(PKG)))
def test_pure_module_does_no_io(path: Path) -> None:
    uses = _io_uses(ast.parse(path.read_text(), filename=str(path)))
    assert not uses, f"{path.relative_to(PKG)} is [pure] but uses {uses}"


def test_import_contracts_hold() -> None:
    # Beside this interpreter, not on PATH: `make test` runs .venv/bin/pytest without
    # activating the venv, and a fresh machine has no lint-imports anywhere else.
    exe = Path(sys.executable).parent / "lint-imports"
    assert exe.exists(), "import-linter is a dev dependency; install with pip install -e '.[dev]'"
    result = subprocess.run([str(exe)], capture_output=True, text=True, cwd=PKG.parent)
    assert result.returncode == 0, result.stdout[-3000:]


def test_io_detector_catches_io() -> None:
    tree = ast.parse("import asyncio\nfrom ssl import SSLContext\nimport time\ntime.sleep(1)\n")
    assert _io_uses(tree) == ["asyncio", "ssl", "time.sleep"]
