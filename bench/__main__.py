"""`python -m bench`: run bench/run.sh (Tollway's proxy vs nginx and HAProxy, one run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

if __name__ == "__main__":
    script = Path(__file__).resolve().parent / "run.sh"
    sys.exit(subprocess.call(["bash", str(script), *sys.argv[1:]]))
