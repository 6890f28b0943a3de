"""The admin credential the CLI shows the control plane, found without flags on its machine.

Order: `--token`, then `$TOLLWAY_TOKEN`, then the copy `tollway up` leaves for its
server in `$TOLLWAY_CONFIG_DIR` (default `~/.config/tollway`) as
`servers/HOST_PORT.token` (0600, in a 0700 folder), so `tollway apply -f x.yaml` on the
same machine, by the same user, needs nothing more. The master copy is
STATE_DIR/admin-token; the copy is keyed by the API address because `tollway apply`
does not know which folder `tollway up` was started on.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from urllib.parse import urlsplit

from tollway.control import auth

ENV_TOKEN = "TOLLWAY_TOKEN"
ENV_DIR = "TOLLWAY_CONFIG_DIR"


def config_dir() -> Path:
    explicit = os.environ.get(ENV_DIR)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tollway"


def server_file(url: str) -> Path:
    parts = urlsplit(url)
    host = (parts.hostname or "127.0.0.1").replace(":", "_")
    if host == "localhost":
        host = "127.0.0.1"
    return config_dir() / "servers" / f"{host}_{parts.port or 80}.token"


def remember(url: str, token: str) -> Path:
    """`tollway up`: leave the admin token where the CLI on this machine looks for it."""
    return auth.write_secret(server_file(url), token + "\n")


def forget(url: str, token: str) -> None:
    """`tollway up` stopping: remove the copy, unless another one has replaced it."""
    path = server_file(url)
    with contextlib.suppress(OSError):
        if path.read_text().strip() == token:
            path.unlink()


def admin_token(url: str, explicit: str | None = None) -> str | None:
    if explicit:
        return explicit.strip()
    if os.environ.get(ENV_TOKEN):
        return os.environ[ENV_TOKEN].strip()
    try:
        return server_file(url).read_text().strip() or None
    except OSError:
        return None


def headers(url: str, explicit: str | None = None) -> dict[str, str]:
    """`Authorization` for the control plane at `url`, when a credential is known."""
    token = admin_token(url, explicit)
    return {"Authorization": f"Bearer {token}"} if token else {}
