"""`tollway authz check`: the decision explained, on seed 10 as users paste it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tollway.cli.main import app

DEPLOY = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: payment-service, namespace: payments}
spec:
  selector: {matchLabels: {app: payment-service}}
  template:
    metadata: {labels: {app: payment-service}}
    spec:
      serviceAccountName: payment-service
      containers: [{name: app, image: demo, command: [python, -m, tollway.demo.app]}]
"""
DENY = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-delete, namespace: istio-system}
spec:
  action: DENY
  rules: [{to: [{operation: {methods: [DELETE]}}]}]
"""
CHECKOUT = "cluster.local/ns/checkout/sa/checkout-service"


@pytest.fixture
def manifests(tmp_path: Path, seed_dir: Path) -> Path:
    shutil.copy(seed_dir / "10-authorization-policy.yaml", tmp_path)
    (tmp_path / "deploy.yaml").write_text(DEPLOY)
    (tmp_path / "deny.yaml").write_text(DENY)
    return tmp_path


def check(folder: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["authz", "check", *args, "-f", str(folder)])
    return result.exit_code, result.output


def test_cli_authz_check_allowed_names_policy_and_rule(manifests: Path) -> None:
    code, out = check(manifests, "payment-service.payments", "--from", CHECKOUT,
                      "--method", "POST", "--path", "/api/v1/payments/7")
    assert code == 0, out
    assert "Decision: ALLOWED: allowed by policy payments/payment-service-authz, rule 0" in out
    assert "istio-system/no-delete" in out  # the mesh-wide policy applies too


def test_cli_authz_check_denied_by_default_deny(manifests: Path) -> None:
    code, out = check(manifests, "payments/payment-service", "--from",
                      "cluster.local/ns/web/sa/frontend", "--path", "/api/v1/payments")
    assert code == 1, out  # a denial exits 1, so scripts can branch on it
    assert "DENIED (403 RBAC: access denied): no ALLOW policy matched" in out
    # ... and names the condition that failed, in Istio's field names
    assert ("rule 0: from: principals ['cluster.local/ns/checkout/sa/checkout-service'] "
            "does not match cluster.local/ns/web/sa/frontend") in out


def test_cli_authz_check_names_every_failed_part_of_a_rule(manifests: Path) -> None:
    code, out = check(manifests, "payment-service.payments", "--from", CHECKOUT,
                      "--method", "PUT", "--path", "/api/v2/refunds")
    assert code == 1, out
    assert "from:" not in out  # the caller is the allowed one
    assert "to: methods ['GET', 'POST'] does not match PUT, paths ['/api/v1/payments*'] " \
        "does not match /api/v2/refunds" in out


def test_cli_authz_check_deny_policy_wins(manifests: Path) -> None:
    code, out = check(manifests, "payment-service", "-n", "payments", "--from",
                      f"spiffe://{CHECKOUT}", "--method", "DELETE",
                      "--path", "/api/v1/payments")
    assert code == 1, out
    assert "DENIED (403 RBAC: access denied): denied by policy istio-system/no-delete, rule 0" \
        in out


def test_cli_authz_check_unknown_workload_is_one_sentence(manifests: Path) -> None:
    code, out = check(manifests, "ledger")
    assert code == 2
    assert "no Deployment, Rollout or WorkloadEntry named ledger" in out
    assert "Traceback" not in out


def test_cli_authz_check_bad_header_is_usage_error(manifests: Path) -> None:
    code, out = check(manifests, "payment-service.payments", "-H", "novalue")
    assert code == 2 and "NAME:VALUE" in out


def test_cli_authz_check_from_a_workload_uses_its_service_account(manifests: Path) -> None:
    (manifests / "checkout.yaml").write_text(DEPLOY.replace("payment-service", "checkout-service")
                                             .replace("payments", "checkout"))
    code, out = check(manifests, "payment-service.payments", "--from", "checkout-service.checkout",
                      "--path", "/api/v1/payments")
    assert code == 0, out
    assert f"from {CHECKOUT}" in out and "Decision: ALLOWED" in out
