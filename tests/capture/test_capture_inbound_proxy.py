"""A pod's inbound through the real proxy under real capture rules.

Two network namespaces joined by a veth pair: "pod" (10.124.0.2) with `tollway iptables`
applied, the demo app on 0.0.0.0:8080 and 0.0.0.0:9090, and the proxy (group 1337, as the
dev node runs the injected sidecar) with the snapshot translate builds for a pod: the
virtualInbound listener on 0.0.0.0:15006 with a chain for 8080; "client" (10.124.0.1)
dials the pod IP at the app's ports. Both arrive through the proxy (it adds
x-forwarded-proto) at the port dialled: 8080 by its chain, 9090 (no chain) passed through
to 127.0.0.1:9090. A client dialling podIP:15001 is captured too, and must not reach the
outbound listener (it would call the mesh as this pod): 404 (test_capture_plans.py
checks the plan itself).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tollway.config.resource import ResourceSet
from tollway.control import translate
from tollway.control.world import World
from tollway.snapshot import codec, types

IP = shutil.which("ip") or "ip"
TOLLWAY = str(Path(sys.executable).with_name("tollway"))
POD_IP = "10.124.0.2"

CLIENT = """
import json, sys, urllib.error, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
out = {}
for port in sys.argv[1:]:
    try:
        url = "http://10.124.0.2:%s/hello" % port
        body = json.loads(opener.open(url, timeout=10).read())
        headers = {k.lower(): v for k, v in body["headers"].items()}
        out[port] = {"port": body["port"], "xfp": headers.get("x-forwarded-proto"),
                     "version": body["version"]}
    except urllib.error.HTTPError as e:
        out[port] = e.code
    except Exception as e:
        out[port] = repr(e)
print(json.dumps(out))
"""


@pytest.fixture
def pair() -> Iterator[tuple[str, str]]:
    if os.geteuid() != 0 or shutil.which("iptables-restore") is None:
        pytest.skip("needs root and iptables")
    tag = f"{random.randrange(16**5):05x}"
    pod, cli = f"twip-{tag}", f"twic-{tag}"
    for ns in (pod, cli):
        subprocess.run([IP, "netns", "add", ns], check=True)
    try:
        subprocess.run([IP, "-n", pod, "link", "add", "tw0", "type", "veth", "peer", "name",
                        "tw1", "netns", cli], check=True)
        for ns, dev, addr in ((pod, "tw0", POD_IP), (cli, "tw1", "10.124.0.1")):
            for cmd in (["link", "set", "lo", "up"], ["addr", "add", f"{addr}/24", "dev", dev],
                        ["link", "set", dev, "up"]):
                subprocess.run([IP, "-n", ns, *cmd], check=True)
        yield pod, cli
    finally:
        for ns in (pod, cli):
            subprocess.run([IP, "netns", "delete", ns], check=False)


def _snapshot(path: Path) -> None:
    world = World.build(ResourceSet())
    node = types.Node(name="web-1.shop", workload="web", namespace="shop")
    cfg = translate.build(world, node, translate.ProxyPorts(
        outbound=("127.0.0.1", 15001), capture=("0.0.0.0", 15006, (8080,))), auto_mtls=False)
    [inbound] = [lst for lst in cfg.listeners if lst.capture]
    assert (inbound.address, inbound.port, [c.port for c in inbound.chains]) == \
        ("0.0.0.0", 15006, [8080])
    path.write_bytes(codec.encode(cfg))


@pytest.mark.netns
def test_inbound_is_served_by_the_port_the_client_dialled(pair: tuple[str, str],
                                                         tmp_path: Path) -> None:
    pod, cli = pair
    rules = subprocess.run([IP, "netns", "exec", pod, TOLLWAY, "iptables"],
                           capture_output=True, text=True, timeout=60)
    assert rules.returncode == 0, rules.stderr
    snap = tmp_path / "snap.json"
    _snapshot(snap)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for port, version in (("8080", "chain"), ("9090", "passthrough")):
            env = {**os.environ, "PORT": port, "HOST": "0.0.0.0", "VERSION": version}
            procs.append(subprocess.Popen([IP, "netns", "exec", pod, sys.executable, "-m",
                                           "tollway.demo.app"], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        proxy = subprocess.Popen(
            [IP, "netns", "exec", pod, "setpriv", "--regid", "1337", "--clear-groups",
             sys.executable, "-m", "tollway.proxy", "--config", str(snap), "--admin-port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        procs.append(proxy)
        assert proxy.stdout is not None
        line = proxy.stdout.readline().decode()
        assert "ready" in line and "virtualInbound=0.0.0.0:15006" in line, line

        def ask() -> dict[str, object]:
            out = subprocess.run([IP, "netns", "exec", cli, sys.executable, "-c", CLIENT,
                                  "8080", "9090", "15001"],
                                 capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
            got: dict[str, object] = json.loads(out.stdout)
            return got

        got = ask()
        deadline = time.monotonic() + 60
        # The demo apps may still be starting (a loaded host takes seconds to import them):
        # until they listen, the proxy answers 503 for their ports, or the connect fails.
        while time.monotonic() < deadline and any(
                isinstance(v, str) or v == 503 for v in got.values()):
            time.sleep(0.5)
            got = ask()
        assert got == {
            "8080": {"port": 8080, "xfp": "http", "version": "chain"},
            "9090": {"port": 9090, "xfp": "http", "version": "passthrough"},
            "15001": 404,
        }, got
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
