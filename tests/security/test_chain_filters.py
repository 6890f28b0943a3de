"""chain/authz.py and chain/authn.XfccFilter on a stand-in Exchange (no sockets)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from tests.security.authz_cases import CHECKOUT, SEED_10
from tests.security.sec_resources import FakeWorld, ap
from tollway.control.translate import security
from tollway.proxy.chain import authn, authz
from tollway.snapshot import types

NODE = types.Node(name="p", namespace="payments", service_account="payment-service",
                  labels={"app": "payment-service"})


def exchange(principal: str | None, method: str = "GET", path: str = "/api/v1/payments",
             kind: str = "inbound", headers: dict[str, str] | None = None) -> Any:
    hdrs = dict(headers or {})
    return SimpleNamespace(method=method, path=path, authority="payment-service:8080",
                           headers=hdrs,
                           raw_headers=[(k.encode(), v.encode()) for k, v in hdrs.items()],
                           principal=principal, source_ip="127.0.0.1", listener_kind=kind,
                           listener_port=15006, attrs={})


def seed_filter() -> authz.AuthzFilter:
    f = authz.build(security.authz_for(FakeWorld(ap("seed", SEED_10)), NODE), 8080)
    assert f is not None
    return f


def test_authz_filter_answers_403_rbac_access_denied() -> None:
    reply = seed_filter().on_request(exchange("cluster.local/ns/web/sa/frontend"))
    assert reply is not None
    assert (reply.status, reply.body) == (403, "RBAC: access denied")


def test_authz_filter_accepts_spiffe_form_principal_and_records_decision() -> None:
    ex = exchange("spiffe://" + CHECKOUT)
    assert seed_filter().on_request(ex) is None
    assert ex.attrs["authz"].policy == "payments/seed"


def test_authz_filter_skips_outbound_traffic() -> None:
    assert seed_filter().on_request(exchange(None, kind="outbound")) is None


def test_authz_build_without_policies_is_no_filter() -> None:
    assert authz.build(types.Authz()) is None


def test_xfcc_set_from_verified_peer_and_spoofed_value_removed() -> None:
    f = authn.build_xfcc(NODE)
    ex = exchange(CHECKOUT, headers={"x-forwarded-client-cert": "URI=spiffe://evil"})
    ex.attrs["peer_cert_hash"] = "abc"
    assert f.on_request(ex) is None
    want = ('By=spiffe://cluster.local/ns/payments/sa/payment-service;Hash=abc;Subject="";'
            f"URI=spiffe://{CHECKOUT}")
    assert ex.headers["x-forwarded-client-cert"] == want
    assert [v for k, v in ex.raw_headers if k == b"x-forwarded-client-cert"] == [want.encode()]


def test_xfcc_removed_on_plaintext() -> None:
    ex = exchange(None, headers={"X-Forwarded-Client-Cert": "URI=spiffe://evil"})
    ex.headers = {"x-forwarded-client-cert": "URI=spiffe://evil"}
    authn.build_xfcc(NODE).on_request(ex)
    assert "x-forwarded-client-cert" not in ex.headers
    assert ex.raw_headers == []
