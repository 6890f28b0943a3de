"""Seeds driven through `tollway proxy --config DIR` (manifests + WorkloadEntries pointing
at real demo-app processes): what each seed promises, observed from outside."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from proxy_harness import free_port, wait_port

SEED = Path(__file__).resolve().parents[1] / "data" / "seed"


def _entries(service: str, namespace: str, apps: list[tuple[str, int]]) -> str:
    docs = [
        f"""apiVersion: v1
kind: Service
metadata:
  name: {service}
  namespace: {namespace}
spec:
  selector:
    app: {service}
  ports:
  - name: http
    port: 80
"""
    ]
    for i, (version, port) in enumerate(apps):
        docs.append(f"""apiVersion: networking.istio.io/v1beta1
kind: WorkloadEntry
metadata:
  name: {service}-{version}-{i}
  namespace: {namespace}
spec:
  address: 127.0.0.1
  ports:
    http: {port}
  labels:
    app: {service}
    version: {version}
""")
    return "---\n".join(docs)


def _subsets(service: str, namespace: str) -> str:
    return f"""---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: {service}
  namespace: {namespace}
spec:
  host: {service}
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
"""


class SeedProxy:
    def __init__(self, proc: subprocess.Popen[str], outbound: str, admin: str) -> None:
        self.proc = proc
        self.outbound = outbound
        self.admin = admin
        self.client = httpx.Client(base_url=f"http://{outbound}", timeout=10)

    def get(self, host: str, path: str = "/", **headers: str) -> httpx.Response:
        return self.client.get(path, headers={"host": host, **headers})


@pytest.fixture
def seed_proxy(tmp_path: Path) -> Iterator[object]:
    procs: list[subprocess.Popen[str]] = []

    def start(seed: str, service: str, namespace: str, versions: list[dict[str, str]]) -> SeedProxy:
        # demo apps and the proxy start in parallel: ports are chosen up front
        apps = [(env["VERSION"], free_port()) for env in versions]
        for env, (_, port) in zip(versions, apps, strict=True):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "tollway.demo.app"],
                    env=dict(os.environ, PORT=str(port), **env),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    text=True,
                )
            )
        folder = tmp_path / "m"
        folder.mkdir()
        seed_file = next(SEED.glob(f"{seed}-*.yaml"))
        (folder / seed_file.name).write_text(seed_file.read_text())
        extra = _entries(service, namespace, apps)
        if "kind: DestinationRule" not in seed_file.read_text():
            extra += _subsets(service, namespace)  # the user's DR for the subsets the VS names
        (folder / "entries.yaml").write_text(extra)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tollway",
                "proxy",
                "--config",
                str(folder),
                "--port",
                "0",
                "--admin-port",
                "0",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"outbound=(\S+) .*admin=(\S+)", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
        for _, port in apps:
            wait_port(port)
        return SeedProxy(proc, m.group(1), m.group(2))

    yield start
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _versions(p: SeedProxy, host: str, n: int, **headers: str) -> Counter[str]:
    return Counter(p.get(host, **headers).json()["version"] for _ in range(n))


def test_seed_02_canary_split_90_10(seed_proxy) -> None:
    p = seed_proxy("02", "myapp", "default", [{"VERSION": "v1"}, {"VERSION": "v2"}])
    seen = _versions(p, "myapp", 400)
    assert 20 <= seen["v2"] <= 70  # 10% of 400 = 40, sd 6


def test_seed_05_mirror_sends_shadow_copies(seed_proxy) -> None:
    p = seed_proxy("05", "myapp", "default", [{"VERSION": "v1"}, {"VERSION": "v2"}])
    assert _versions(p, "myapp", 10) == Counter({"v1": 10})
    clusters = httpx.get(f"http://{p.admin}/clusters").json()
    port_v2 = next(
        h["address"] for c in clusters["clusters"] if c["subset"] == "v2" for h in c["hosts"]
    )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        stats = httpx.get(f"http://{port_v2}/__demo/stats").json()
        if stats["total"] == 10:
            break
        time.sleep(0.05)
    assert stats["by_host"] == {"myapp-shadow": 10}


def test_seed_06_ab_header_regex(seed_proxy) -> None:
    p = seed_proxy("06", "myapp", "default", [{"VERSION": "v1"}, {"VERSION": "v2"}])
    assert p.get("myapp", **{"user-id": "user-123"}).json()["version"] == "v2"
    assert p.get("myapp", **{"user-id": "user-1234"}).json()["version"] == "v2"
    assert p.get("myapp", **{"user-id": "user-12"}).json()["version"] == "v1"
    assert p.get("myapp").json()["version"] == "v1"


def test_seed_07_outlier_detection_ejects_the_failing_replica(seed_proxy) -> None:
    p = seed_proxy(
        "07",
        "api",
        "default",
        [
            {"VERSION": "v1", "ERROR_RATE": "1", "ERROR_STATUS": "500"},
            {"VERSION": "v1"},
            {"VERSION": "v1"},
            {"VERSION": "v2"},
        ],
    )
    statuses = [p.get("api").status_code for _ in range(60)]
    assert statuses.count(500) <= 5  # ejected after 5 consecutive 5xx
    assert all(s == 200 for s in statuses[-20:])
    view = httpx.get(f"http://{p.admin}/clusters").json()
    ejected = [h for c in view["clusters"] for h in c["hosts"] if h.get("ejected")]
    assert len(ejected) == 1


def test_seed_11_payment_split_and_circuit_breaker(seed_proxy) -> None:
    p = seed_proxy(
        "11",
        "payment-service",
        "payments",
        [
            {"VERSION": "v1", "ERROR_RATE": "1", "ERROR_STATUS": "503"},
            {"VERSION": "v1"},
            {"VERSION": "v2"},
        ],
    )
    host = "payment-service.payments"
    statuses = Counter(p.get(host).status_code for _ in range(60))
    assert statuses[200] >= 55  # 503s are retried elsewhere, then the host is ejected
    view = httpx.get(f"http://{p.admin}/clusters").json()
    ejected = [h for c in view["clusters"] for h in c["hosts"] if h.get("ejected")]
    assert len(ejected) == 1


def test_seed_12_retries_on_gateway_error(seed_proxy) -> None:
    p = seed_proxy(
        "12",
        "order-service",
        "default",
        [
            {"VERSION": "v1", "ERROR_RATE": "1", "ERROR_STATUS": "502"},
            {"VERSION": "v1"},
        ],
    )
    assert all(p.get("order-service").status_code == 200 for _ in range(20))
    text = httpx.get(f"http://{p.admin}/stats/prometheus").text
    assert 'destination_service="order-service.default.svc.cluster.local"' in text


def test_seed_13_header_canary(seed_proxy) -> None:
    p = seed_proxy("13", "frontend", "default", [{"VERSION": "v1"}, {"VERSION": "v2"}])
    assert p.get("frontend", **{"x-canary-user": "true"}).json()["version"] == "v2"
    assert p.get("frontend", **{"x-user-segment": "beta"}).json()["version"] == "v2"
    assert p.get("frontend", **{"x-canary-user": "false"}).json()["version"] == "v1"
    assert _versions(p, "frontend", 10) == Counter({"v1": 10})
    dump = httpx.get(f"http://{p.admin}/config_dump").json()
    assert dump["version"]
    json.dumps(dump)
