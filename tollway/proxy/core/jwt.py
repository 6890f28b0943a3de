"""JWT validation as Istio's RequestAuthentication defines it (Envoy's jwt_authn) [pure].

`compile_rules` runs once per snapshot: every JWKS is parsed into `cryptography` public
keys there, so the hot path never parses JSON keys. `find_token` looks in the places the
rules name; `verify` checks one token against the rules. Istio's semantics:
- a request without a token passes (only an AuthorizationPolicy with
  `requestPrincipals` can demand one);
- a token that is present but bad (malformed, unknown issuer, bad signature, expired,
  not yet valid, audience not allowed, keys unavailable) is a 401, whatever the policies;
- a good token makes `iss/sub` the request principal and its claims visible to
  `request.auth.claims[...]`.
The failure reasons are Envoy's own strings, because that is what users search for.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tollway.snapshot import types

SPACE_DELIMITED = ("scope", "permission")  # Istio splits these claims on spaces, always
CLOCK_SKEW = 60.0  # seconds: Envoy's default clock_skew_seconds
DEFAULT_LOCATIONS = (types.JwtLocation(header="authorization", prefix="Bearer "),
                     types.JwtLocation(param="access_token"))

MALFORMED = "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
BAD_HEADER = "Jwt header is an invalid JSON"
BAD_PAYLOAD = "Jwt payload is an invalid JSON"
UNKNOWN_ISSUER = "Jwt issuer is not configured"
BAD_SIGNATURE = "Jwt verification fails"
EXPIRED = "Jwt is expired"
NOT_YET_VALID = "Jwt not yet valid"
BAD_AUDIENCE = "Audiences in Jwt are not allowed"
NO_KEYS = "Jwks remote fetch is failed"
BAD_ALG = "Jwt algorithm is not supported"

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512,
}
_CURVES: dict[str, tuple[ec.EllipticCurve, str]] = {
    "P-256": (ec.SECP256R1(), "ES256"), "P-384": (ec.SECP384R1(), "ES384"),
    "P-521": (ec.SECP521R1(), "ES512"),
}
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
Claims = Mapping[str, str | tuple[str, ...]]


def b64url(text: str) -> bytes:
    """base64url without padding (RFC 7515) -> bytes; ValueError when it is not."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


def _int(value: Any) -> int:
    if not isinstance(value, str):
        raise ValueError("key parameter is not a string")
    return int.from_bytes(b64url(value), "big")


@dataclass(frozen=True, slots=True)
class Key:
    kid: str | None
    kty: str
    key: PublicKey
    alg: str | None  # the JWK's own `alg`, when it pins one


def parse_jwks(text: str) -> tuple[Key, ...]:
    """A JWKS document -> its usable public keys (RSA, EC P-256/384/521, Ed25519).

    Keys of other types, or that cannot be built, are skipped: one odd key in a
    provider's set must not disable the others. ValueError when it is not a JWKS at all.
    """
    doc = json.loads(text)
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise ValueError('a JWKS is {"keys": [...]}')
    out: list[Key] = []
    for jwk in doc["keys"]:
        if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
            continue
        kid = jwk.get("kid") if isinstance(jwk.get("kid"), str) else None
        alg = jwk.get("alg") if isinstance(jwk.get("alg"), str) else None
        try:
            key = _public_key(jwk)
        except (ValueError, TypeError, KeyError):
            continue
        if key is not None:
            out.append(Key(kid, str(jwk["kty"]), key, alg))
    return tuple(out)


def _public_key(jwk: dict[str, Any]) -> PublicKey | None:
    kty = jwk.get("kty")
    if kty == "RSA":
        return rsa.RSAPublicNumbers(_int(jwk["e"]), _int(jwk["n"])).public_key()
    if kty == "EC":
        curve = _CURVES.get(str(jwk.get("crv")))
        if curve is None:
            return None
        return ec.EllipticCurvePublicNumbers(_int(jwk["x"]), _int(jwk["y"]),
                                             curve[0]).public_key()
    if kty == "OKP" and jwk.get("crv") == "Ed25519":
        return ed25519.Ed25519PublicKey.from_public_bytes(b64url(str(jwk["x"])))
    return None


@dataclass(frozen=True, slots=True)
class CompiledRule:
    spec: types.JwtRule
    keys: tuple[Key, ...]
    locations: tuple[types.JwtLocation, ...]
    audiences: frozenset[str]


@dataclass(frozen=True, slots=True)
class CompiledJwt:
    rules: tuple[CompiledRule, ...] = ()
    by_issuer: Mapping[str, CompiledRule] = field(default_factory=dict)
    headers: tuple[tuple[str, str], ...] = ()  # (lowercase header, prefix), deduplicated
    params: tuple[str, ...] = ()
    cookies: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.rules


def compile_rules(authn: types.RequestAuthn) -> CompiledJwt:
    """Once per snapshot: keys parsed, locations gathered. ValueError on an unusable JWKS
    given inline (the snapshot is refused, as a NACK says which rule)."""
    rules: list[CompiledRule] = []
    for r in authn.rules:
        try:
            keys = parse_jwks(r.jwks) if r.jwks else ()
        except ValueError as exc:
            raise ValueError(f"jwtRule for issuer {r.issuer!r}: jwks is not usable: {exc}") \
                from None
        rules.append(CompiledRule(r, keys, r.locations or DEFAULT_LOCATIONS,
                                  frozenset(map(audience, r.audiences))))
    by_issuer: dict[str, CompiledRule] = {}
    for c in rules:
        by_issuer.setdefault(c.spec.issuer, c)  # Istio: the first rule for an issuer
    locs = [loc for c in rules for loc in c.locations]
    return CompiledJwt(
        tuple(rules), by_issuer,
        tuple(dict.fromkeys((loc.header.lower(), loc.prefix) for loc in locs if loc.header)),
        tuple(dict.fromkeys(loc.param for loc in locs if loc.param)),
        tuple(dict.fromkeys(loc.cookie for loc in locs if loc.cookie)),
    )


@dataclass(frozen=True, slots=True)
class Found:
    """A token and where it was (to strip it unless forwardOriginalToken)."""

    token: str
    header: str = ""
    param: str = ""


def _query(path: str) -> dict[str, str]:
    _, _, q = path.partition("?")
    out: dict[str, str] = {}
    for part in q.split("&") if q else ():
        k, _, v = part.partition("=")
        out.setdefault(k, v)
    return out


def _cookies(header: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in header.split(";"):
        k, _, v = part.strip().partition("=")
        if k:
            out.setdefault(k, v)
    return out


def find_token(compiled: CompiledJwt, headers: Mapping[str, str], path: str) -> Found | None:
    """The first token in any location the rules name (headers, then params, cookies)."""
    for name, prefix in compiled.headers:
        value = headers.get(name)
        if value is None:
            continue
        if prefix:
            if value[:len(prefix)].lower() != prefix.lower():
                continue
            value = value[len(prefix):]
        value = value.strip()
        if value:
            return Found(value, header=name)
    if compiled.params and "?" in path:
        q = _query(path)
        for p in compiled.params:
            if q.get(p):
                return Found(q[p], param=p)
    if compiled.cookies and "cookie" in headers:
        c = _cookies(headers["cookie"])
        for name in compiled.cookies:
            if c.get(name):
                return Found(c[name])
    return None


@dataclass(frozen=True, slots=True)
class Verified:
    """A token that passed: who it names and what it claims."""

    rule: CompiledRule
    principal: str  # iss/sub
    claims: Claims
    payload_segment: str  # base64url JSON, for outputPayloadToHeader
    raw_claims: Mapping[str, Any]


class JwtError(Exception):
    """A present token that must be refused with 401; the message is Envoy's reason."""


def _segments(token: str) -> tuple[dict[str, Any], dict[str, Any], str, str, bytes]:
    parts = token.split(".")
    if len(parts) != 3:
        raise JwtError(MALFORMED)
    try:
        header = json.loads(b64url(parts[0]))
    except (ValueError, RecursionError):
        raise JwtError(BAD_HEADER) from None
    try:
        payload = json.loads(b64url(parts[1]))
    except (ValueError, RecursionError):
        raise JwtError(BAD_PAYLOAD) from None
    try:
        signature = b64url(parts[2])
    except ValueError:
        raise JwtError(MALFORMED) from None
    if not isinstance(header, dict):
        raise JwtError(BAD_HEADER)
    if not isinstance(payload, dict):
        raise JwtError(BAD_PAYLOAD)
    return header, payload, parts[1], f"{parts[0]}.{parts[1]}", signature


def _check_signature(alg: str, key: Key, signed: bytes, sig: bytes) -> bool:
    family, bits = alg[:2], alg[2:]
    try:
        if family in ("RS", "PS") and isinstance(key.key, rsa.RSAPublicKey):
            h = _HASHES[bits]()
            pad: padding.AsymmetricPadding = (
                padding.PKCS1v15() if family == "RS" else
                padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size))
            key.key.verify(sig, signed, pad, h)
            return True
        if family == "ES" and isinstance(key.key, ec.EllipticCurvePublicKey):
            size = (key.key.curve.key_size + 7) // 8
            if len(sig) != 2 * size or _CURVES_BY_ALG.get(alg) != key.key.curve.name:
                return False
            r, s = int.from_bytes(sig[:size], "big"), int.from_bytes(sig[size:], "big")
            key.key.verify(encode_dss_signature(r, s), signed, ec.ECDSA(_HASHES[bits]()))
            return True
        if alg == "EdDSA" and isinstance(key.key, ed25519.Ed25519PublicKey):
            key.key.verify(sig, signed)
            return True
    except (InvalidSignature, KeyError, ValueError):
        return False
    return False


_CURVES_BY_ALG = {alg: curve.name for curve, alg in _CURVES.values()}
SUPPORTED_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                            "ES256", "ES384", "ES512", "EdDSA"})


def _number(payload: Mapping[str, Any], name: str) -> float | None:
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        if value is None:
            return None
        raise JwtError(BAD_PAYLOAD)
    return float(value)


def audience(value: str) -> str:
    """As Envoy compares audiences: without an http(s):// prefix or a trailing slash."""
    for scheme in ("https://", "http://"):
        if value.startswith(scheme):
            value = value[len(scheme):]
            break
    return value.rstrip("/")


def flatten_claims(payload: Mapping[str, Any]) -> dict[str, str | tuple[str, ...]]:
    """Claims as AuthorizationPolicy conditions read them: strings as they are, numbers
    and booleans as JSON text, lists of scalars as tuples (any element may match), and
    nested objects also under `outer.inner` keys."""
    out: dict[str, str | tuple[str, ...]] = {}

    def scalar(v: Any) -> str | None:
        if isinstance(v, str):
            return v
        if isinstance(v, bool | int | float):
            return json.dumps(v)
        return None

    def walk(prefix: str, obj: Mapping[str, Any], depth: int) -> None:
        for k, v in obj.items():
            name = f"{prefix}{k}"
            if isinstance(v, list):
                out[name] = tuple(s for s in map(scalar, v) if s is not None)
            elif isinstance(v, dict):
                if depth < 4:
                    walk(name + ".", v, depth + 1)
            else:
                s = scalar(v)
                if s is not None:
                    out[name] = s

    walk("", payload, 0)
    return out


def _looks_there(rule: CompiledRule, found: Found) -> bool:
    """Whether `rule` reads tokens where this one was found (Envoy: each provider looks
    only in its own locations)."""
    for loc in rule.locations:
        if found.header and loc.header.lower() == found.header:
            return True
        if found.param and loc.param == found.param:
            return True
        if not found.header and not found.param and loc.cookie:
            return True
    return False


def verify(compiled: CompiledJwt, token: str, now: float,
           found: Found | None = None) -> Verified:
    """Check one token; raise JwtError (Envoy's reason) when it must be refused."""
    header, payload, segment, signed, sig = _segments(token)
    iss = payload.get("iss")
    rule = compiled.by_issuer.get(iss) if isinstance(iss, str) else None
    if rule is None or (found is not None and not _looks_there(rule, found)):
        raise JwtError(UNKNOWN_ISSUER)
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in SUPPORTED_ALGS:
        raise JwtError(BAD_ALG)
    if not rule.keys:
        raise JwtError(NO_KEYS if rule.spec.jwks_uri else BAD_SIGNATURE)
    kid = header.get("kid")
    candidates = [k for k in rule.keys if (not isinstance(kid, str) or k.kid in (None, kid))
                  and (k.alg is None or k.alg == alg)]
    data = signed.encode("ascii")
    if not any(_check_signature(alg, k, data, sig) for k in candidates):
        raise JwtError(BAD_SIGNATURE)
    exp, nbf = _number(payload, "exp"), _number(payload, "nbf")
    if exp is not None and now > exp + CLOCK_SKEW:
        raise JwtError(EXPIRED)
    if nbf is not None and now + CLOCK_SKEW < nbf:
        raise JwtError(NOT_YET_VALID)
    if rule.audiences:
        aud = payload.get("aud")
        given = {aud} if isinstance(aud, str) else {a for a in aud if isinstance(a, str)} \
            if isinstance(aud, list) else set()
        if not set(map(audience, given)) & rule.audiences:
            raise JwtError(BAD_AUDIENCE)
    sub = payload.get("sub")
    principal = f"{iss}/{sub if isinstance(sub, str) else ''}"
    claims = flatten_claims(payload)
    for name in (*SPACE_DELIMITED, *rule.spec.space_delimited_claims):
        value = claims.get(name)
        if isinstance(value, str):  # `scope: "read write"` matches "read" (Istio)
            claims[name] = tuple(value.split())
    return Verified(rule, principal, claims, segment, payload)
