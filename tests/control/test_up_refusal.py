"""`tollway up` refuses what local mode cannot run, in one sentence, before starting anything."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import free_port as _free_port

SEED = Path(__file__).resolve().parents[1] / "data" / "seed"



def test_up_refuses_image_without_command(tmp_path: Path) -> None:
    shutil.copy(SEED / "01-canary-deployments.yaml", tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "tollway", "up", str(tmp_path), "--api-port", str(_free_port()),
         "--client-port", str(_free_port())],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if "myapp-v1" in line]
    assert len(lines) == 1
    assert "local mode runs commands" in lines[0]
    assert 'command: ["tollway", "demo-app"]' in lines[0]
    assert "Traceback" not in done.stdout + done.stderr


def test_up_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tollway", "up", str(tmp_path / "nope")],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2 and "no such folder" in done.stderr
