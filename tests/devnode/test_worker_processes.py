"""PodWorker with real processes in real network namespaces (root), reporting to a recorder.

The API side is an in-memory recorder here (the cluster e2e tests use the real apiserver);
everything else is real: netns + veth on a test bridge, processes, probes, signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from lightkube.resources.core_v1 import Pod

from tests.devnode.podspecs import service_account_volume
from tollway.devnode import podnet
from tollway.devnode.podstatus import JSON
from tollway.devnode.worker import EnvInputs, HostConfig, PodWorker
from tollway.plumbing import netns

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2"),
]


class Recorder:
    def __init__(self, config_maps: dict[str, dict[str, str]] | None = None) -> None:
        self.config_maps = config_maps or {}
        self.statuses: list[JSON] = []
        self.events: list[tuple[str, str, str]] = []
        self.deleted = False

    async def patch_status(self, pod: Pod, status: JSON) -> None:
        self.statuses.append(status)

    async def event(self, pod: Pod, kind: str, reason: str, message: str) -> None:
        self.events.append((kind, reason, message))

    async def env_inputs(self, pod: Pod) -> EnvInputs:
        return EnvInputs([], self.config_maps, {})

    async def token(self, pod: Pod, service_account: str, audience: str, seconds: int) -> str:
        return f"token-for-{service_account}-{seconds}"

    async def delete(self, pod: Pod) -> None:
        self.deleted = True

    def last(self) -> JSON:
        return self.statuses[-1]


def make_pod(spec: dict[str, Any], name: str = "p") -> Pod:
    uid = f"{random.randrange(16**8):08x}-0000-4000-8000-000000000000"
    body = {"metadata": {"name": name, "namespace": "t", "uid": uid}, "spec": spec}
    return Pod.from_dict(body)  # type: ignore[return-value]


@contextlib.asynccontextmanager
async def node(tmp_path: Path) -> AsyncIterator[tuple[HostConfig, podnet.PodNet]]:
    bridge = f"twt{random.randrange(16**4):04x}"
    net = podnet.PodNet(
        tmp_path,
        bridge,
        f"10.252.{random.randrange(1, 250)}.0/24",
        netns_prefix="twx-",
        veth_prefix="twy",
    )
    await net.ensure_bridge()
    host = HostConfig(
        node_name="n",
        node_ip=net.ipam.gateway,
        state_dir=tmp_path,
        cluster_dns="10.96.0.10",
        cluster_domain="cluster.local",
        backoff_base=0.2,
        backoff_cap=1.0,
        probe_scale=0.1,
    )
    try:
        yield host, net
    finally:
        await podnet.cleanup(tmp_path, bridge=bridge)


async def until(pred: Any, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def scenario(fn: Callable[[Any, Path], Awaitable[None]]) -> Callable[[Path], None]:
    """Each test is one asyncio.run over a fresh test bridge that is always cleaned up."""

    def test(tmp_path: Path) -> None:
        async def main() -> None:
            async with node(tmp_path) as env:
                await fn(env, tmp_path)

        asyncio.run(main())

    test.__name__ = fn.__name__
    test.__doc__ = fn.__doc__
    return test


def ready(st: JSON) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions", []))


SERVER = (
    "import http.server,os,socketserver\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(s):\n"
    "        s.send_response(200); s.end_headers(); s.wfile.write(os.environ['POD_IP'].encode())\n"
    "    def log_message(s,*a): pass\n"
    "http.server.HTTPServer(('0.0.0.0',8080),H).serve_forever()\n"
)


@scenario
async def test_init_then_ready_server_then_graceful_delete(env: Any, tmp_path: Path) -> None:
    host, net = env
    marker = tmp_path / "init-ran"
    pod = make_pod(
        {
            "terminationGracePeriodSeconds": 5,
            "initContainers": [
                {"name": "setup", "image": "busybox", "command": ["touch", str(marker)]}
            ],
            "containers": [
                {
                    "name": "web",
                    "image": "web:1",
                    "command": [sys.executable, "-c", SERVER],
                    "env": [
                        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
                    ],
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "readinessProbe": {
                        "httpGet": {"port": "http", "path": "/"},
                        "periodSeconds": 1,
                    },
                }
            ],
        }
    )
    api = Recorder()
    w = PodWorker(pod, host, api, net)
    task = asyncio.create_task(w.run())
    await until(lambda: api.statuses and ready(api.last()))
    st = api.last()
    assert marker.exists()
    assert st["phase"] == "Running" and st["podIP"] == w.pod_ip
    assert st["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    assert st["containerStatuses"][0]["ready"] is True
    assert (
        "Normal",
        "Pulled",
        "image web:1 not pulled: devnode runs the container's command on the host",
    ) in api.events
    ns = w.netns
    assert ns and (netns.NETNS_DIR / ns).exists()
    # The pod serves on its own IP, reachable from the node through the bridge.
    reader, writer = await asyncio.open_connection(w.pod_ip, 8080)
    writer.write(b"GET / HTTP/1.0\r\n\r\n")
    body = await reader.read()
    writer.close()
    assert body.endswith(str(w.pod_ip).encode())

    w.request_stop(5, delete=True)
    await asyncio.wait_for(task, 30)
    assert api.deleted
    assert not (netns.NETNS_DIR / ns).exists()
    final = api.last()["containerStatuses"][0]["state"]
    assert final["terminated"]["exitCode"] in (143, 0, 1)  # SIGTERM took it down
    assert (tmp_path / "pods").exists()


@scenario
async def test_crash_loop_counts_restarts_with_backoff(env: Any, tmp_path: Path) -> None:
    host, net = env
    pod = make_pod(
        {
            "containers": [
                {"name": "crash", "image": "c", "command": ["sh", "-c", "echo boom; exit 3"]}
            ]
        }
    )
    api = Recorder()
    w = PodWorker(pod, host, api, net)
    task = asyncio.create_task(w.run())
    await until(lambda: api.statuses and api.last()["containerStatuses"][0]["restartCount"] >= 3)
    seen = [s["containerStatuses"][0]["state"] for s in api.statuses]
    assert any(s.get("waiting", {}).get("reason") == "CrashLoopBackOff" for s in seen)
    cs = api.last()["containerStatuses"][0]
    assert cs["lastState"]["terminated"]["exitCode"] == 3
    assert any(e[1] == "BackOff" for e in api.events)
    logs = sorted((w.dir / "crash").glob("*.log"))
    assert len(logs) >= 3 and logs[0].read_text() == "boom\n"
    w.request_stop(1, delete=False)
    await asyncio.wait_for(task, 30)
    assert not api.deleted


@scenario
async def test_liveness_failure_restarts_and_grace_ends_in_sigkill(
    env: Any, tmp_path: Path
) -> None:
    host, net = env
    flag = tmp_path / "alive"
    flag.touch()
    script = f"trap '' TERM; rm -f {flag}; while true; do sleep 0.1; done"
    pod = make_pod(
        {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "stubborn",
                    "image": "s",
                    "command": ["sh", "-c", script],
                    "livenessProbe": {
                        "exec": {"command": ["test", "-e", str(flag)]},
                        "periodSeconds": 1,
                        "failureThreshold": 2,
                    },
                }
            ],
        }
    )
    api = Recorder()
    w = PodWorker(pod, host, api, net)
    task = asyncio.create_task(w.run())
    await until(lambda: api.statuses and api.last()["containerStatuses"][0]["restartCount"] >= 1)
    assert any(e[1] == "Killing" and "failed liveness probe" in e[2] for e in api.events)
    assert any(e[1] == "Unhealthy" for e in api.events)
    last = api.last()["containerStatuses"][0]["lastState"]["terminated"]
    assert last["exitCode"] == 137  # ignored SIGTERM, killed after the 1 s grace
    w.request_stop(1, delete=True)
    await asyncio.wait_for(task, 30)


@scenario
async def test_never_policy_success_and_failure(env: Any, tmp_path: Path) -> None:
    host, net = env
    api = Recorder()
    pod = make_pod(
        {
            "restartPolicy": "Never",
            "containers": [
                {"name": "ok", "image": "o", "command": ["true"]},
                {"name": "bad", "image": "b", "command": ["sh", "-c", "exit 4"]},
            ],
        }
    )
    w = PodWorker(pod, host, api, net)
    task = asyncio.create_task(w.run())
    await until(lambda: api.statuses and api.last()["phase"] == "Failed")
    by = {c["name"]: c for c in api.last()["containerStatuses"]}
    assert by["bad"]["state"]["terminated"]["exitCode"] == 4 and by["bad"]["restartCount"] == 0
    assert by["ok"]["state"]["terminated"]["reason"] == "Completed"
    await until(lambda: not w.sandbox_ready)  # a finished pod gives its netns back
    w.request_stop(0, delete=True)
    await asyncio.wait_for(task, 30)
    assert api.deleted


@scenario
async def test_missing_command_is_reported_not_crashed(env: Any, tmp_path: Path) -> None:
    host, net = env
    api = Recorder()
    w = PodWorker(make_pod({"containers": [{"name": "img", "image": "nginx:1"}]}), host, api, net)
    task = asyncio.create_task(w.run())
    await until(
        lambda: any(
            s["containerStatuses"][0]["state"].get("waiting", {}).get("reason")
            == "CreateContainerConfigError"
            for s in api.statuses
        )
    )
    msg = api.last()["containerStatuses"][0]["state"]["waiting"]["message"]
    assert "does not pull image 'nginx:1'" in msg
    w.request_stop(0, delete=True)
    await asyncio.wait_for(task, 30)


@scenario
async def test_volumes_emptydir_configmap_and_token_mounts(env: Any, tmp_path: Path) -> None:
    host, net = env
    cfg_dir = f"/etc/devnode-test-{random.randrange(16**6):06x}"
    # Not the real /var/run/secrets path: a running dev cluster's pods may have it mounted.
    sa_dir = f"/run/devnode-test-{random.randrange(16**6):06x}/kubernetes.io/serviceaccount"
    api = Recorder(config_maps={"cfg": {"mode": "fast"}, "kube-root-ca.crt": {"ca.crt": "CA"}})
    check = (
        f"for f in {cfg_dir}/mode /work/shared.txt {sa_dir}/token {sa_dir}/namespace "
        f"{sa_dir}/ca.crt; do cat $f; echo; done"
    )
    pod = make_pod(
        {
            "restartPolicy": "Never",
            "volumes": [
                {"name": "work", "emptyDir": {}},
                {"name": "cfg", "configMap": {"name": "cfg"}},
                service_account_volume(),
            ],
            "initContainers": [
                {
                    "name": "fill",
                    "image": "i",
                    "command": ["sh", "-c", "echo shared > /work/shared.txt"],
                    "volumeMounts": [{"name": "work", "mountPath": "/work"}],
                }
            ],
            "containers": [
                {
                    "name": "read",
                    "image": "r",
                    "command": ["sh", "-c", check],
                    "volumeMounts": [
                        {"name": "work", "mountPath": "/work"},
                        {"name": "cfg", "mountPath": cfg_dir, "readOnly": True},
                        {"name": "kube-api-access-x", "mountPath": sa_dir, "readOnly": True},
                    ],
                }
            ],
        }
    )
    w = PodWorker(pod, host, api, net)
    task = asyncio.create_task(w.run())
    await until(lambda: api.statuses and api.last()["phase"] in ("Succeeded", "Failed"))
    out = (w.dir / "read" / "0.log").read_text().split()
    assert api.last()["phase"] == "Succeeded", out
    assert out == ["fast", "shared", "token-for-default-3607", "t", "CA"]
    # The host saw only empty mount points, recorded for cleanup; never the data.
    assert Path(cfg_dir).is_dir() and not any(Path(cfg_dir).iterdir())
    assert not Path("/work/shared.txt").exists()
    w.request_stop(0, delete=True)
    await asyncio.wait_for(task, 30)
    removed = await podnet.cleanup(tmp_path)
    assert any(cfg_dir in r for r in removed)
    assert not Path(cfg_dir).exists()
    assert not Path(sa_dir).parent.parent.exists()


@scenario
async def test_native_sidecar_runs_beside_a_job_and_stops_with_it(env: Any, tmp_path: Path) -> None:
    host, net = env
    api = Recorder()
    seen = tmp_path / "sidecar-was-up"
    pod = make_pod(
        {
            "restartPolicy": "Never",
            "initContainers": [
                {
                    "name": "proxy",
                    "image": "p",
                    "restartPolicy": "Always",
                    "command": ["sh", "-c", f"touch {seen}; exec sleep 300"],
                },
                {"name": "after", "image": "a", "command": ["test", "-e", str(seen)]},
            ],
            "containers": [{"name": "job", "image": "j", "command": ["sh", "-c", "sleep 0.5"]}],
        }
    )
    w = PodWorker(pod, host, api, net)
    task = asyncio.create_task(w.run())
    # The next init container ran only once the sidecar had started.
    await until(lambda: api.statuses and api.last()["phase"] == "Succeeded")
    inits = {c["name"]: c for c in api.last()["initContainerStatuses"]}
    assert inits["after"]["state"]["terminated"]["exitCode"] == 0
    # The job finished: the sidecar was stopped rather than keeping the pod alive.
    await until(lambda: "terminated" in api.last()["initContainerStatuses"][0]["state"])
    w.request_stop(0, delete=True)
    await asyncio.wait_for(task, 30)
