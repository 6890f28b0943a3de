"""SO_ORIGINAL_DST through real capture rules: in a network namespace with `tollway
iptables` applied, an app (any uid but 1337) dialling 10.123.0.5:8080 lands on the
outbound port, and the listener (asyncio, as the proxy's) reads 10.123.0.5:8080 back;
uid 1337's own connection is not captured, nor one from group 1337."""

from __future__ import annotations

import os
import random
import shutil
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tollway.proxy import origdst

IP = shutil.which("ip") or "ip"
TOLLWAY = str(Path(sys.executable).with_name("tollway"))


def test_parse_sockaddr_in() -> None:
    raw = struct.pack("=H", socket.AF_INET) + struct.pack("!H", 8080) + socket.inet_aton(
        "10.96.0.10") + b"\0" * 8
    assert origdst.parse_sockaddr_in(raw) == ("10.96.0.10", 8080)
    with pytest.raises(ValueError):
        origdst.parse_sockaddr_in(struct.pack("=H", socket.AF_INET6) + b"\0" * 14)
    with pytest.raises(ValueError):
        origdst.parse_sockaddr_in(b"\0\0")


def test_a_socket_that_was_not_redirected_has_none() -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    cli = socket.create_connection(srv.getsockname())
    conn, _ = srv.accept()
    try:
        assert origdst.original_destination(conn) is None
        assert origdst.original_destination(None) is None
    finally:
        for s in (conn, cli, srv):
            s.close()


SERVER = """
import asyncio, sys
from tollway.proxy import origdst
class P(asyncio.Protocol):
    def connection_made(self, tr):
        dst = origdst.original_destination(tr.get_extra_info("socket"))
        tr.write(f"{dst[0]}:{dst[1]}".encode() if dst else b"none")
        tr.close()
async def main():
    srv = await asyncio.get_running_loop().create_server(P, "0.0.0.0", 15001)
    print("ready", flush=True)
    await srv.serve_forever()
asyncio.run(main())
"""

CLIENT = """
import encodings.idna, os, socket, sys  # loaded before dropping root
os.setgroups([]); os.setgid(int(sys.argv[2])); os.setuid(int(sys.argv[1]))
try:
    s = socket.create_connection(("10.123.0.5", 8080), timeout=3)
    print(s.recv(100).decode() or "empty")
except OSError as e:
    print("unreachable", type(e).__name__)
"""


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("iptables-restore") is None:
        pytest.skip("needs root and iptables")
    name = f"twod-{random.randrange(16**6):06x}"
    subprocess.run([IP, "netns", "add", name], check=True)
    try:
        for cmd in (["link", "set", "lo", "up"],
                    ["link", "add", "tw0", "type", "veth", "peer", "name", "tw1"],
                    ["addr", "add", "10.123.0.1/24", "dev", "tw0"],
                    ["link", "set", "tw0", "up"], ["link", "set", "tw1", "up"]):
            subprocess.run([IP, "-n", name, *cmd], check=True)
        yield name
    finally:
        subprocess.run([IP, "netns", "delete", name], check=False)


@pytest.mark.netns
def test_captured_connections_carry_their_original_destination(netns: str) -> None:
    done = subprocess.run([IP, "netns", "exec", netns, TOLLWAY, "iptables"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    server = subprocess.Popen([IP, "netns", "exec", netns, sys.executable, "-c", SERVER],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"

        def dial(uid: int, gid: int | None = None) -> str:
            out = subprocess.run([IP, "netns", "exec", netns, sys.executable, "-c", CLIENT,
                                  str(uid), str(uid if gid is None else gid)],
                                 capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
            return out.stdout.strip()

        assert dial(1000) == "10.123.0.5:8080"  # an app: captured, destination recovered
        assert dial(1337).startswith("unreachable")  # the proxy's uid: never captured
        # root in group 1337 (the dev node's runAsGroup): exempt by --gid-owner
        assert dial(0, 1337).startswith("unreachable")
        assert dial(0, 0) == "10.123.0.5:8080"
    finally:
        server.terminate()
        server.wait(timeout=30)
