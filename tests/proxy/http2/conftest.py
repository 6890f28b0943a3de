"""HTTP/2 tests: the proxy harness (tests/proxy) plus a blocking HTTP/2 client."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

