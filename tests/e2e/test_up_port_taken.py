"""A Gateway port something else holds: `tollway up` says so at once, by name.

The gateway proxy refuses a snapshot whose listener it cannot bind, so it never becomes
ready; `tollway up` used to wait its whole ready timeout in silence (the refusal was only in
the control plane's log). Now the refusal is printed as it arrives, with the fix.
"""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

from e2e_mesh import EXAMPLES, Mesh

from tests.conftest import reap_members


def test_a_taken_gateway_port_is_named_at_once(tmp_path: Path) -> None:
    root = tmp_path / "tracing"
    shutil.copytree(EXAMPLES / "tracing", root)
    mesh = Mesh(root)
    taken = mesh.offset + 80
    try:
        with socket.socket() as holder:
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            holder.bind(("127.0.0.1", taken))
            holder.listen()
            started = time.monotonic()
            mesh.start(timeout=90,
                       until=("tollway: istio-ingressgateway.istio-system refused",))
            took = time.monotonic() - started
    finally:
        mesh.stop()
        reap_members(root / ".tollway" / "members.json")
    line = next(ln for ln in mesh.lines if "refused its config" in ln)
    assert f"127.0.0.1:{taken}" in line and "in use" in line, line
    assert "--gateway-port-offset" in line, line
    assert took < 60, f"the refusal came after {took:.0f}s"
    assert not any(ln.startswith("tollway: ready:") for ln in mesh.lines)
