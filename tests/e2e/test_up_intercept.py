"""`tollway up --intercept`: replicas in their own netns, traffic captured, no HTTP_PROXY.

Real `tollway up` processes, real network namespaces, bridge, veths and iptables. The
client is a meshed replica (tests/data/intercept/caller.py) that calls `http://myapp:8080/`
by its plain name with urllib and reports what it saw, including its proxy environment.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_mesh import EXAMPLES, TOLLWAY, Mesh

from tests.conftest import eventually, reap_members
from tollway.control.local import intercept, podnet
from tollway.plumbing import sbin

pytestmark = [
    pytest.mark.slow,
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(any(shutil.which(t) is None for t in ("ip", "iptables", "setpriv")),
                       reason="needs iproute2, iptables and setpriv"),
]

CALLER = Path(__file__).resolve().parents[1] / "data" / "intercept" / "caller.py"
CALLER_YAML = f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: caller
spec:
  replicas: 1
  selector:
    matchLabels: {{app: caller}}
  template:
    metadata:
      labels: {{app: caller}}
    spec:
      containers:
      - name: caller
        image: caller
        command: [{json.dumps(sys.executable)}, {json.dumps(str(CALLER))}]
        ports:
        - containerPort: 8080
"""


def _folder(tmp_path: Path, name: str) -> Path:
    root = tmp_path / name
    shutil.copytree(EXAMPLES / "canary", root)
    (root / "03-caller.yaml").write_text(CALLER_YAML)
    return root


@pytest.fixture
def meshes(tmp_path: Path) -> Iterator[list[Mesh]]:
    started: list[Mesh] = []
    yield started
    for mesh in started:
        mesh.stop()
        reap_members(mesh.root / ".tollway" / "members.json")


OURS: set[int] = set()  # pids of this test process's own `tollway up` runs


def _start(meshes: list[Mesh], root: Path, *, intercept: bool = True) -> Mesh:
    mesh = Mesh(root)
    if intercept:
        mesh.extra_args = ["--intercept"]
    meshes.append(mesh)
    mesh.start(timeout=180)
    assert mesh.proc is not None
    OURS.add(mesh.proc.pid)
    return mesh


def _slot(mesh: Mesh) -> int:
    found = re.search(r"on bridge twu(\d+) ", "".join(mesh.lines))
    assert found, "".join(mesh.lines)
    return int(found.group(1))


def _call(mesh: Mesh, n: int) -> dict[str, Any]:
    """The caller replica makes n plain requests to http://myapp:8080/."""
    with httpx.Client(proxy=f"http://127.0.0.1:{mesh.client_port}", timeout=120) as c:
        r = c.get("http://caller:8080/call", params={"n": n, "url": "http://myapp:8080/"})
    assert r.status_code == 200, r.text
    return dict(r.json())


def _netns(slot: int) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return sorted(ln.split()[0] for ln in out.splitlines()
                  if ln.strip() and podnet.slot_of(ln.split()[0]) == slot)


def _leftovers(slot: int) -> list[str]:
    """Everything of slot `slot` on the host: netns, links, FORWARD rules, files; nothing
    when another live run (a test on another worker) has taken the freed slot since."""
    try:
        owner = json.loads(Path(f"/run/tollway/up-intercept/slot-{slot}.json").read_text())
        if Path(f"/proc/{owner['pid']}").exists() and owner["pid"] not in OURS:
            return []
    except (OSError, ValueError, KeyError):
        pass
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True,
                           text=True).stdout.splitlines()
    names = [ln.split(":")[1].strip().split("@")[0] for ln in links if ln.count(":") >= 2]
    rules = subprocess.run(["iptables", "-w", "5", "-S", "FORWARD"], capture_output=True,
                           text=True).stdout.splitlines()
    files = [*Path("/etc/netns").glob(f"twu{slot}-*"),
             *Path("/run/tollway/up-intercept").glob(f"slot-{slot}*")]
    return [*_netns(slot), *(n for n in names if podnet.slot_of(n) == slot),
            *(r for r in rules if f"{podnet.RULE_COMMENT} {slot}\"" in r),
            *map(str, files)]


def _pids(mesh: Mesh) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = json.loads(
        (mesh.root / ".tollway" / "members.json").read_text())
    return rows


def test_intercept_splits_by_plain_name_with_no_proxy_env(tmp_path: Path,
                                                          meshes: list[Mesh]) -> None:
    mesh = _start(meshes, _folder(tmp_path, "canary"))
    slot = _slot(mesh)
    out = _call(mesh, 200)
    assert out["proxy_env"] == {}, out  # the app has no proxy settings at all
    assert out["resolved"] == str(podnet.SERVICE_VIP), out  # `myapp` from its hosts file
    assert out["statuses"] == {"200": 200}, out
    versions = out["versions"]
    assert set(versions) == {"v1", "v2"} and sum(versions.values()) == 200, out
    assert 4 <= versions["v2"] <= 45, out  # 90/10 of 200 (binomial, sd ~4.2)

    # the calls went through the caller's own sidecar (reporter=source, in its netns)
    caller = next(p for p in mesh.proxies() if p["workload"] == "caller")
    assert caller["address"].startswith(f"10.250.{slot}.")
    stats = httpx.get(f"http://{caller['admin']}/stats/prometheus", timeout=10).text
    sent = sum(float(ln.rsplit(" ", 1)[1]) for ln in stats.splitlines()
               if ln.startswith("istio_requests_total{") and 'reporter="source"' in ln
               and 'destination_service_name="myapp"' in ln)
    assert sent >= 200, stats

    # each replica: its own netns with istio-init's rules, its sidecar as uid 1337
    names = _netns(slot)
    assert len(names) == 5, names  # myapp-v1 x3, myapp-v2, caller
    for ns in names:
        nat = subprocess.run(["ip", "netns", "exec", ns, "iptables-save", "-t", "nat"],
                             capture_output=True, text=True).stdout
        assert "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001" in nat, nat
        assert "-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006" in nat, nat
    row = next(r for n, r in _pids(mesh).items() if n.startswith("caller-"))
    status = Path(f"/proc/{row['sidecar_pid']}/status").read_text()
    assert re.search(r"^Uid:\s+1337\s", status, re.M), status
    app_env = Path(f"/proc/{row['app_pid']}/environ").read_bytes().split(b"\0")
    assert not [e for e in app_env if e.lower().startswith((b"http_proxy=", b"https_proxy="))]

    assert mesh.stop() == 0
    assert _leftovers(slot) == []


def test_sigkilled_run_is_swept_by_the_next_never_a_live_one(tmp_path: Path,
                                                               meshes: list[Mesh]) -> None:
    killed = _start(meshes, _folder(tmp_path, "a"))
    live = _start(meshes, _folder(tmp_path, "b"))
    dead_slot, live_slot = _slot(killed), _slot(live)
    assert dead_slot != live_slot
    orphans = [r["app_pid"] for n, r in _pids(killed).items() if r.get("app_pid")]
    killed.kill()  # SIGKILL: no cleanup at all
    assert len(_netns(dead_slot)) == 5

    third = _start(meshes, _folder(tmp_path, "c"))
    said = "".join(third.lines)
    assert "removed what a stopped --intercept run left" in said, said
    assert f"netns twu{dead_slot}-1" in said, said
    assert f"twu{live_slot}-" not in said, said  # the live run's are not touched
    for pid in orphans:  # the killed run's apps went with their netns
        eventually(lambda pid=pid: not Path(f"/proc/{pid}").exists() or
                   Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "Z",
                   timeout=30, what=f"orphan app {pid} killed")
    assert len(_netns(live_slot)) == 5
    out = _call(live, 20)  # the live run still serves through its own netns
    assert out["statuses"] == {"200": 20} and out["proxy_env"] == {}, out

    third_slot = _slot(third)
    assert third.stop() == 0 and live.stop() == 0
    for slot in {dead_slot, live_slot, third_slot}:
        assert _leftovers(slot) == [], (slot, dead_slot, live_slot, third_slot,
                                        "".join(third.lines), "".join(live.lines))


def test_without_the_flag_apps_still_use_http_proxy(tmp_path: Path,
                                                    meshes: list[Mesh]) -> None:
    mesh = _start(meshes, _folder(tmp_path, "plain"), intercept=False)
    assert "intercepting" not in "".join(mesh.lines)
    out = _call(mesh, 40)
    caller = next(m for m in mesh.members() if m["workload"] == "caller")
    assert caller["address"] == "127.0.0.1"
    assert out["proxy_env"]["HTTP_PROXY"] == f"http://127.0.0.1:{caller['ports']['outbound']}"
    assert out["statuses"] == {"200": 40}, out
    assert set(out["versions"]) <= {"v1", "v2"}


def _up(tmp_path: Path, *prefix: str, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    root = tmp_path / "refused"
    if not root.exists():
        _folder(tmp_path, "refused")
    return subprocess.run([*prefix, *TOLLWAY, "up", str(root), "--intercept", "--no-prometheus",
                           "--api-port", "0"], capture_output=True, text=True, timeout=60,
                          env=env, cwd="/")


def test_without_root_or_tools_it_refuses_in_one_sentence(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    done = _up(tmp_path, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.startswith("tollway up: --intercept needs root"), done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "refused" / ".tollway").exists()  # nothing started

    bare = {**os.environ, "PATH": str(Path(sys.executable).parent)}  # no /usr/bin
    done = _up(tmp_path, env=bare)
    assert done.returncode == 1, done.stdout + done.stderr
    # root's sbin folders are searched too (plumbing/sbin.py), so what stays missing is
    # what lives elsewhere, such as setpriv in /usr/bin
    search = os.pathsep.join([bare["PATH"], *(d for d in sbin.SBIN if os.path.isdir(d))])
    missing = [t for t in intercept.NEEDED if shutil.which(t, path=search) is None]
    assert missing and "iptables" not in missing
    which = "which is" if len(missing) == 1 else "which are"
    assert done.stderr.startswith(f"tollway up: --intercept needs {', '.join(missing)}, "
                                  f"{which} not installed"), done.stderr
    assert "Traceback" not in done.stderr

