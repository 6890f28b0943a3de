"""Tokens, the Host rule and the endpoint-join rule: the pure parts of attestation."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollway.control import auth, registry
from tollway.control.guard import Guard, split_host
from tollway.control.registry import Replica

NOW = 1_800_000_000.0
SIGNER = auth.TokenSigner(b"k" * 32)


def test_a_workload_token_says_who_and_nothing_more() -> None:
    token = SIGNER.workload("payments", "payment-service", NOW, node="pay-0.payments")
    p = SIGNER.verify(token, NOW)
    assert p == auth.Principal(namespace="payments", service_account="payment-service",
                               node="pay-0.payments")
    p.check_node("pay-0.payments", "payments", "payment-service")
    with pytest.raises(auth.Forbidden):
        p.check_node("pay-1.payments", "payments", "payment-service")  # bound to one node
    with pytest.raises(auth.Forbidden):
        p.check_node("pay-0.payments", "payments", "other")
    assert not p.admin and SIGNER.verify(SIGNER.admin(NOW), NOW).admin


def _claims(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))


def _forge(token: str, **changes: Any) -> str:
    claims = {**_claims(token), **changes}
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    prefix, _, sig = token.split(".")
    return f"{prefix}.{body}.{sig}"


@pytest.mark.parametrize("forged", [
    _forge(SIGNER.workload("checkout", "checkout-service", NOW), ns="payments"),
    _forge(SIGNER.workload("checkout", "checkout-service", NOW), kind="admin"),
    auth.TokenSigner(b"x" * 32).admin(NOW),  # another control plane's key
    "tw1.e30.AAAA", "not-a-token", "tw1..", "",
])
def test_forged_or_foreign_tokens_are_refused(forged: str) -> None:
    with pytest.raises(auth.AuthError):
        SIGNER.verify(forged, NOW)


def test_expired_tokens_are_refused() -> None:
    token = SIGNER.workload("a", "b", NOW, ttl=60)
    assert SIGNER.verify(token, NOW + 59).namespace == "a"
    with pytest.raises(auth.AuthError, match="expired"):
        SIGNER.verify(token, NOW + 60)


@given(st.text(max_size=40))
def test_names_outside_kubernetes_rules_are_refused(name: str) -> None:
    ok = bool(name) and set(name) <= auth.NAME_CHARS
    if ok:
        assert auth.check_name("namespace", name) == name
    else:
        with pytest.raises(ValueError):
            SIGNER.workload(name, "sa", NOW)


def test_chain_verifier_tries_each() -> None:
    other = auth.TokenSigner(b"o" * 32)
    chain = auth.ChainVerifier([other, SIGNER])
    assert chain.verify(SIGNER.admin(NOW), NOW).admin
    with pytest.raises(auth.AuthError):
        chain.verify("tw1.e30.AAAA", NOW)


def test_key_and_admin_token_files_are_private_and_kept(tmp_path: Path) -> None:
    key = auth.load_or_create_key(tmp_path)
    assert auth.load_or_create_key(tmp_path) == key
    signer = auth.TokenSigner(key)
    admin = auth.admin_token(tmp_path, signer, NOW)
    assert auth.admin_token(tmp_path, signer, NOW) == admin  # a restart keeps it
    for path in (tmp_path / auth.KEY_FILE, tmp_path / auth.ADMIN_TOKEN_FILE):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "auth").stat().st_mode) == 0o700


@pytest.mark.parametrize(("host", "local", "ok"), [
    ("127.0.0.1:15010", ("127.0.0.1", 15010), True),
    ("localhost:15010", ("127.0.0.1", 15010), True),
    ("LOCALHOST:15010", ("127.0.0.1", 15010), True),
    ("[::1]:15010", ("::1", 15010), True),
    ("127.0.0.1", ("127.0.0.1", 15010), True),
    ("127.0.0.1:15011", ("127.0.0.1", 15010), False),
    ("evil.example:15010", ("127.0.0.1", 15010), False),
    ("127.0.0.1.nip.io:15010", ("127.0.0.1", 15010), False),
    ("localhost:15010", ("10.0.0.5", 15010), False),  # not loopback: only its address
    ("10.0.0.5:15010", ("10.0.0.5", 15010), True),
    ("", ("127.0.0.1", 15010), False),
])
def test_host_must_name_the_address_served(host: str, local: tuple[str, int], ok: bool
                                           ) -> None:
    assert Guard(SIGNER).host_allowed(host, local) is ok


def test_split_host() -> None:
    assert split_host("[::1]:80") == ("::1", 80)
    assert split_host("::1") == ("::1", None)
    assert split_host("a.b:x") == ("a.b", None)


def _resource(kind: str, name: str, ns: str, spec: dict[str, Any]) -> Any:
    from tollway.config.resource import Resource, SourceRef

    return Resource(api_version="v1", kind=kind, name=name, namespace=ns, spec=spec,
                    raw={"kind": kind, "metadata": {"name": name}, "spec": spec},
                    source=SourceRef("t.yaml", 0, 1))


def _replica(name: str, sa: str, app: str) -> Replica:
    return Replica(workload=name, kind="WorkloadEntry", namespace="payments",
                   labels={"app": app}, service_account=sa, address="127.0.0.1",
                   port=1, app_port=2, name=f"{name}.payments")


def test_joining_a_service_reports_who_runs_it() -> None:
    from tollway.config.resource import ResourceSet

    deploy = _resource("Deployment", "payment-service", "payments", {"template": {
        "metadata": {"labels": {"app": "payment-service"}},
        "spec": {"serviceAccountName": "payment-service", "containers": []}}})
    resources = ResourceSet([deploy])
    # no replica of the Deployment is up: the config still says who runs it
    joined = registry.joined_services(resources, [],
                                      _replica("intruder", "intruder", "payment-service"))
    assert joined == {"payment-service.payments.svc.cluster.local": {"payment-service"}}
    # a new app of its own: nobody else runs it
    assert registry.joined_services(resources, [], _replica("vm", "vm", "vm-api")) == {
        "vm-api.payments.svc.cluster.local": set()}
