"""The CA's root in a Secret: created once, reused by every replica (race-safe).

Each replica GETs Secret `tollway-ca`; when absent it makes a root and POSTs it; when
that POST answers 409 (another replica created it first) it GETs theirs and throws its
own away. Every replica then signs with the same root, so a sidecar trusts certificates
whichever replica issued them.
"""

from __future__ import annotations

import base64
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tollway.control import ca
from tollway.kube.api import Api

SECRET = "tollway-ca"


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
    return ca.CertificateAuthority(cert, key, trust_domain=trust_domain)


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
