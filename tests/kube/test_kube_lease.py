"""Leader election decisions and the CA Secret's shape (pure)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollway.control import ca
from tollway.kube import casecret
from tollway.kube.lease import decide

T0 = dt.datetime(2026, 12, 4, 23, 0, tzinfo=dt.UTC)


def held(by: str, ago: float, transitions: int = 0) -> dict[str, object]:
    at = (T0 - dt.timedelta(seconds=ago)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"holderIdentity": by, "renewTime": at, "acquireTime": at,
            "leaseDurationSeconds": 15, "leaseTransitions": transitions}


def test_nobody_holds_it_so_take_it() -> None:
    d = decide(None, "a", T0)
    assert d.action == "acquire" and d.spec["holderIdentity"] == "a"
    assert d.spec["leaseTransitions"] == 0


def test_a_live_holder_is_left_alone_and_ours_is_renewed() -> None:
    assert decide(held("b", 14), "a", T0).action == "wait"
    d = decide(held("a", 14), "a", T0)
    assert d.action == "renew" and d.spec["renewTime"].startswith("2026-12-04T23:00:00")


def test_an_expired_or_released_holder_is_replaced_and_counted() -> None:
    d = decide(held("b", 16, transitions=3), "a", T0)
    assert d.action == "acquire" and d.spec["leaseTransitions"] == 4
    released = {**held("b", 1), "holderIdentity": ""}
    assert decide(released, "a", T0).action == "acquire"


@given(st.floats(min_value=0, max_value=100), st.sampled_from(["a", "b", ""]))
def test_never_two_holders_while_the_lease_is_live(ago: float, holder: str) -> None:
    """Whoever holds an unexpired lease, no other replica decides to take it."""
    d = decide(held(holder, ago), "c", T0)
    if holder and ago <= 15:
        assert d.action == "wait"
    else:
        assert d.action == "acquire"


def test_the_ca_secret_round_trips() -> None:
    authority = ca.CertificateAuthority.create()
    body = casecret.secret_body("tollway-ca", "tollway-system", authority)
    again = casecret.authority_from(body, "cluster.local")
    assert again.root_pem == authority.root_pem
    with pytest.raises(casecret.CASecretError):
        casecret.authority_from({"data": {}}, "cluster.local")


def test_revocations_ride_in_the_ca_secret_and_only_grow() -> None:
    authority = ca.CertificateAuthority.create()
    body = casecret.secret_body("tollway-ca", "tollway-system", authority)
    body["metadata"]["resourceVersion"] = "41"
    assert casecret.revoked_in(body) == set()
    one = casecret.with_revoked(body, {0xABC})
    assert one is not None and casecret.revoked_in(one) == {0xABC}
    assert one["metadata"]["resourceVersion"] == "41"  # the PUT is conditional on it
    assert one["data"][ca.ROOT_KEY] == body["data"][ca.ROOT_KEY]  # the root untouched
    assert casecret.with_revoked(one, {0xABC}) is None  # nothing new: no write
    two = casecret.with_revoked(one, {0x1F})
    assert two is not None and casecret.revoked_in(two) == {0xABC, 0x1F}  # a union
    again = casecret.authority_from(two, "cluster.local")  # what a (re)starting replica gets
    assert again.revoked_serials() == ("1f", "abc")


@given(st.lists(st.sets(st.integers(1, 2**159)), max_size=6))
def test_any_order_of_merges_keeps_every_revocation(batches: list[set[int]]) -> None:
    body = casecret.secret_body("tollway-ca", "ns", ca.CertificateAuthority.create())
    for batch in batches:
        body = casecret.with_revoked(body, batch) or body
    assert casecret.revoked_in(body) == set().union(*batches)


def test_a_garbled_line_in_the_secret_is_skipped_not_fatal() -> None:
    import base64

    body = casecret.secret_body("tollway-ca", "ns", ca.CertificateAuthority.create())
    body["data"][ca.REVOKED] = base64.b64encode(b"abc\nnot-hex\n12\n").decode()
    assert casecret.revoked_in(body) == {0xABC, 0x12}
