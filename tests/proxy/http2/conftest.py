"""HTTP/2 tests: the proxy harness (tests/proxy) plus a blocking HTTP/2 client."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from grpc_app import serve


@pytest.fixture
def echo() -> Iterator[tuple[int, Any]]:
    """The grpc_app greeter as `v1`: (port, app recording what it was sent)."""
    server, port, app = serve("v1")
    yield port, app
    server.stop(0)
