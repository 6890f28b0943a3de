"""Who is calling the control plane: signed tokens for workloads and for the admin.

Istio's CA trusts a workload because the Kubernetes API vouches for its service-account
token (TokenReview). Tollway has no API server in local and VM modes, so the control
plane mints its own tokens and is the only one that checks them:

    tw1.<base64url(claims JSON)>.<base64url(HMAC-SHA256(key, "tw1." + claims part))>

Claims: `kind` ("workload" or "admin"), for workloads `ns` and `sa` (and `node` when the
token is bound to one proxy, as `tollway up` binds each sidecar's), `iat`, optional
`exp`, and a random `jti`. HMAC rather than Ed25519: the party that signs is the only one
that verifies, so a public key would buy nothing, and HMAC verification costs a hash.
The key is 32 random bytes in STATE/auth/token-key (0600); keeping it across restarts is
what lets sidecars a killed `tollway up` left running keep their identity when a new one
adopts them. Deleting it invalidates every token at once (the admin token is re-minted).

`TokenVerifier` is the seam for Kubernetes mode: a TokenReview verifier returns the same
`Principal` for a projected service-account token, and `ChainVerifier` tries each.
This module is pure except `load_or_create_key` / `write_secret`, which touch the disk.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

PREFIX = "tw1"
KEY_FILE = Path("auth") / "token-key"
ADMIN_TOKEN_FILE = "admin-token"
TOKENS_DIR = Path("auth") / "tokens"
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-.")


class AuthError(Exception):
    """A credential that proves nothing: missing, malformed, forged or expired.

    `str(exc)` is one sentence for the caller (answered 401).
    """


class Forbidden(Exception):
    """A valid credential that does not allow this call (answered 403)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """What a verified credential says about its holder."""

    admin: bool = False
    namespace: str = ""
    service_account: str = ""
    node: str = ""  # bound to one proxy (its node name), or "" for any of its identity

    def describe(self) -> str:
        if self.admin:
            return "the admin credential"
        bound = f" (node {self.node})" if self.node else ""
        return f"a credential for ns/{self.namespace}/sa/{self.service_account}{bound}"

    def check_node(self, name: str, namespace: str, service_account: str) -> None:
        """Forbidden unless this principal may act as node `name` with that identity."""
        if self.admin:
            return
        if (namespace, service_account) != (self.namespace, self.service_account):
            raise Forbidden(f"{self.describe()} cannot act as ns/{namespace}/sa/"
                            f"{service_account}")
        if self.node and self.node != name:
            raise Forbidden(f"{self.describe()} is bound to another node than {name}")


class TokenVerifier(Protocol):
    """Turns a bearer token into a Principal, or raises AuthError (Kubernetes: TokenReview)."""

    def verify(self, token: str, now: float) -> Principal: ...


class AsyncTokenVerifier(TokenVerifier, Protocol):
    """A verifier that must ask someone (the Kubernetes API's TokenReview): `verify` may
    answer only from what it already knows; `verify_async` asks."""

    async def verify_async(self, token: str, now: float) -> Principal: ...


async def verify(verifier: TokenVerifier, token: str, now: float) -> Principal:
    """`verifier.verify_async` when it has one (it may do IO), else `verifier.verify`."""
    asking = getattr(verifier, "verify_async", None)
    if asking is not None:
        principal: Principal = await asking(token, now)
        return principal
    return verifier.verify(token, now)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def check_name(what: str, value: str) -> str:
    """A namespace / service account / node name as Kubernetes allows it, or ValueError."""
    if not value or len(value) > 253 or not set(value) <= NAME_CHARS:
        raise ValueError(f"{what} {value!r} is not a Kubernetes name (lowercase letters, "
                         "digits, '-' and '.')")
    return value


@dataclass(frozen=True)
class TokenSigner:
    """Mints and verifies `tw1` tokens with one HMAC key."""

    key: bytes

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self.key, f"{PREFIX}.{body}".encode(), hashlib.sha256).digest())

    def mint(self, claims: dict[str, object], now: float, ttl: float | None = None) -> str:
        full = {**claims, "iat": int(now), "jti": secrets.token_hex(8)}
        if ttl is not None:
            full["exp"] = int(now + ttl)
        body = _b64(json.dumps(full, separators=(",", ":"), sort_keys=True).encode())
        return f"{PREFIX}.{body}.{self._sign(body)}"

    def workload(self, namespace: str, service_account: str, now: float, *,
                 node: str = "", ttl: float | None = None) -> str:
        claims: dict[str, object] = {
            "kind": "workload", "ns": check_name("namespace", namespace),
            "sa": check_name("service account", service_account)}
        if node:
            claims["node"] = check_name("node", node)
        return self.mint(claims, now, ttl)

    def admin(self, now: float, ttl: float | None = None) -> str:
        return self.mint({"kind": "admin"}, now, ttl)

    def verify(self, token: str, now: float) -> Principal:
        parts = token.strip().split(".")
        if len(parts) != 3 or parts[0] != PREFIX:
            raise AuthError("the bearer token is not a Tollway token (tw1.CLAIMS.SIGNATURE)")
        if not hmac.compare_digest(parts[2], self._sign(parts[1])):
            raise AuthError("the bearer token's signature does not verify (issued by "
                            "another control plane, or its key was rotated)")
        try:
            claims = json.loads(_unb64(parts[1]))
        except ValueError:
            raise AuthError("the bearer token's claims do not decode") from None
        if not isinstance(claims, dict):
            raise AuthError("the bearer token's claims are not an object")
        exp = claims.get("exp")
        if isinstance(exp, int) and now >= exp:
            raise AuthError("the bearer token has expired; issue a new one")
        if claims.get("kind") == "admin":
            return Principal(admin=True)
        ns, sa = claims.get("ns"), claims.get("sa")
        if claims.get("kind") != "workload" or not isinstance(ns, str) \
                or not isinstance(sa, str):
            raise AuthError("the bearer token names no workload identity")
        return Principal(namespace=ns, service_account=sa, node=str(claims.get("node") or ""))


@dataclass(frozen=True)
class ChainVerifier:
    """The first verifier that accepts the token wins (Kubernetes: TokenReview, then ours)."""

    verifiers: Sequence[TokenVerifier]

    def verify(self, token: str, now: float) -> Principal:
        errors = []
        for verifier in self.verifiers:
            try:
                return verifier.verify(token, now)
            except AuthError as exc:
                errors.append(str(exc))
        raise AuthError(errors[-1] if errors else "no verifier accepts bearer tokens")

    async def verify_async(self, token: str, now: float) -> Principal:
        errors = []
        for verifier in self.verifiers:
            try:
                return await verify(verifier, token, now)
            except AuthError as exc:
                errors.append(str(exc))
        raise AuthError(errors[-1] if errors else "no verifier accepts bearer tokens")


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header, or None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


# ------------------------------------------------------------------ IO edge


def write_secret(path: Path, text: str) -> Path:
    """Write `text` to `path` readable only by this user: temp 0600 + fsync + rename."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load_or_create_key(state_dir: Path) -> bytes:
    """The token key in STATE/auth/token-key, created (0600) on first use."""
    path = state_dir / KEY_FILE
    if path.exists():
        key = bytes.fromhex(path.read_text().strip())
        if len(key) >= 32:
            return key
    key = secrets.token_bytes(32)
    write_secret(path, key.hex() + "\n")
    return key


def read_token_file(path: Path) -> str:
    """A token from a file (read at each use, so a rotated file is picked up)."""
    return path.read_text().strip()


def admin_token(state_dir: Path, signer: TokenSigner, now: float) -> str:
    """STATE/admin-token: kept while it verifies (restarts keep the CLI's copy valid),
    minted and written 0600 otherwise."""
    path = state_dir / ADMIN_TOKEN_FILE
    try:
        token = path.read_text().strip()
        if signer.verify(token, now).admin:
            return token
    except (OSError, AuthError):
        pass
    token = signer.admin(now)
    write_secret(path, token + "\n")
    return token


def node_token_file(state_dir: Path, signer: TokenSigner, now: float, *, name: str,
                    namespace: str, service_account: str) -> Path:
    """A sidecar's credential, bound to its node, in STATE/auth/tokens/NAME.token (0600)."""
    token = signer.workload(namespace, service_account, now, node=name)
    return write_secret(state_dir / TOKENS_DIR / f"{check_name('node', name)}.token",
                        token + "\n")
