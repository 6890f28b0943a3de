"""The proxy's workload credential: a token it shows the control plane, read from a file.

`tollway up` writes each sidecar's token (bound to its node) to a 0600 file in the state
folder and passes the path; a VM proxy takes `--token-file` (from `tollway token
create`); on Kubernetes it will be the projected service-account token file. A file, not
an environment variable or argv: argv is world-readable in /proc, the environment is
inherited by every child and shows up in crash reports, and a file is what Kubernetes
rotates in place. The file is read at each use (connect, register, CSR), so a rotated
token is picked up without a restart.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

TokenSource = Callable[[], str]


def from_file(path: str | Path) -> TokenSource:
    """Read `path` at each call; an unreadable or empty file is an OSError (fail closed)."""
    file = Path(path)

    def read() -> str:
        token = file.read_text().strip()
        if not token:
            raise OSError(f"token file {file} is empty")
        return token

    return read


def header(source: TokenSource | None) -> str:
    """The `Authorization` header line for a raw HTTP request ("" without a credential)."""
    if source is None:
        return ""
    token = source()
    if any(c in token for c in "\r\n"):
        raise OSError("the workload token contains a line break")
    return f"Authorization: Bearer {token}\r\n"
