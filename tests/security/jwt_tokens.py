"""Sign JWTs in tests with `cryptography`, and publish the keys as a JWKS."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _uint(n: int) -> str:
    return b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))


@dataclass
class Signer:
    """One key pair: signs tokens with `alg`, and describes itself as a JWK."""

    alg: str
    key: Any
    kid: str = "k1"

    @classmethod
    def rsa(cls, kid: str = "rsa1", alg: str = "RS256") -> Signer:
        return cls(alg, rsa.generate_private_key(public_exponent=65537, key_size=2048), kid)

    @classmethod
    def ec(cls, kid: str = "ec1") -> Signer:
        return cls("ES256", ec.generate_private_key(ec.SECP256R1()), kid)

    @classmethod
    def ed25519(cls, kid: str = "ed1") -> Signer:
        return cls("EdDSA", ed25519.Ed25519PrivateKey.generate(), kid)

    def jwk(self) -> dict[str, Any]:
        pub = self.key.public_key()
        if isinstance(pub, rsa.RSAPublicKey):
            nums = pub.public_numbers()
            return {"kty": "RSA", "kid": self.kid, "alg": self.alg, "use": "sig",
                    "n": _uint(nums.n), "e": _uint(nums.e)}
        if isinstance(pub, ec.EllipticCurvePublicKey):
            enc = pub.public_numbers()
            return {"kty": "EC", "kid": self.kid, "crv": "P-256",
                    "x": b64(enc.x.to_bytes(32, "big")), "y": b64(enc.y.to_bytes(32, "big"))}
        raw = pub.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return {"kty": "OKP", "kid": self.kid, "crv": "Ed25519", "x": b64(raw)}

    def sign(self, claims: dict[str, Any], *, header: dict[str, Any] | None = None) -> str:
        head = {"alg": self.alg, "typ": "JWT", "kid": self.kid, **(header or {})}
        signing = f"{b64(json.dumps(head).encode())}.{b64(json.dumps(claims).encode())}"
        data = signing.encode()
        if self.alg.startswith("RS"):
            sig = self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        elif self.alg.startswith("PS"):
            h = hashes.SHA256()
            sig = self.key.sign(data, padding.PSS(mgf=padding.MGF1(h), salt_length=32), h)
        elif self.alg == "ES256":
            r, s = decode_dss_signature(self.key.sign(data, ec.ECDSA(hashes.SHA256())))
            sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        else:
            sig = self.key.sign(data)
        return f"{signing}.{b64(sig)}"


def jwks(*signers: Signer) -> str:
    return json.dumps({"keys": [s.jwk() for s in signers]})


def claims(iss: str = "https://auth.example.com", sub: str = "alice", *,
           ttl: float = 600, **more: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": iss, "sub": sub, "iat": now, "exp": now + int(ttl), **more}
