"""Which AuthorizationPolicies a workload gets (namespace, root namespace, selector)."""

from __future__ import annotations

from tests.security.sec_resources import FakeWorld, ap, pa
from tollway.control.translate import security
from tollway.snapshot import types

NODE = types.Node(name="p-0", workload="payment-service", namespace="payments",
                  service_account="payment-service", labels={"app": "payment-service"})
ALLOW_ALL = {"rules": [{}]}


def names(*resources: object, node: types.Node = NODE) -> list[str]:
    authz = security.authz_for(FakeWorld(*resources), node)  # type: ignore[arg-type]
    return [p.name for p in authz.policies]


def test_authz_scope_namespace_and_root_namespace_apply() -> None:
    got = names(ap("here", ALLOW_ALL), ap("mesh", ALLOW_ALL, namespace="istio-system"),
                ap("there", ALLOW_ALL, namespace="web"))
    assert got == ["istio-system/mesh", "payments/here"]


def test_authz_scope_selector_must_match() -> None:
    sel = {"selector": {"matchLabels": {"app": "payment-service"}}, **ALLOW_ALL}
    other = {"selector": {"matchLabels": {"app": "ledger"}}, **ALLOW_ALL}
    assert names(ap("mine", sel), ap("theirs", other)) == ["payments/mine"]


def test_authz_scope_root_namespace_selector_applies_in_every_namespace() -> None:
    sel = {"selector": {"matchLabels": {"app": "payment-service"}}, **ALLOW_ALL}
    assert names(ap("m", sel, namespace="istio-system")) == ["istio-system/m"]


def test_authz_scope_dry_run_and_target_refs_are_not_enforced_on_sidecars() -> None:
    dry = ap("dry", ALLOW_ALL, annotations={"istio.io/dry-run": "true"})
    refs = ap("gw", {"targetRefs": [{"kind": "Gateway", "name": "x"}], **ALLOW_ALL})
    assert names(dry, refs) == []


def test_authz_scope_translates_fields() -> None:
    spec = {"action": "DENY", "rules": [{
        "from": [{"source": {"principals": ["a"], "notNamespaces": ["b"],
                             "serviceAccounts": ["c"]}}],
        "to": [{"operation": {"methods": ["GET"], "notPaths": ["/x*"]}}],
        "when": [{"key": "request.headers[x-a]", "notValues": ["1"]}],
    }]}
    (policy,) = security.authz_for(FakeWorld(ap("d", spec)), NODE).policies
    assert policy.action == "DENY"
    rule = policy.rules[0]
    src = rule.sources[0]
    assert src.principals == types.StringSet(values=("a", "*/ns/payments/sa/c"))
    assert src.namespaces == types.StringSet(not_values=("b",))
    assert rule.operations[0].paths == types.StringSet(not_values=("/x*",))
    assert rule.conditions == (types.AuthzCondition(key="request.headers[x-a]",
                                                    not_values=("1",)),)


def test_upstream_tls_auto_mtls_verifies_endpoint_identities() -> None:
    ep = types.Endpoint(address="127.0.0.1", port=8080, namespace="payments",
                        service_account="payment-service", labels={"app": "payment-service"})
    tls = security.upstream_tls_for(FakeWorld(), None, [ep])
    assert tls.mode == "ISTIO_MUTUAL"
    assert tls.expected_identities == ("spiffe://cluster.local/ns/payments/sa/payment-service",)


def test_upstream_tls_auto_mtls_plaintext_to_disabled_server() -> None:
    ep = types.Endpoint(address="127.0.0.1", port=8080, namespace="payments")
    world = FakeWorld(pa("off", {"mtls": {"mode": "DISABLE"}}))
    assert security.upstream_tls_for(world, None, [ep]).mode == "DISABLE"


def test_upstream_tls_destination_rule_mode_wins() -> None:
    ep = types.Endpoint(address="127.0.0.1", port=8080)
    tls = security.upstream_tls_for(FakeWorld(), {"mode": "SIMPLE", "sni": "a.b"}, [ep])
    assert (tls.mode, tls.sni, tls.expected_identities) == ("SIMPLE", "a.b", ())
