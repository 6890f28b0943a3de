"""Istio's evaluation order as a property over random policy combinations and requests."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.security.authz_cases import ADMIN, CHECKOUT, FRONTEND, POLICY_SETS
from tollway.control.translate import security
from tollway.proxy.core import authz
from tollway.snapshot import types

SETS = sorted(POLICY_SETS)
REQUESTS = st.builds(
    authz.Request,
    method=st.sampled_from(["GET", "POST", "DELETE", "PUT"]),
    path=st.sampled_from(["/", "/admin", "/api/v1/payments", "/x", "/a.png", "/private/1"]),
    principal=st.sampled_from([None, CHECKOUT, FRONTEND, ADMIN]),
    port=st.sampled_from([8080, 9090]),
    headers=st.sampled_from([{}, {"x-token": "secret"}]),
)


def policies(names: list[str], action: str | None = None) -> list[types.AuthzPolicy]:
    out = []
    for set_name in names:
        for name, spec in POLICY_SETS[set_name]:
            if spec.get("selector") or spec.get("action") == "CUSTOM":
                continue
            rules = tuple(security.rule_from_spec(r, "payments") for r in spec.get("rules", ()))
            out.append(types.AuthzPolicy(name=f"{set_name}/{name}",
                                         action=action or spec.get("action", "ALLOW"),  # type: ignore[arg-type]
                                         rules=rules))
    return out


def matches(p: types.AuthzPolicy, req: authz.Request) -> bool:
    return any(authz.compile_rule(r)(req) for r in p.rules)


@settings(max_examples=200, deadline=None)
@given(allow=st.lists(st.sampled_from(SETS), max_size=3),
       deny=st.lists(st.sampled_from(SETS), max_size=2), req=REQUESTS)
def test_deny_first_then_allow_with_default_deny(allow: list[str], deny: list[str],
                                                 req: authz.Request) -> None:
    allows = policies(allow, "ALLOW")
    denies = policies(deny, "DENY")
    decision = authz.evaluate(authz.compile_authz(types.Authz(policies=(*allows, *denies))), req)
    denied_by_deny = any(matches(p, req) for p in denies)
    allowed_by_allow = not allows or any(matches(p, req) for p in allows)
    assert decision.allowed is (not denied_by_deny and allowed_by_allow)
    if denied_by_deny:
        assert decision.action == "DENY"


@settings(max_examples=100, deadline=None)
@given(sets=st.lists(st.sampled_from(SETS), max_size=3), req=REQUESTS)
def test_audit_policies_never_change_the_decision(sets: list[str], req: authz.Request) -> None:
    base = policies(sets)
    audits = policies(sets, "AUDIT")
    plain = authz.evaluate(authz.compile_authz(types.Authz(policies=tuple(base))), req)
    marked = authz.evaluate(authz.compile_authz(types.Authz(policies=(*base, *audits))), req)
    assert (plain.allowed, plain.policy, plain.rule) == (marked.allowed, marked.policy,
                                                         marked.rule)
