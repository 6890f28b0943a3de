"""Credentials for tests that run a control plane in-process: one signer, its guard, and
tokens for nodes and the admin (the same `tw1` tokens `tollway up` issues)."""

from __future__ import annotations

import time
from collections.abc import Callable

from tollway.control import auth
from tollway.control.guard import Guard
from tollway.snapshot import types

SIGNER = auth.TokenSigner(b"tollway-tests-only-key-0123456789abcdef")


def guard() -> Guard:
    return Guard(SIGNER)


def admin() -> str:
    return SIGNER.admin(time.time())


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {admin()}"}


def for_node(node: types.Node) -> Callable[[], str]:
    """The token source a sidecar for `node` shows (bound to its node, as `tollway up`)."""
    token = SIGNER.workload(node.namespace, node.service_account, time.time(), node=node.name)
    return lambda: token
