"""RequestAuthentication through a live sidecar: tokens signed here, sent over real sockets.

A ProxyServer in front of the demo app (which echoes the headers it got) enforces the
jwtRules of a snapshot: no token passes, a bad one is a 401 with Envoy's reason, a good
one reaches the app with the outputs Istio defines, and AuthorizationPolicies see the
request principal and claims.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.security.jwt_tokens import Signer, claims, jwks
from tests.security.live_mesh import (
    http_request,
    inbound_config,
    running_app,
    start_proxy,
)
from tests.security.sec_resources import FakeWorld, ap, resource
from tollway.control.translate import requestauthn, security
from tollway.snapshot import types

ISS = "https://auth.example.com"
KEY = Signer.rsa()
NODE = types.Node(name="payment-service-0.payments", workload="payment-service",
                  namespace="payments", service_account="payment-service",
                  labels={"app": "payment-service", "version": "v1"})


@pytest.fixture(scope="module")
def app_port() -> Iterator[int]:
    with running_app() as port:
        yield port


def ra(rule: dict[str, Any]) -> Any:
    return resource("RequestAuthentication", "jwt", "payments",
                    {"selector": {"matchLabels": {"app": "payment-service"}},
                     "jwtRules": [{"issuer": ISS, "jwks": jwks(KEY), **rule}]})


def config(app_port: int, rule: dict[str, Any], *policies: Any) -> types.ProxyConfig:
    world = FakeWorld(ra(rule), *policies)
    base = inbound_config(app_port, authz=security.authz_for(world, NODE))
    import msgspec

    return msgspec.structs.replace(base, request_authn=requestauthn.request_authn_for(world, NODE))


def exchange(app_port: int, run: Callable[[Any], Any], cfg: types.ProxyConfig,
             requests: list[dict[str, Any]]) -> list[Any]:
    async def main() -> list[Any]:
        server = await start_proxy(cfg, None)
        port = server.listener_address("inbound|8080")[1]
        try:
            return list(await asyncio.gather(*(http_request(port, **r) for r in requests)))
        finally:
            await server.close()
    return list(run(main()))


def bearer(token: str) -> dict[str, Any]:
    return {"headers": {"Authorization": f"Bearer {token}"}}


def test_no_token_passes_bad_tokens_get_401_good_ones_reach_the_app(
        app_port: int, run: Callable[[Any], Any]) -> None:
    cfg = config(app_port, {"audiences": ["shop"], "outputPayloadToHeader": "x-jwt-payload",
                            "outputClaimToHeaders": [{"header": "x-sub", "claim": "sub"}]})
    good = KEY.sign(claims(aud="shop"))
    none, ok, expired, forged, wrong_aud, query = exchange(app_port, run, cfg, [
        {}, bearer(good), bearer(KEY.sign(claims(aud="shop", ttl=-3600))),
        bearer(Signer.rsa().sign(claims(aud="shop"))), bearer(KEY.sign(claims(aud="x"))),
        {"path": f"/q?access_token={good}"}])
    assert none.status == 200
    assert ok.status == 200
    seen = json.loads(ok.body)["headers"]
    lower = {k.lower(): v for k, v in seen.items()}
    assert "authorization" not in lower  # forwardOriginalToken defaults to false
    assert lower["x-sub"] == "alice" and lower["x-jwt-payload"] == good.split(".")[1]
    for reply, reason in ((expired, b"Jwt is expired"), (forged, b"Jwt verification fails"),
                          (wrong_aud, b"Audiences in Jwt are not allowed")):
        assert reply.status == 401 and reply.body == reason
        assert 'error="invalid_token"' in reply.headers["www-authenticate"]
    assert query.status == 200


def test_forward_original_token_keeps_the_header(app_port: int,
                                                 run: Callable[[Any], Any]) -> None:
    cfg = config(app_port, {"forwardOriginalToken": True})
    token = KEY.sign(claims())
    (reply,) = exchange(app_port, run, cfg, [bearer(token)])
    lower = {k.lower(): v for k, v in json.loads(reply.body)["headers"].items()}
    assert reply.status == 200 and lower["authorization"] == f"Bearer {token}"


def test_request_principals_require_a_token_and_claims_decide(
        app_port: int, run: Callable[[Any], Any]) -> None:
    need_token = ap("need-token", {"selector": {"matchLabels": {"app": "payment-service"}},
                                   "rules": [{"from": [{"source": {"requestPrincipals":
                                                                   [f"{ISS}/*"]}}],
                                              "when": [{"key": "request.auth.claims[groups]",
                                                        "values": ["admin"]}]}]})
    cfg = config(app_port, {}, need_token)
    none, admin, dev = exchange(app_port, run, cfg, [
        {}, bearer(KEY.sign(claims(groups=["dev", "admin"]))),
        bearer(KEY.sign(claims(groups=["dev"])))])
    assert none.status == 403 and none.body == b"RBAC: access denied"
    assert admin.status == 200
    assert dev.status == 403
