"""`tollway control-plane` refuses bad setups in one sentence (no cluster needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, free_port


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tollway", "control-plane", *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_without_kubernetes_or_config_it_says_what_to_pass(tmp_path: Path) -> None:
    proc = run()
    assert proc.returncode == 2 and "--kubernetes" in proc.stderr
    proc = run("--kubernetes", "--kubeconfig", str(tmp_path / "none"))
    assert proc.returncode == 2 and "--kubeconfig" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_unreachable_api_server_is_one_sentence(tmp_path: Path) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "https://127.0.0.1:{free_port()}",
            insecure-skip-tls-verify: true}}}}]
users: [{{name: u, user: {{token: abc}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u}}}}]
current-context: x
""")
    proc = run("--kubernetes", "--kubeconfig", str(config), "--listen", "127.0.0.1:0",
               "--state-dir", str(tmp_path / "st"))
    assert proc.returncode == 1, proc.stderr
    assert "cannot reach the Kubernetes API at https://127.0.0.1:" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run("--kubernetes", "--kubeconfig", str(config), "--context", "nope")
    assert proc.returncode == 2 and "nope" in proc.stderr
