"""Where tests find the pinned Go tools (h2spec, grpcurl) that tests/tools/build.sh builds.

The binaries live in a cache folder outside git (~/.cache/tollway/tools/bin unless
TOLLWAY_TOOLS_CACHE or XDG_CACHE_HOME says otherwise); the folder is asked of the script itself
so the two can never disagree. A missing tool fails the test with the command that builds it:
CI builds them in .ci/run, so a silent skip would hide a broken build.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

import pytest

BUILD_SCRIPT = Path(__file__).with_name("build.sh")


@functools.cache
def bin_dir() -> Path:
    """The folder build.sh installs into (its `--bin-dir` answer)."""
    out = subprocess.run(["bash", str(BUILD_SCRIPT), "--bin-dir"], capture_output=True,
                         text=True, check=True, timeout=30)
    return Path(out.stdout.strip())


def tool(name: str) -> str:
    """The path of the pinned binary NAME; fails the calling test when it was never built."""
    path = bin_dir() / name
    if not os.access(path, os.X_OK):
        pytest.fail(f"{name} is not built at {path}: run `bash tests/tools/build.sh` "
                    "(it builds the pinned h2spec and grpcurl from the Go module proxy; "
                    "CI runs it in .ci/run)", pytrace=False)
    return str(path)
