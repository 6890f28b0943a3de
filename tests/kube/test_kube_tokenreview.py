"""TokenReview answers -> the only identity a caller gets (pure; e2e in the cluster test)."""

from __future__ import annotations

from typing import Any

import pytest

from tollway.control import auth
from tollway.kube.tokenreview import POD_NAME, POD_UID, looks_like_jwt, principal_from_review


def review(username: str = "system:serviceaccount:shop:cart", *, audiences: Any = ("tollway",),
           authenticated: bool = True, pod: str | None = None) -> dict[str, Any]:
    extra = {POD_NAME: [pod], POD_UID: ["0b6c"]} if pod else {}
    return {"authenticated": authenticated, "audiences": list(audiences),
            "user": {"username": username, "uid": "u", "extra": extra}}


def test_a_service_account_token_gives_its_namespace_and_account() -> None:
    p = principal_from_review(review())
    assert (p.namespace, p.service_account, p.node, p.admin) == ("shop", "cart", "", False)
    p.check_node("anything.shop", "shop", "cart")
    with pytest.raises(auth.Forbidden):
        p.check_node("x.shop", "shop", "payments")


def test_a_pod_bound_token_acts_only_as_that_pod() -> None:
    p = principal_from_review(review(pod="cart-7d9-abcde"))
    assert p.node == "cart-7d9-abcde.shop"
    p.check_node("cart-7d9-abcde.shop", "shop", "cart")
    with pytest.raises(auth.Forbidden):
        p.check_node("cart-7d9-zzzzz.shop", "shop", "cart")


@pytest.mark.parametrize("status", [
    review(authenticated=False),
    review(audiences=("https://kubernetes.default.svc",)),
    review(audiences=()),
    review("system:admin"),
    review("system:serviceaccount:shop"),
    review("system:serviceaccount:Shop:cart"),
    {"authenticated": True},
    {},
])
def test_anything_else_is_refused(status: dict[str, Any]) -> None:
    with pytest.raises(auth.AuthError):
        principal_from_review(status)


def test_only_jwts_are_sent_for_review() -> None:
    assert looks_like_jwt("aaa.bbb.ccc")
    assert not looks_like_jwt("tw1.claims.sig") and not looks_like_jwt("opaque")
