"""Issue 10: a DENY applied through the API must not disappear when `tollway up` restarts
on the same state folder, nor when the folder holds another version of it.

Through a real `tollway up` (examples/authz, seed 10: checkout-service may GET payments)
and the real CLI: the API's DENY wins over the folder's version of the same policy until
`tollway delete` removes it, which brings the folder's version back; `tollway get` says
where each resource came from.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.e2e.e2e_mesh import EXAMPLES, Mesh, wait_until
from tests.security.test_seeds_up import SEED_DIR, member, via

POLICY = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: no-reads, namespace: payments}}
spec:
  selector: {{matchLabels: {{app: payment-service}}}}
  action: {action}
  rules:
  - to: [{{operation: {{methods: ["GET"], paths: ["{path}"]}}}}]
"""


def _get_status(mesh: Mesh) -> int:
    return via(member(mesh, "checkout-service")["outbound"], "GET",
               "/api/v1/payments").status_code


def _source(mesh: Mesh) -> dict[str, str]:
    done = mesh.cli("get", "authorizationpolicy", "no-reads", "-n", "payments", "-o", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    meta = json.loads(done.stdout)["metadata"]
    return {"source": meta.get("source", ""), "conflict": meta.get("conflict", "")}


@pytest.mark.slow
@pytest.mark.timeout(360)  # two `tollway up` starts on a loaded machine
def test_a_deny_applied_through_the_api_survives_restarts_and_the_folder(
        tmp_path: Path) -> None:
    root = tmp_path / "mesh"
    shutil.copytree(EXAMPLES / "authz", root)
    shutil.copy(SEED_DIR / "10-authorization-policy.yaml", root)
    mesh = Mesh(root)
    mesh.start()
    try:
        assert _get_status(mesh) == 200
        deny = tmp_path / "deny.yaml"
        deny.write_text(POLICY.format(action="DENY", path="/api/v1/payments"))
        done = mesh.cli("apply", "-f", str(deny))
        assert done.returncode == 0, done.stdout + done.stderr
        wait_until(lambda: _get_status(mesh) == 403, 20, "the DENY to apply")
        assert _source(mesh)["source"] == "api"
    finally:
        mesh.stop()
    # the same state folder, and the folder now declares another version of the policy
    (root / "no-reads.yaml").write_text(POLICY.format(action="DENY", path="/nothing"))
    mesh.start()
    try:
        assert _get_status(mesh) == 403  # the API's DENY is back before `ready`
        said = "".join(mesh.lines)
        assert "restored 1 resources applied through the API" in said, said
        assert "conflict: AuthorizationPolicy/payments/no-reads" in said, said
        seen = _source(mesh)
        assert seen["source"] == "api" and "folder's version" in seen["conflict"]
        # an edit of the folder's version while running does not override it either
        (root / "no-reads.yaml").write_text(POLICY.format(action="DENY", path="/other"))
        wait_until(lambda: "not applied: the version applied through the API wins"
                   in "".join(mesh.lines), 20, "the folder's edit to be reported")
        assert _get_status(mesh) == 403
        # deleting the API's version brings the folder's back (GET is allowed again)
        gone = mesh.cli("delete", "-f", str(tmp_path / "deny.yaml"))
        assert gone.returncode == 0, gone.stdout + gone.stderr
        wait_until(lambda: _get_status(mesh) == 200, 20, "the folder's version to return")
        assert _source(mesh) == {"source": "folder", "conflict": ""}
        table = mesh.cli("get", "authorizationpolicy", "-n", "payments")
        assert "SOURCE" in table.stdout.splitlines()[0]
        assert any("no-reads" in line and line.rstrip().endswith("folder")
                   for line in table.stdout.splitlines()), table.stdout
    finally:
        mesh.stop()
