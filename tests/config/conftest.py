"""Fixtures for config tests: paths to the seeds, the examples and the broken corpus."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SEEDS = ROOT / "tests" / "data" / "seed"
EXAMPLES = ROOT / "examples"
BROKEN = HERE / "broken"


@pytest.fixture
def seeds() -> Path:
    return SEEDS
