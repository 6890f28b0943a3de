"""`tollway demo` end to end: real control plane, proxies, apps and load; v2 promoted, v3
rolled back by the judge with no request reaching v3 afterwards."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.slow


@pytest.mark.timeout(300)
def test_demo_promotes_v2_and_rolls_back_v3() -> None:
    env = dict(os.environ)
    proc = subprocess.run(
        [sys.executable, "-m", "tollway", "demo", "--api-port", str(free_port()),
         "--client-port", str(free_port()), "--rps", "40"],
        capture_output=True, text=True, timeout=280, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "all steps done: canary promoted to stable" in out
    assert "aborting, all traffic back to stable" in out
    assert "healthy v2 promoted, faulty v3 rolled back on its own" in out
