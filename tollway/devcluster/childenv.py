"""The environment for Python children (supervisor, node agent, the agent's cleanup).

PYTHONPATH leads with the folder holding the `tollway` package this very process runs, so
children run the same code whatever their cwd and however Tollway was installed.
"""

from __future__ import annotations

import os
from pathlib import Path


def child_env() -> dict[str, str]:
    import tollway

    src = str(Path(tollway.__file__).resolve().parent.parent)
    rest = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": src + (os.pathsep + rest if rest else "")}
