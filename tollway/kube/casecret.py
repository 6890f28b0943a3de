"""The CA's root in a Secret: created once, reused by every replica (race-safe).

Each replica GETs Secret `tollway-ca`; when absent it makes a root and POSTs it; when
that POST answers 409 (another replica created it first) it GETs theirs and throws its
own away. Every replica then signs with the same root, so a sidecar trusts certificates
whichever replica issued them.

Revocations live there too (key `revoked-serials`, one hex serial a line, as beside a
local root): a `POST /v1/ca/revoke` on any replica is written to the Secret before it is
answered (read, union, PUT with the resourceVersion read; a 409 means another replica
wrote meanwhile: read again), and every replica reads the Secret every few seconds and
pushes what it did not know to its proxies. The Secret is the one list, so a restarted
replica starts with every revocation, and `kubectl edit secret tollway-ca` revokes too.
A revocation is never removed by a replica (the list only grows, as a CRL does).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable, Iterable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tollway.control import ca
from tollway.kube.api import Api

SECRET = "tollway-ca"
FOLLOW_PERIOD = 5.0  # how often each replica reads the Secret for others' revocations
log = logging.getLogger(__name__)


class CASecretError(Exception):
    """The Secret cannot be read or made; `str(exc)` says what to fix."""


def secret_body(name: str, namespace: str, authority: ca.CertificateAuthority) -> dict[str, Any]:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"app.kubernetes.io/part-of": "tollway"}},
            "data": {ca.ROOT_CERT: b64(ca.cert_pem(authority.cert)),
                     ca.ROOT_KEY: b64(ca.key_pem(authority.key))}}


def revoked_in(secret: dict[str, Any]) -> set[int]:
    """The serials the Secret lists as revoked (an unreadable line is skipped, with a log)."""
    raw = (secret.get("data") or {}).get(ca.REVOKED)
    if not raw:
        return set()
    out = set()
    for word in base64.b64decode(raw).decode(errors="replace").split():
        try:
            out.add(int(word, 16))
        except ValueError:
            log.warning("Secret %s: %r in %s is not a hex serial; ignored", SECRET, word,
                        ca.REVOKED)
    return out


def with_revoked(secret: dict[str, Any], serials: Iterable[int]) -> dict[str, Any] | None:
    """The Secret with `serials` added to its list, keeping its resourceVersion (the PUT
    then fails with 409 if anyone wrote since); None when it lists them all already."""
    have = revoked_in(secret)
    union = have | set(serials)
    if union == have:
        return None
    text = "".join(format(s, "x") + "\n" for s in sorted(union))
    body = dict(secret)
    body["data"] = {**(secret.get("data") or {}),
                    ca.REVOKED: base64.b64encode(text.encode()).decode()}
    return body


def authority_from(secret: dict[str, Any], trust_domain: str) -> ca.CertificateAuthority:
    data = secret.get("data") or {}
    try:
        cert = x509.load_pem_x509_certificate(base64.b64decode(data[ca.ROOT_CERT]))
        key = serialization.load_pem_private_key(base64.b64decode(data[ca.ROOT_KEY]),
                                                 password=None)
    except (KeyError, ValueError) as exc:
        raise CASecretError(f"Secret {SECRET} does not hold a CA ({ca.ROOT_CERT} and "
                            f"{ca.ROOT_KEY}): {exc}; delete it to have a new root made") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CASecretError(f"Secret {SECRET}: the CA key must be an EC key (P-256)")
    return ca.CertificateAuthority(cert, key, trust_domain=trust_domain,
                                   revoked=revoked_in(secret))


async def load_or_create(api: Api, namespace: str, name: str = SECRET,
                         trust_domain: str = "cluster.local") -> ca.CertificateAuthority:
    path = f"/api/v1/namespaces/{namespace}/secrets"
    for _ in range(3):
        code, data = await api.request("GET", f"{path}/{name}")
        if code == 200 and isinstance(data, dict):
            return authority_from(data, trust_domain)
        if code != 404:
            raise CASecretError(f"cannot read Secret {namespace}/{name}: HTTP {code}; the "
                                "control plane needs get/create on Secrets in its namespace")
        fresh = ca.CertificateAuthority.create(trust_domain)
        code, _ = await api.request("POST", path, body=secret_body(name, namespace, fresh))
        if code in (200, 201):
            return fresh
        if code == 404:
            raise CASecretError(f"namespace {namespace} does not exist: create it or pass "
                                "--namespace")
        if code != 409:  # 409: another replica won the race; read theirs
            raise CASecretError(f"cannot create Secret {namespace}/{name}: HTTP {code}")
    raise CASecretError(f"Secret {namespace}/{name} keeps changing; try again")


async def save_revoked(api: Api, namespace: str, authority: ca.CertificateAuthority,
                       name: str = SECRET) -> None:
    """Add this replica's revocations to the Secret (and take the Secret's in). Raises
    CASecretError when it cannot: the caller must not report the revocation as shared."""
    path = f"/api/v1/namespaces/{namespace}/secrets/{name}"
    for _ in range(5):
        code, data = await api.request("GET", path)
        if code != 200 or not isinstance(data, dict):
            raise CASecretError(f"cannot read Secret {namespace}/{name}: HTTP {code}")
        authority.revoked |= revoked_in(data)
        body = with_revoked(data, authority.revoked)
        if body is None:
            return
        code, _ = await api.request("PUT", path, body=body)
        if code == 200:
            return
        if code != 409:  # 409: another replica wrote meanwhile; read and merge again
            raise CASecretError(f"cannot update Secret {namespace}/{name}: HTTP {code}; the "
                                "control plane needs update on Secrets in its namespace")
    raise CASecretError(f"Secret {namespace}/{name} keeps changing; try again")


async def follow_revoked(api: Api, namespace: str, authority: ca.CertificateAuthority,
                         on_change: Callable[[], None], name: str = SECRET,
                         period: float = FOLLOW_PERIOD) -> None:
    """Forever: take in revocations other replicas (or `kubectl edit`) added to the Secret
    and call `on_change` (push the trust bundle) when there were new ones."""
    path = f"/api/v1/namespaces/{namespace}/secrets/{name}"
    while True:
        await asyncio.sleep(period)
        try:
            code, data = await api.request("GET", path)
        except Exception as exc:  # the API server restarts; the next round tries again
            log.info("reading Secret %s/%s for revocations failed: %s", namespace, name, exc)
            continue
        if code != 200 or not isinstance(data, dict):
            log.warning("reading Secret %s/%s for revocations: HTTP %s", namespace, name, code)
            continue
        new = revoked_in(data) - authority.revoked
        if new:
            authority.revoked |= new
            log.info("revocations from Secret %s/%s: %s", namespace, name,
                     ", ".join(format(s, "x") for s in sorted(new)))
            on_change()
