"""The authorization table, judged by the pure evaluator after real translation.

Policies go the way users' manifests do: AuthorizationPolicy specs → `security.authz_for`
(selection by namespace and selector) → `authz.compile_authz` → `authz.evaluate`.
"""

from __future__ import annotations

import pytest

from tests.security.authz_cases import CASES, POLICY_SETS, PORT, WORKLOAD_LABELS, Case
from tests.security.sec_resources import FakeWorld, ap
from tollway.control.translate import security
from tollway.proxy.core import authz
from tollway.proxy.core.pathnorm import PathNormalizer
from tollway.snapshot import types

NODE = types.Node(name="payment-service-0.payments", workload="payment-service",
                  namespace="payments", service_account="payment-service",
                  labels=WORKLOAD_LABELS)


def compiled_for(policy_set: str) -> authz.CompiledAuthz:
    world = FakeWorld(*(ap(name, spec) for name, spec in POLICY_SETS[policy_set]))
    return authz.compile_authz(security.authz_for(world, NODE))


BASE = PathNormalizer("BASE")  # what the listener does to every path first (default mode)


def request_of(case: Case) -> authz.Request:
    path = BASE.normalize(case.path)
    assert path is not None
    return authz.Request(method=case.method, path=path, host=case.host, port=PORT,
                         principal=case.principal, source_ip=case.source_ip,
                         headers=case.headers)


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 80
    assert {c.policies for c in CASES} == set(POLICY_SETS)


def _ids() -> list[str]:
    return [f"{i:03d}-{c.id}" for i, c in enumerate(CASES)]


@pytest.mark.parametrize("case", CASES, ids=_ids())
def test_authz_table_decision(case: Case) -> None:
    decision = authz.evaluate(compiled_for(case.policies), request_of(case))
    assert decision.allowed is case.allowed, decision.reason
    if case.policy is not None:
        assert decision.policy == case.policy, decision.reason
    if case.rule is not None:
        assert decision.rule == case.rule, decision.reason
    assert bool(decision.audited) is case.audited
