"""The dev cluster's host lock (tests/conftest.py): a second set-up in one process fails
at once instead of waiting on its own flock forever."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, host_cluster_lock


def test_the_same_process_asking_again_fails_fast_naming_itself(tmp_path: Path) -> None:
    lock = tmp_path / "cluster.lock"
    with host_cluster_lock(lock):
        assert lock.read_text() == str(os.getpid())
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="already holds") as err, \
                host_cluster_lock(lock):
            pass
        assert time.monotonic() - started < 5
        assert "set up a second time" in str(err.value)
    assert lock.read_text() == ""  # released: no stale holder left in the file
    with host_cluster_lock(lock):  # and it can be taken again
        pass


def test_another_process_holding_it_is_waited_for(tmp_path: Path) -> None:
    lock, releasing = tmp_path / "cluster.lock", tmp_path / "releasing"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import pathlib, time; from tests.conftest import host_cluster_lock\n"
         f"with host_cluster_lock(pathlib.Path({str(lock)!r})):\n"
         "    print('held', flush=True); time.sleep(2)\n"
         f"    pathlib.Path({str(releasing)!r}).touch()"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with host_cluster_lock(lock):  # queues behind the other process, then takes it
            assert releasing.exists()
            assert lock.read_text() == str(os.getpid())
    finally:
        holder.wait(30)
