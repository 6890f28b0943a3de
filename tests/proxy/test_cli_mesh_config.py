"""`tollway proxy --config DIR --mesh-config FILE`: the mode reaches a real proxy process."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

MANIFESTS = """apiVersion: v1
kind: Service
metadata: {{name: app, namespace: default}}
spec:
  selector: {{app: app}}
  ports: [{{name: http, port: 80}}]
---
apiVersion: networking.istio.io/v1beta1
kind: WorkloadEntry
metadata: {{name: app-0, namespace: default}}
spec:
  address: 127.0.0.1
  ports: {{http: {port}}}
  labels: {{app: app}}
"""


class _Recorder(BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def app() -> Iterator[tuple[int, list[str]]]:
    seen: list[str] = []
    handler = type("H", (_Recorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], seen
    server.shutdown()


def _run(tmp_path: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    folder = tmp_path / "m"
    folder.mkdir(exist_ok=True)
    (folder / "app.yaml").write_text(MANIFESTS.format(port=port))
    return subprocess.Popen(
        [sys.executable, "-m", "tollway", "proxy", "--config", str(folder), "--port", "0",
         "--admin-port", "0", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )


def _get(outbound: str, target: str) -> bytes:
    host, port = outbound.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n".encode())
        out = b""
        while piece := s.recv(65536):
            out += piece
    return out


@pytest.mark.parametrize(
    ("mode", "forwarded"),
    [(None, "/a//b"), ("BASE", "/a//b"), ("MERGE_SLASHES", "/a/b"), ("NONE", "/a//./b")],
)
def test_the_mode_from_the_file_is_what_the_app_sees(
    tmp_path: Path, app: tuple[int, list[str]], mode: str | None, forwarded: str
) -> None:
    port, seen = app
    extra: list[str] = []
    if mode is not None:
        (tmp_path / "mesh.yaml").write_text(
            f"pathNormalization:\n  normalization: {mode}\ntrustDomain: example.org\n")
        extra = ["--mesh-config", str(tmp_path / "mesh.yaml")]
    proc = _run(tmp_path, port, *extra)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"outbound=(\S+)", line)
        assert m, line + (proc.stderr.read() if proc.poll() is not None else "")
        # no flag: Istio's default, BASE
        assert _get(m.group(1), "/a//./b").split(b"\r\n")[0].endswith(b" 200 OK")
        assert seen == [forwarded]
    finally:
        proc.terminate()
        proc.wait(10)
    if mode is not None:
        assert "trustDomain is not applied by Tollway" in (proc.stderr.read() or "")


def test_a_bad_mesh_config_stops_before_anything_starts(tmp_path: Path) -> None:
    (tmp_path / "mesh.yaml").write_text("pathNormalization:\n  normalization: merge\n")
    proc = _run(tmp_path, 1, "--mesh-config", str(tmp_path / "mesh.yaml"))
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err.strip() == (f"error: --mesh-config {tmp_path / 'mesh.yaml'}: "
                           "pathNormalization.normalization is 'merge'; use one of 'NONE', "
                           "'BASE', 'MERGE_SLASHES' or 'DECODE_AND_MERGE_SLASHES'")


def test_mesh_config_with_a_control_plane_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "mesh.yaml").write_text("{}\n")
    done = subprocess.run(
        [sys.executable, "-m", "tollway", "proxy", "--control-plane", "http://127.0.0.1:1",
         "--workload", "w", "--mesh-config", str(tmp_path / "mesh.yaml")],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert "tollway up --mesh-config" in done.stderr
