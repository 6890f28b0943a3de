"""AuthorizationPolicy `source.trustDomains` / `notTrustDomains`, translated and evaluated."""

from __future__ import annotations

from tests.security.sec_resources import FakeWorld, ap
from tollway.control.translate import security
from tollway.proxy.core import authz
from tollway.snapshot import types

NODE = types.Node(name="p-0.payments", workload="p", namespace="payments",
                  labels={"app": "p"})


def _decide(source: dict[str, list[str]], principal: str | None) -> bool:
    world = FakeWorld(ap("td", {"rules": [{"from": [{"source": source}]}]}))
    compiled = authz.compile_authz(security.authz_for(world, NODE))
    return authz.evaluate(compiled, authz.Request(principal=principal)).allowed


def test_trust_domains_match_the_peer_principal_prefix() -> None:
    assert _decide({"trustDomains": ["cluster.local"]}, "cluster.local/ns/a/sa/b")
    assert not _decide({"trustDomains": ["cluster.local"]}, "other.td/ns/a/sa/b")
    assert not _decide({"trustDomains": ["cluster.local"]}, None)  # plaintext: no domain


def test_trust_domains_and_with_the_other_source_fields() -> None:
    src = {"trustDomains": ["cluster.local"], "namespaces": ["shop"]}
    assert _decide(src, "cluster.local/ns/shop/sa/b")
    assert not _decide(src, "cluster.local/ns/other/sa/b")
    assert _decide({"notTrustDomains": ["evil.td"]}, "cluster.local/ns/a/sa/b")
    assert not _decide({"notTrustDomains": ["evil.td"]}, "evil.td/ns/a/sa/b")


def test_dry_run_takes_go_booleans_as_istio_does() -> None:
    for value, enforced in (("true", False), ("1", False), ("T", False), ("false", True),
                            ("0", True)):
        world = FakeWorld(ap("dry", {"action": "DENY", "rules": [{}]},
                             annotations={"istio.io/dry-run": value}))
        assert bool(security.authz_for(world, NODE).policies) is enforced, value
