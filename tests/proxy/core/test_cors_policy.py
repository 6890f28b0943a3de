"""corsPolicy: preflights answered for allowed origins, headers added, others untouched."""

from __future__ import annotations

from tests.proxy.core.core_builders import sm
from tollway.proxy.core.cors import CorsPolicy
from tollway.snapshot import types

SPEC = types.Cors(
    allow_origins=(sm("exact", "https://a.example"), sm("regex", r"https://.*\.b\.example")),
    allow_methods=("POST", "GET"),
    allow_headers=("x-token",),
    expose_headers=("x-trace",),
    max_age=86400.0,
    allow_credentials=True,
)
PRE = {"origin": "https://a.example", "access-control-request-method": "DELETE"}


def test_preflight_from_allowed_origin_is_answered_whatever_the_method() -> None:
    reply = CorsPolicy(SPEC).preflight_reply("OPTIONS", PRE)
    assert reply is not None
    h = dict(reply)
    assert h["access-control-allow-origin"] == "https://a.example"
    assert h["access-control-allow-methods"] == "POST,GET"
    assert h["access-control-allow-headers"] == "x-token"
    assert h["access-control-max-age"] == "86400"
    assert h["access-control-allow-credentials"] == "true"


def test_unmatched_or_non_preflight_is_forwarded() -> None:
    p = CorsPolicy(SPEC)
    assert p.preflight_reply("OPTIONS", {**PRE, "origin": "https://evil.example"}) is None
    assert p.preflight_reply("OPTIONS", {"origin": "https://a.example"}) is None
    assert p.preflight_reply("GET", PRE) is None


def test_actual_request_gets_origin_credentials_and_expose_headers() -> None:
    p = CorsPolicy(SPEC)
    h = dict(p.response_headers({"origin": "https://x.b.example"}))
    assert h == {"access-control-allow-origin": "https://x.b.example",
                 "access-control-allow-credentials": "true",
                 "access-control-expose-headers": "x-trace"}
    assert p.response_headers({"origin": "https://b.example"}) == ()
    assert p.response_headers({}) == ()


def test_star_origin_accepts_any() -> None:
    p = CorsPolicy(types.Cors(allow_origins=(sm("exact", "*"),)))
    assert dict(p.response_headers({"origin": "https://z"})) == {
        "access-control-allow-origin": "https://z"}
