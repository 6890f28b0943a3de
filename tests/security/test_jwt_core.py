"""RequestAuthentication's JWT checks, pure: tokens signed here, verified by proxy.core.jwt."""

from __future__ import annotations

import base64
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.security.jwt_tokens import Signer, claims, jwks
from tollway.proxy.core import authz, jwt
from tollway.snapshot import types

ISS = "https://auth.example.com"
RSA = Signer.rsa()
EC = Signer.ec()
ED = Signer.ed25519()


def compiled(*rules: types.JwtRule) -> jwt.CompiledJwt:
    return jwt.compile_rules(types.RequestAuthn(rules=rules))


RULE = types.JwtRule(issuer=ISS, audiences=("shop",), jwks=jwks(RSA, EC, ED))
C = compiled(RULE)
NOW = time.time()


@pytest.mark.parametrize("signer", [RSA, EC, ED], ids=lambda s: s.alg)
def test_a_good_token_names_its_principal_and_claims(signer: Signer) -> None:
    token = signer.sign(claims(aud="shop", groups=["admin", "dev"], level=3))
    ok = jwt.verify(C, token, NOW)
    assert ok.principal == f"{ISS}/alice"
    assert ok.claims["groups"] == ("admin", "dev") and ok.claims["level"] == "3"


def test_ps256_is_verified() -> None:
    ps = Signer.rsa("ps1", "PS256")
    c = compiled(types.JwtRule(issuer=ISS, jwks=jwks(ps)))
    assert jwt.verify(c, ps.sign(claims()), NOW).principal == f"{ISS}/alice"


@pytest.mark.parametrize(("token", "reason"), [
    (RSA.sign(claims(aud="shop", ttl=-3600)), jwt.EXPIRED),
    (RSA.sign(claims(aud="shop", nbf=int(NOW) + 3600)), jwt.NOT_YET_VALID),
    (RSA.sign(claims(aud="other")), jwt.BAD_AUDIENCE),
    (RSA.sign(claims()), jwt.BAD_AUDIENCE),  # audiences required, none in the token
    (RSA.sign(claims(iss="https://evil.example.com", aud="shop")), jwt.UNKNOWN_ISSUER),
    (Signer.rsa().sign(claims(aud="shop")), jwt.BAD_SIGNATURE),  # same kid, other key
    ("a.b", jwt.MALFORMED),
    ("!!.e30.sig", jwt.BAD_HEADER),
], ids=["expired", "not-yet-valid", "wrong-aud", "no-aud", "unknown-issuer", "bad-signature",
        "two-sections", "bad-header"])
def test_a_bad_token_is_refused_with_envoys_reason(token: str, reason: str) -> None:
    with pytest.raises(jwt.JwtError, match=reason):
        jwt.verify(C, token, NOW)


def test_tampered_payload_fails_the_signature() -> None:
    token = RSA.sign(claims(aud="shop", sub="alice"))
    head, _, sig = token.split(".")
    forged = base64.urlsafe_b64encode(json.dumps(claims(aud="shop", sub="root")).encode())
    with pytest.raises(jwt.JwtError, match=jwt.BAD_SIGNATURE):
        jwt.verify(C, f"{head}.{forged.rstrip(b'=').decode()}.{sig}", NOW)


def test_alg_none_and_hmac_are_refused() -> None:
    token = RSA.sign(claims(aud="shop"), header={"alg": "none"})
    with pytest.raises(jwt.JwtError, match=jwt.BAD_ALG):
        jwt.verify(C, token, NOW)


def test_a_jwks_uri_not_yet_fetched_fails_closed() -> None:
    c = compiled(types.JwtRule(issuer=ISS, jwks_uri="https://auth.example.com/jwks"))
    with pytest.raises(jwt.JwtError, match=jwt.NO_KEYS):
        jwt.verify(c, RSA.sign(claims()), NOW)


def test_an_inline_jwks_that_is_not_one_refuses_the_snapshot() -> None:
    with pytest.raises(ValueError, match="jwks is not usable"):
        compiled(types.JwtRule(issuer=ISS, jwks='{"nokeys": 1}'))


def test_tokens_are_found_where_the_rules_say() -> None:
    default = compiled(types.JwtRule(issuer=ISS, jwks=jwks(RSA)))
    assert jwt.find_token(default, {"authorization": "Bearer abc"}, "/") == \
        jwt.Found("abc", header="authorization")
    assert jwt.find_token(default, {}, "/x?access_token=tok&a=b") == \
        jwt.Found("tok", param="access_token")
    assert jwt.find_token(default, {"authorization": "Basic zzz"}, "/") is None
    custom = compiled(types.JwtRule(issuer=ISS, jwks=jwks(RSA), locations=(
        types.JwtLocation(header="x-jwt", prefix="Token "), types.JwtLocation(param="t"),
        types.JwtLocation(cookie="session"))))
    assert jwt.find_token(custom, {"x-jwt": "Token abc"}, "/").token == "abc"  # type: ignore[union-attr]
    assert jwt.find_token(custom, {"authorization": "Bearer abc"}, "/") is None
    assert jwt.find_token(custom, {"cookie": "a=1; session=s3"}, "/").token == "s3"  # type: ignore[union-attr]


def test_list_claims_match_any_element_in_authorization_conditions() -> None:
    policy = types.AuthzPolicy(name="ns/p", rules=(types.AuthzRule(conditions=(
        types.AuthzCondition(key="request.auth.claims[groups]", values=("admin",)),)),))
    comp = authz.compile_authz(types.Authz(policies=(policy,)))
    ok = jwt.verify(C, RSA.sign(claims(aud="shop", groups=["dev", "admin"])), NOW)
    assert authz.evaluate(comp, authz.Request(claims=ok.claims)).allowed
    other = jwt.verify(C, RSA.sign(claims(aud="shop", groups=["dev"])), NOW)
    assert not authz.evaluate(comp, authz.Request(claims=other.claims)).allowed


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300) | st.builds(lambda a, b, c: f"{a}.{b}.{c}",
                                          st.text(), st.text(), st.text()))
def test_hostile_tokens_only_ever_raise_jwt_error(token: str) -> None:
    try:
        jwt.verify(C, token, NOW)
    except jwt.JwtError:
        pass


def test_scope_and_named_claims_are_split_on_spaces() -> None:
    c = compiled(types.JwtRule(issuer=ISS, jwks=jwks(RSA), space_delimited_claims=("roles",)))
    ok = jwt.verify(c, RSA.sign(claims(scope="read write", roles="a b", plain="x y")), NOW)
    assert ok.claims["scope"] == ("read", "write") and ok.claims["roles"] == ("a", "b")
    assert ok.claims["plain"] == "x y"


def test_a_token_counts_only_where_its_issuers_rule_looks() -> None:
    other = Signer.rsa("o1")
    c = compiled(
        types.JwtRule(issuer=ISS, jwks=jwks(RSA),
                      locations=(types.JwtLocation(header="x-jwt"),)),
        types.JwtRule(issuer="other", jwks=jwks(other)))  # default locations
    token = RSA.sign(claims())
    found = jwt.find_token(c, {"authorization": f"Bearer {token}"}, "/")
    assert found is not None and found.header == "authorization"
    with pytest.raises(jwt.JwtError, match=jwt.UNKNOWN_ISSUER):
        jwt.verify(c, token, NOW, found)  # ISS's rule reads x-jwt only
    there = jwt.find_token(c, {"x-jwt": token}, "/")
    assert there is not None and jwt.verify(c, token, NOW, there).principal == f"{ISS}/alice"


def test_audiences_compare_without_scheme_or_trailing_slash() -> None:
    c = compiled(types.JwtRule(issuer=ISS, audiences=("https://shop.example.com/",),
                               jwks=jwks(RSA)))
    assert jwt.verify(c, RSA.sign(claims(aud="shop.example.com")), NOW)
    assert jwt.verify(c, RSA.sign(claims(aud=["x", "http://shop.example.com"])), NOW)
    with pytest.raises(jwt.JwtError, match=jwt.BAD_AUDIENCE):
        jwt.verify(c, RSA.sign(claims(aud="shop.example.org")), NOW)


def test_nested_claims_match_with_istios_bracket_form() -> None:
    policy = types.AuthzPolicy(name="ns/p", rules=(types.AuthzRule(conditions=(
        types.AuthzCondition(key="request.auth.claims[realm][role]", values=("admin",)),)),))
    comp = authz.compile_authz(types.Authz(policies=(policy,)))
    ok = jwt.verify(C, RSA.sign(claims(aud="shop", realm={"role": "admin"})), NOW)
    assert authz.evaluate(comp, authz.Request(claims=ok.claims)).allowed
    other = jwt.verify(C, RSA.sign(claims(aud="shop", realm={"role": "dev"})), NOW)
    assert not authz.evaluate(comp, authz.Request(claims=other.claims)).allowed
