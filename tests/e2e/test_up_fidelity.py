"""Issue 12 through `tollway up`: kinds it does not act on only warn, and a
RequestAuthentication is enforced by the real sidecars (tokens signed here)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from e2e_mesh import EXAMPLES, Mesh

from tests.conftest import reap_members
from tests.security.jwt_tokens import Signer, claims, jwks

pytestmark = pytest.mark.slow
ACCEPTED = Path(__file__).resolve().parents[1] / "config" / "accepted"
ISS = "https://auth.example.com"


def test_up_accepts_other_kinds_and_enforces_jwt(tmp_path: Path) -> None:
    key = Signer.rsa()
    root = tmp_path / "canary"
    shutil.copytree(EXAMPLES / "canary", root)
    for f in ACCEPTED.glob("*.yaml"):  # HPA, RBAC, Gateway API, EnvoyFilter, ...
        shutil.copy(f, root / f"zz-{f.name}")
    jwks_text = jwks(key).replace("'", "''")
    (root / "zz-request-authn.yaml").write_text(f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt}}
spec:
  selector: {{matchLabels: {{app: myapp}}}}
  jwtRules:
  - issuer: {ISS}
    jwks: '{jwks_text}'
""")
    mesh = Mesh(root)
    try:
        mesh.start()
        out = "".join(mesh.lines)
        assert f"manifests in {root} not applied" not in out, out
        assert "HorizontalPodAutoscaler/web: -: warning: accepted; local mode does not " \
               "autoscale" in out
        assert mesh.get().status_code == 200  # no token: passes, as in Istio
        good = mesh.get_with(headers={"authorization": f"Bearer {key.sign(claims())}"})
        forged = Signer.rsa().sign(claims())
        bad = mesh.get_with(headers={"authorization": f"Bearer {forged}"})
        assert good.status_code == 200
        assert bad.status_code == 401 and bad.text == "Jwt verification fails"
    finally:
        assert mesh.stop() == 0
        reap_members(root / ".tollway" / "members.json")


def test_up_sidecar_scope_with_registry_only(tmp_path: Path) -> None:
    root = tmp_path / "canary"
    shutil.copytree(EXAMPLES / "canary", root)
    (root / "zz-sidecar.yaml").write_text("""
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: client-scope}
spec:
  workloadSelector: {labels: {app: tollway-client}}
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
  egress:
  - hosts: ["istio-system/*"]
""")
    mesh = Mesh(root)
    try:
        mesh.start()
        assert mesh.get().status_code == 502  # myapp is outside the client's scope
        (root / "zz-sidecar.yaml").write_text((root / "zz-sidecar.yaml").read_text()
                                              .replace("istio-system/*", "./*"))
        done = mesh.cli("apply", "-f", str(root / "zz-sidecar.yaml"))
        assert done.returncode == 0, done.stdout + done.stderr
        end = time.monotonic() + 60
        while time.monotonic() < end and mesh.get().status_code != 200:
            time.sleep(0.5)
        assert mesh.get().status_code == 200  # in scope again: routed
    finally:
        assert mesh.stop() == 0
        reap_members(root / ".tollway" / "members.json")
