"""The authorization table through a live sidecar, with real mTLS client certificates.

Same cases as test_authz_table.py: each policy set is a snapshot applied to a real
ProxyServer in front of the demo app (PERMISSIVE, so plaintext callers reach the RBAC
filter too); each caller connects with a certificate for its principal, from its source
IP. Allowed requests reach the app (200); denied ones get 403 `RBAC: access denied`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.security.authz_cases import CASES, POLICY_SETS, WORKLOAD_LABELS, Case
from tests.security.live_mesh import (
    http_request,
    inbound_config,
    running_app,
    start_proxy,
)
from tests.security.sec_resources import FakeWorld, Issue, ap
from tollway.control.translate import security
from tollway.proxy import tls
from tollway.snapshot import types

NODE = types.Node(name="payment-service-0.payments", workload="payment-service",
                  namespace="payments", service_account="payment-service",
                  labels=WORKLOAD_LABELS)


@pytest.fixture(scope="module")
def app_port() -> Iterator[int]:
    with running_app() as port:
        yield port


async def judge(port: int, case: Case, ctx_for: Callable[[str | None], Any]) -> str | None:
    reply = await http_request(port, ctx=ctx_for(case.principal), method=case.method,
                               path=case.path, host=case.host, headers=case.headers,
                               source_ip=case.source_ip)
    if reply is None:
        return f"{case.id}: connection closed without a reply"
    want = 200 if case.allowed else 403
    if reply.status != want:
        return f"{case.id}: status {reply.status}, want {want}"
    if not case.allowed and reply.body != b"RBAC: access denied":
        return f"{case.id}: body {reply.body!r}"
    return None


@pytest.mark.parametrize("policy_set", sorted(POLICY_SETS))
def test_authz_live_table(policy_set: str, app_port: int, issue: Issue,
                          run: Callable[[Any], Any]) -> None:
    cases = [c for c in CASES if c.policies == policy_set]
    world = FakeWorld(*(ap(n, s) for n, s in POLICY_SETS[policy_set]))
    config = inbound_config(app_port, authz=security.authz_for(world, NODE))
    contexts: dict[str, Any] = {}

    def ctx_for(principal: str | None) -> Any:
        if principal is None:
            return None
        if principal not in contexts:
            contexts[principal] = tls.client_mtls_context(issue("spiffe://" + principal))
        return contexts[principal]

    async def main() -> list[str]:
        server = await start_proxy(config, issue("spiffe://cluster.local/ns/payments/sa/"
                                                 "payment-service"))
        port = server.listener_address("inbound|8080")[1]
        try:
            results = await asyncio.gather(*(judge(port, c, ctx_for) for c in cases))
        finally:
            await server.close()
        return [r for r in results if r is not None]

    failures = run(main())
    assert not failures, "\n".join(failures)
