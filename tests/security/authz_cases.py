"""The authorization table: policy sets (as users write them) and requests with verdicts.

Shared by the pure test (core evaluation) and the live test (through a real sidecar with
real mTLS client certificates), so both judge exactly the same cases. The workload under
test is `payment-service` in namespace `payments`, port 8080.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CHECKOUT = "cluster.local/ns/checkout/sa/checkout-service"
FRONTEND = "cluster.local/ns/web/sa/frontend"
ADMIN = "cluster.local/ns/ops/sa/admin"
PROD = "cluster.local/ns/shop-prod/sa/cart"
TEAM = "cluster.local/ns/team-red/sa/api"
AZ = "cluster.local/ns/abcz/sa/x"
WORKLOAD_LABELS = {"app": "payment-service", "version": "v1"}
PORT = 8080

SEED_10 = {
    "selector": {"matchLabels": {"app": "payment-service"}},
    "rules": [{
        "from": [{"source": {"principals": [CHECKOUT]}}],
        "to": [{"operation": {"methods": ["GET", "POST"], "paths": ["/api/v1/payments*"]}}],
    }],
}

# Each policy set: list of (name, spec).
POLICY_SETS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "none": [],
    "seed10": [("payment-service-authz", SEED_10)],
    "paths": [("paths", {"rules": [
        {"to": [{"operation": {"paths": ["/exact"]}}]},
        {"to": [{"operation": {"paths": ["/prefix/*"]}}]},
        {"to": [{"operation": {"paths": ["*.png"]}}]},
        {"to": [{"operation": {"paths": ["/tpl/{*}/x", "/deep/{**}/cart"]}}]},
    ]})],
    "principals": [("who", {"rules": [
        {"from": [{"source": {"principals": ["*"]}}], "to": [{"operation": {"paths": ["/authn"]}}]},
        {"from": [{"source": {"notPrincipals": ["*"]}}],
         "to": [{"operation": {"paths": ["/plain"]}}]},
        {"from": [{"source": {"principals": ["cluster.local/ns/web/*"]}}],
         "to": [{"operation": {"paths": ["/web"]}}]},
        {"from": [{"source": {"principals": ["*/sa/admin"]}}],
         "to": [{"operation": {"paths": ["/admin"]}}]},
        {"from": [{"source": {"serviceAccounts": ["checkout/checkout-service"]}}],
         "to": [{"operation": {"paths": ["/sa"]}}]},
    ]})],
    "namespaces": [("ns", {"rules": [
        {"from": [{"source": {"namespaces": ["checkout"]}}]},
        {"from": [{"source": {"namespaces": ["*-prod"]}}]},
        {"from": [{"source": {"namespaces": ["team-*"]}}]},
        {"from": [{"source": {"namespaces": ["a*z"]}}]},
    ]})],
    "not_fields": [("nots", {"rules": [
        {"from": [{"source": {"principals": ["*"], "notNamespaces": ["web"]}}],
         "to": [{"operation": {"notMethods": ["DELETE"], "notPaths": ["/private*"]}}]},
    ]})],
    "ops": [("ops", {"rules": [
        {"to": [{"operation": {"hosts": ["pay.example.com", "*.internal"], "methods": ["GET"]}}]},
        {"to": [{"operation": {"ports": ["8080"], "methods": ["PUT"]}}]},
        {"to": [{"operation": {"notPorts": ["8080"], "methods": ["PATCH"]}}]},
        {"to": [{"operation": {"methods": ["OPTIONS"]}}, {"operation": {"paths": ["/either"]}}]},
    ]})],
    "ips": [("ips", {"rules": [
        {"from": [{"source": {"ipBlocks": ["127.0.0.2/32", "10.0.0.0/8"]}}]},
        {"from": [{"source": {"notIpBlocks": ["127.0.0.0/8"]}}]},
    ]})],
    "when": [("when", {"rules": [
        {"to": [{"operation": {"paths": ["/h"]}}],
         "when": [{"key": "request.headers[x-token]", "values": ["secret", "tok-*"]}]},
        {"to": [{"operation": {"paths": ["/nh"]}}],
         "when": [{"key": "request.headers[x-block]", "notValues": ["*"]}]},
        {"to": [{"operation": {"paths": ["/ns"]}}],
         "when": [{"key": "source.namespace", "values": ["checkout"]}]},
        {"to": [{"operation": {"paths": ["/p"]}}],
         "when": [{"key": "source.principal", "values": [ADMIN]}]},
        {"to": [{"operation": {"paths": ["/port"]}}],
         "when": [{"key": "destination.port", "values": ["8080"]}]},
        {"to": [{"operation": {"paths": ["/ip"]}}],
         "when": [{"key": "source.ip", "values": ["127.0.0.2"]}]},
        {"to": [{"operation": {"paths": ["/both"]}}],
         "when": [{"key": "request.headers[x-a]", "values": ["1"]},
                  {"key": "request.headers[x-b]", "values": ["2"]}]},
    ]})],
    "deny_over_allow": [
        ("allow-all", {"rules": [{}]}),
        ("deny-admin", {"action": "DENY", "rules": [
            {"to": [{"operation": {"paths": ["/admin*"]}}]},
            {"from": [{"source": {"principals": [FRONTEND]}}],
             "to": [{"operation": {"methods": ["DELETE"]}}]},
        ]}),
    ],
    "audit": [
        ("audit-all", {"action": "AUDIT", "rules": [{"to": [{"operation": {"paths": ["/a*"]}}]}]}),
    ],
    "audit_allow": [
        ("audit-all", {"action": "AUDIT", "rules": [{}]}),
        ("only-x", {"rules": [{"to": [{"operation": {"paths": ["/x"]}}]}]}),
    ],
    "empty": [("allow-nothing", {})],
    "empty_plus": [
        ("allow-nothing", {}),
        ("allow-get", {"rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}),
    ],
    "allow_all": [("allow-all", {"rules": [{}]})],
    "deny_all": [("deny-all", {"action": "DENY", "rules": [{}]})],
    "custom_only": [("ext", {"action": "CUSTOM", "provider": {"name": "x"}, "rules": [{}]})],
    "other_workload": [("other", {"selector": {"matchLabels": {"app": "ledger"}}})],
}


@dataclass(frozen=True)
class Case:
    policies: str
    allowed: bool
    principal: str | None = CHECKOUT
    method: str = "GET"
    path: str = "/"
    host: str = "payment-service.payments.svc.cluster.local"
    headers: dict[str, str] = field(default_factory=dict)
    source_ip: str = "127.0.0.1"
    policy: str | None = None  # the deciding policy ("payments/NAME"), checked when given
    rule: int | None = None
    audited: bool = False

    @property
    def id(self) -> str:
        who = (self.principal or "plaintext").rsplit("/", 1)[-1]
        verdict = "allow" if self.allowed else "deny"
        return f"{self.policies}-{self.method}-{self.path}-{who}-{verdict}"


def _p(name: str) -> str:
    return f"payments/{name}"


CASES: list[Case] = [
    # no policy at all: allowed
    Case("none", True, path="/anything"),
    Case("none", True, principal=None, method="DELETE"),
    # seed 10: only checkout-service, GET/POST, /api/v1/payments*
    Case("seed10", True, path="/api/v1/payments", policy=_p("payment-service-authz"), rule=0),
    Case("seed10", True, method="POST", path="/api/v1/payments/42"),
    Case("seed10", True, path="/api/v1/paymentsXYZ"),
    Case("seed10", True, path="/api/v1/payments?card=1"),
    Case("seed10", True, path="/api/v1/../v1/payments/1"),
    Case("seed10", False, path="/api/v1/payments/../../admin"),
    Case("seed10", False, method="DELETE", path="/api/v1/payments"),
    Case("seed10", False, method="PUT", path="/api/v1/payments/1"),
    Case("seed10", False, path="/api/v2/payments"),
    Case("seed10", False, path="/API/v1/payments"),
    Case("seed10", False, path="/"),
    Case("seed10", False, principal=FRONTEND, path="/api/v1/payments"),
    Case("seed10", False, principal=None, path="/api/v1/payments"),
    Case("seed10", False, principal=CHECKOUT + "-2", path="/api/v1/payments"),
    Case("seed10", False, principal="cluster.local/ns/other/sa/checkout-service",
         path="/api/v1/payments"),
    # path forms: exact, prefix, suffix, templates
    Case("paths", True, path="/exact", policy=_p("paths"), rule=0),
    Case("paths", False, path="/exact/"),
    Case("paths", False, path="/exactly"),
    Case("paths", True, path="/prefix/a/b", rule=1),
    Case("paths", True, path="/prefix/", rule=1),
    Case("paths", False, path="/prefix"),
    Case("paths", True, path="/img/logo.png", rule=2),
    Case("paths", False, path="/img/logo.png.gz"),
    Case("paths", True, path="/tpl/abc/x", rule=3),
    Case("paths", False, path="/tpl/a/b/x"),
    Case("paths", True, path="/deep/a/b/c/cart", rule=3),
    Case("paths", False, path="/deep/cart"),
    # principals: presence, notPrincipals * (plaintext), prefix, suffix, serviceAccounts
    Case("principals", True, path="/authn", rule=0),
    Case("principals", False, principal=None, path="/authn"),
    Case("principals", True, principal=None, path="/plain", rule=1),
    Case("principals", False, path="/plain"),
    Case("principals", True, principal=FRONTEND, path="/web", rule=2),
    Case("principals", False, path="/web"),
    Case("principals", True, principal=ADMIN, path="/admin", rule=3),
    Case("principals", False, principal=FRONTEND, path="/admin"),
    Case("principals", True, path="/sa", rule=4),
    Case("principals", False, principal=FRONTEND, path="/sa"),
    # namespaces: exact, suffix, prefix, inner wildcard
    Case("namespaces", True, rule=0),
    Case("namespaces", True, principal=PROD, rule=1),
    Case("namespaces", True, principal=TEAM, rule=2),
    Case("namespaces", True, principal=AZ, rule=3),
    Case("namespaces", False, principal=FRONTEND),
    Case("namespaces", False, principal=None),
    # not-fields
    Case("not_fields", True, path="/public"),
    Case("not_fields", False, method="DELETE", path="/public"),
    Case("not_fields", False, path="/private/x"),
    Case("not_fields", False, principal=FRONTEND, path="/public"),
    Case("not_fields", False, principal=None, path="/public"),
    Case("not_fields", True, principal=ADMIN, method="POST", path="/p"),
    # operations: hosts (case-insensitive, suffix), ports, notPorts, OR of operations
    Case("ops", True, host="pay.example.com", rule=0),
    Case("ops", True, host="PAY.Example.COM", rule=0),
    Case("ops", True, host="ledger.internal", rule=0),
    Case("ops", False, host="pay.example.org"),
    Case("ops", False, host="pay.example.com", method="POST"),
    Case("ops", True, method="PUT", rule=1),
    Case("ops", False, method="PATCH"),
    Case("ops", True, method="OPTIONS", rule=3),
    Case("ops", True, method="POST", path="/either", rule=3),
    # ipBlocks / notIpBlocks
    Case("ips", True, source_ip="127.0.0.2", rule=0),
    Case("ips", False, source_ip="127.0.0.1"),
    Case("ips", False, source_ip="127.0.0.3"),
    # when conditions
    Case("when", True, path="/h", headers={"x-token": "secret"}, rule=0),
    Case("when", True, path="/h", headers={"x-token": "tok-123"}, rule=0),
    Case("when", False, path="/h", headers={"x-token": "nope"}),
    Case("when", False, path="/h"),
    Case("when", True, path="/nh", rule=1),
    Case("when", False, path="/nh", headers={"x-block": "1"}),
    Case("when", True, path="/ns", rule=2),
    Case("when", False, principal=FRONTEND, path="/ns"),
    Case("when", True, principal=ADMIN, path="/p", rule=3),
    Case("when", False, path="/p"),
    Case("when", True, path="/port", rule=4),
    Case("when", True, path="/ip", source_ip="127.0.0.2", rule=5),
    Case("when", False, path="/ip"),
    Case("when", True, path="/both", headers={"x-a": "1", "x-b": "2"}, rule=6),
    Case("when", False, path="/both", headers={"x-a": "1"}),
    # DENY over ALLOW
    Case("deny_over_allow", True, path="/public", policy=_p("allow-all"), rule=0),
    Case("deny_over_allow", False, path="/admin", policy=_p("deny-admin"), rule=0),
    Case("deny_over_allow", False, path="/admin/users", policy=_p("deny-admin"), rule=0),
    Case("deny_over_allow", False, principal=FRONTEND, method="DELETE", path="/x",
         policy=_p("deny-admin"), rule=1),
    Case("deny_over_allow", True, method="DELETE", path="/x"),
    Case("deny_over_allow", True, principal=None, path="/x"),
    # AUDIT never decides
    Case("audit", True, path="/audited", audited=True),
    Case("audit", True, path="/b"),
    Case("audit_allow", True, path="/x", audited=True, policy=_p("only-x")),
    Case("audit_allow", False, path="/y", audited=True),
    # empty policy = allow-nothing; with another ALLOW, that one decides
    Case("empty", False, path="/"),
    Case("empty", False, principal=None, method="POST", path="/x"),
    Case("empty_plus", True, path="/x", policy=_p("allow-get"), rule=0),
    Case("empty_plus", False, method="POST", path="/x"),
    # rules: [{}] = allow-all / deny-all
    Case("allow_all", True, principal=None, method="DELETE", path="/z", rule=0),
    Case("allow_all", True, path="/"),
    Case("deny_all", False, path="/", policy=_p("deny-all"), rule=0),
    Case("deny_all", False, principal=None, method="POST"),
    # CUSTOM is skipped; a policy selecting another workload does not apply
    Case("custom_only", True),
    Case("other_workload", True, principal=None, path="/x"),
]
