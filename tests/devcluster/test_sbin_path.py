"""Root's tool folders join a PATH that lacks them, last, and only those that exist."""

from __future__ import annotations

import os

import pytest

from tollway.plumbing import sbin


def test_missing_sbin_folders_are_appended_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/opt/mine:/usr/bin:/bin")
    sbin.ensure_on_path()
    parts = os.environ["PATH"].split(os.pathsep)
    assert parts[:3] == ["/opt/mine", "/usr/bin", "/bin"]  # the caller's order, first
    assert parts[3:] == [d for d in sbin.SBIN if os.path.isdir(d)]
    sbin.ensure_on_path()
    assert os.environ["PATH"].split(os.pathsep) == parts  # nothing added twice


def test_a_path_that_has_them_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/sbin:/usr/local/sbin:/sbin:/usr/bin")
    sbin.ensure_on_path()
    assert os.environ["PATH"] == "/usr/sbin:/usr/local/sbin:/sbin:/usr/bin"
