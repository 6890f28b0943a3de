"""examples/grpc-canary through a real `tollway up`: grpcio clients, real sidecars.

- A gRPC canary split 80/20 and retried on `unavailable`: a flaky v2 (every other call
  UNAVAILABLE) at the Rollout's 20% step; 500 calls through the client proxy all succeed,
  split about 80/20, and the canary's own count of calls is exactly the successes it
  answered plus the UNAVAILABLE ones the client proxy retried.
- Judged on gRPC status: a healthy v2 is promoted by the judge; a v3 that fails 20% of
  its calls UNAVAILABLE (HTTP 200 each, no added latency: only the grpc-status tells) is
  rolled back, while its callers, retried, see no failure. With the `prometheus` binary
  the mesh runs its own Prometheus, and the same failures are there: a success ratio by
  `response_code` alone reads 100% for the canary, with `grpc_response_status=~"|0"` ~80%.
- The ingress gateway (plaintext): `curl --http2-prior-knowledge` and `curl --http2`
  (Upgrade: h2c) with gRPC requests, a grpcio channel, and `h2load` when installed.

The copy of the example under test only lengthens the first pause (so the split can be
counted at 20%; `tollway rollout promote` ends it) and shortens the second.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from e2e_mesh import EXAMPLES, Mesh, wait_until
from e2e_mesh import _free_port as free_port
from google.protobuf.wrappers_pb2 import StringValue

from tests.conftest import reap_members

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("grpc-canary")]

EXAMPLE = EXAMPLES / "grpc-canary"
_spec = importlib.util.spec_from_file_location("grpc_canary_client", EXAMPLE / "client.py")
assert _spec is not None and _spec.loader is not None
example_client = importlib.util.module_from_spec(_spec)  # the example's own client code
_spec.loader.exec_module(example_client)

CURL = shutil.which("curl")
H2LOAD = shutil.which("h2load")
PROMETHEUS = shutil.which("prometheus")
GATEWAY_HOST = "greeter.example.com"
# a gRPC request message: 5-byte frame header + StringValue("curl") (field 1, length 4)
CURL_CALL = b"\x00\x00\x00\x00\x06\x0a\x04curl"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    root = tmp_path_factory.mktemp("grpc") / "grpc-canary"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".tollway", "__pycache__"))
    rollout = root / "rollout.yaml"
    text = rollout.read_text()
    for old, new in (("pause: {duration: 20s}", "pause: {duration: 1h}"),
                     ("pause: {duration: 10s}", "pause: {duration: 2s}")):
        assert old in text
        text = text.replace(old, new)
    rollout.write_text(text)
    m = Mesh(root)
    m.offset = free_port() - 80  # the Gateway's port 80 lands on a free port
    if PROMETHEUS is not None:  # the mesh's own Prometheus, scraping the sidecars
        m.extra_args = ["--prometheus-port", str(free_port())]
    try:
        m.start()
        wait_until(lambda: _status(m).get("phase") == "Healthy" and len(_greeters(m)) == 2,
                   90, "two ready v1 replicas")
        yield m
    finally:
        m.stop()
        reap_members(root / ".tollway" / "members.json")


def _status(mesh: Mesh) -> dict[str, Any]:
    r = httpx.get(mesh.url + "/v1/rollouts/default/greeter", timeout=5)
    return dict(r.json().get("status") or {}) if r.status_code == 200 else {}


def _weight(st: dict[str, Any]) -> int:
    return int(((st.get("canary") or {}).get("weights") or {}).get("canary", {})
               .get("weight", 0))


def _greeters(mesh: Mesh) -> list[dict[str, Any]]:
    return [m for m in mesh.members() if str(m["workload"]).startswith("greeter-")
            and m["ready"] and not m["stopping"]]


def _stats(app_port: int) -> dict[str, Any]:
    """A replica's own counts, asked of its app directly (not through the mesh)."""
    with grpc.insecure_channel(f"127.0.0.1:{app_port}",
                               options=[("grpc.enable_http_proxy", 0)]) as ch:
        stats = ch.unary_unary("/greeter.Greeter/Stats",
                               request_serializer=StringValue.SerializeToString,
                               response_deserializer=StringValue.FromString)
        return dict(json.loads(stats(StringValue(), timeout=10).value))


def _by_version(mesh: Mesh) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for m in _greeters(mesh):
        s = _stats(m["ports"]["app"])
        out.setdefault(s["version"], []).append(s)
    return out


def _inbound_grpc_statuses(mesh: Mesh, version: str) -> Counter[str]:
    """grpc_response_status -> calls, from the sidecars in front of `version`'s replicas
    (`reporter="destination"`, the series the judge reads); all of them answered HTTP 200."""
    from prometheus_client.parser import text_string_to_metric_families

    out: Counter[str] = Counter()
    for m in _greeters(mesh):
        if _stats(m["ports"]["app"])["version"] != version:
            continue
        text = httpx.get(f"http://127.0.0.1:{m['ports']['admin']}/stats/prometheus",
                         timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = sample.labels
                if (sample.name == "istio_requests_total"
                        and labels.get("reporter") == "destination"):
                    assert labels["request_protocol"] == "grpc", labels
                    assert labels["response_code"] == "200", labels
                    out[labels["grpc_response_status"]] += int(sample.value)
    return out


def _prometheus_sees_grpc_failures(mesh: Mesh) -> None:
    """The Prometheus path: the canaries' series in the mesh's Prometheus carry the gRPC
    status (flaky v2 50%, v3 20% UNAVAILABLE, all HTTP 200), so the selector `tollway
    analyze` suggests reads the failures where a query by response_code alone reads none."""
    url = f"http://127.0.0.1:{mesh.extra_args[1]}"
    sel = 'reporter="destination",destination_workload=~"greeter-.*"'

    def query(expr: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=20)
        body = r.json()
        assert r.status_code == 200 and body["status"] == "success", (expr, body)
        return list(body["data"]["result"])

    by = "sum by (destination_workload, grpc_response_status, response_code) "
    rows: list[dict[str, Any]] = []

    def have_failures() -> bool:
        nonlocal rows
        rows = query(by + f"(istio_requests_total{{{sel}}})")
        return any(r["metric"].get("grpc_response_status") == "14" for r in rows)

    wait_until(have_failures, 30, "Prometheus to scrape the UNAVAILABLE answers")
    failed = {r["metric"]["destination_workload"] for r in rows
              if r["metric"].get("grpc_response_status") == "14"}
    assert all(r["metric"]["response_code"] == "200" for r in rows), rows
    for workload in failed:
        one = f'reporter="destination",destination_workload="{workload}"'
        ok = query(f'sum(istio_requests_total{{{one},response_code!~"5.*",'
                   f'grpc_response_status=~"|0"}}) / sum(istio_requests_total{{{one}}})')
        blind = query(f'sum(istio_requests_total{{{one},response_code!~"5.*"}}) '
                      f'/ sum(istio_requests_total{{{one}}})')
        assert float(blind[0]["value"][1]) == 1.0  # by response_code: a flawless canary
        assert float(ok[0]["value"][1]) < 0.9, (workload, ok)  # it failed 20% / 50%


def _set_image(mesh: Mesh, version: str, *env: str) -> None:
    args = [a for e in (f"VERSION={version}", *env) for a in ("--env", e)]
    done = mesh.cli("rollout", "set-image", "greeter", f"greeter:{version}", *args)
    assert done.returncode == 0, done.stdout + done.stderr


def _cli(mesh: Mesh, *args: str) -> None:
    done = mesh.cli("rollout", *args)
    assert done.returncode == 0, done.stdout + done.stderr


def _client_split(mesh: Mesh) -> dict[str, tuple[int, list[str]]]:
    """What the client proxy has applied for greeter: subset -> (route weight, workloads
    of the subset's endpoints), read from its own /config_dump."""
    cfg = mesh.applied_config()  # (fields at their defaults left out: weight 100, no subset)
    weights = {wc.get("subset", ""): int(wc.get("weight", 100))
               for rt in cfg.get("route_tables") or () for vh in rt.get("virtual_hosts") or ()
               for r in vh.get("routes") or () for wc in r.get("clusters") or ()
               if str(wc.get("host", "")).startswith("greeter.")}
    workloads = {c.get("subset", ""): sorted({e.get("workload", "") for e in
                                              c.get("endpoints") or ()})
                 for c in cfg.get("clusters") or () if c["service"].startswith("greeter.")}
    return {subset: (w, workloads.get(subset, [])) for subset, w in weights.items()}


def _client_routes(mesh: Mesh, canary: int, version: str) -> bool:
    """The client proxy sends `canary`% to the canary subset, whose endpoints are exactly
    the ready replicas of `version` (a rollout's status and its ready replicas come before
    the push that carries them to the proxies)."""
    try:
        want = sorted({m["workload"] for m in _greeters(mesh)
                       if _stats(m["ports"]["app"])["version"] == version})
        split = _client_split(mesh)
    except (httpx.HTTPError, grpc.RpcError):  # a replica going away meanwhile: ask again
        return False
    weight, workloads = split.get("canary", (0, []))
    return weight == canary and split.get("stable", (0, []))[0] == 100 - canary and (
        canary == 0 or (bool(want) and workloads == want))


def _wait_client_routes(mesh: Mesh, canary: int, version: str) -> None:
    try:
        wait_until(lambda: _client_routes(mesh, canary, version), 60,
                   f"the client proxy to route {canary}% to {version}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; it has {_client_split(mesh)}") from None


def _paused_at_20(mesh: Mesh) -> bool:
    st = _status(mesh)
    return (st.get("phase") == "Paused" and _weight(st) == 20
            and st.get("currentStepIndex") == 1)


class Load:
    """One grpcio caller through the client proxy at a steady pace: who answered, and
    every failure the caller saw."""

    def __init__(self, mesh: Mesh, rps: float = 50.0) -> None:
        self.target = f"127.0.0.1:{mesh.client_port}"
        self.rps = rps
        self.seen: Counter[str] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with example_client.channel(self.target, "greeter:50051") as ch:
            stub = example_client.say_hello(ch)
            next_at = time.monotonic()
            while not self._stop.is_set():
                version, status = example_client.call(stub, "load")
                if status == "OK":
                    self.seen[version] += 1
                else:
                    self.failures.append(f"{time.monotonic():.2f} {status}")
                next_at += 1.0 / self.rps
                time.sleep(max(0.0, next_at - time.monotonic()))

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)


@pytest.mark.timeout(420)
def test_grpc_canary_split_80_20_retried_then_promoted_and_rolled_back(mesh: Mesh) -> None:
    # 1. a flaky v2 at 20%: every other call it gets is UNAVAILABLE, the route retries it
    _set_image(mesh, "v2", "FAIL_RATE=0.5")
    wait_until(lambda: _paused_at_20(mesh) and "v2" in _by_version(mesh), 90,
               "the flaky v2 canary at 20%")
    # the client proxy holds the 20% route and the canary's endpoint: the rollout's status
    # says Paused as soon as it applied them, before the push reached the proxies
    _wait_client_routes(mesh, 20, "v2")
    before = {v: sum(s["calls"] for s in rows) for v, rows in _by_version(mesh).items()}
    seen: Counter[tuple[str, str]] = Counter()
    with example_client.channel(f"127.0.0.1:{mesh.client_port}", "greeter:50051") as ch:
        stub = example_client.say_hello(ch)
        for i in range(500):
            seen[example_client.call(stub, f"n{i}")] += 1
    assert sum(n for (_, status), n in seen.items() if status != "OK") == 0, seen
    v1, v2 = seen[("v1", "OK")], seen[("v2", "OK")]
    assert v1 + v2 == 500 and 60 <= v2 <= 140, seen  # 20% of 500 = 100 (sd ~9)
    [canary] = _by_version(mesh)["v2"]
    attempts = canary["calls"] - before.get("v2", 0)
    # every upstream try at v2: the calls it answered, plus the UNAVAILABLE ones retried
    assert attempts == v2 + canary["failed"], (canary, seen)
    assert canary["failed"] >= v2 - 1 and attempts >= 2 * v2 - 1, (canary, seen)
    # the canary's sidecar counted the same tries, each with its gRPC status (HTTP 200)
    statuses = _inbound_grpc_statuses(mesh, "v2")
    assert statuses["14"] == canary["failed"] and statuses["0"] == canary["calls"] - canary[
        "failed"], (statuses, canary)
    stable_calls = sum(s["calls"] for s in _by_version(mesh)["v1"]) - before["v1"]
    assert stable_calls == v1  # nothing failed at v1: one try per call
    _cli(mesh, "abort", "greeter")
    wait_until(lambda: _weight(_status(mesh)) == 0, 30, "the abort to take v2's traffic")

    with Load(mesh) as load:
        # 2. a healthy v2: the judge passes it at 20% and at 50%, then it is promoted
        _set_image(mesh, "v2", "FAIL_RATE=0")
        wait_until(lambda: _paused_at_20(mesh), 90, "the healthy v2 at 20%")
        _cli(mesh, "promote", "greeter")
        wait_until(lambda: _status(mesh).get("phase") == "Healthy"
                   and set(_by_version(mesh)) == {"v2"}, 150, "v2 promoted by the judge")
        runs = [r for r in _status(mesh).get("analysisRuns") or []]
        assert [r["phase"] for r in runs[-2:]] == ["Successful", "Successful"], runs[-2:]
        # 3. v3 fails 20% of its calls UNAVAILABLE (HTTP 200, no delay): rolled back
        _set_image(mesh, "v3", "FAIL_RATE=0.2", "DELAY_MS=0")
        wait_until(lambda: _paused_at_20(mesh), 90, "v3 at 20%")
        _cli(mesh, "promote", "greeter")
        wait_until(lambda: _status(mesh).get("phase") == "Degraded", 120,
                   "the judge to roll v3 back")
        st = _status(mesh)
        assert _weight(st) == 0 and st.get("abort") is True, st
        last = (st.get("analysisRuns") or [])[-1]
        assert last["phase"] == "Failed", last
        message = json.dumps(last)
        assert "canary errors" in message, message
        v3 = _by_version(mesh).get("v3", [])
        assert not v3 or v3[0]["failed"] > 0
        if PROMETHEUS is not None:
            _prometheus_sees_grpc_failures(mesh)
        after = sum(load.seen.values())
        # the load goes on after the rollback: its calls are counted as they come back
        wait_until(lambda: sum(load.seen.values()) > after + 50, 60, "calls after the abort")
    assert load.failures == [], load.failures[:10]  # retries hid every UNAVAILABLE
    assert load.seen["v3"] > 0 and sum(load.seen.values()) > after  # v3 served, then v2
    # Degraded is recorded when the weight 0 is applied, before the push reaches the client
    _wait_client_routes(mesh, 0, "v3")
    with example_client.channel(f"127.0.0.1:{mesh.client_port}", "greeter:50051") as ch:
        stub = example_client.say_hello(ch)
        back = Counter(example_client.call(stub, "after")[0] for _ in range(50))
    assert back == Counter({"v2": 50}), back  # all traffic on the stable v2 again


def _curl(*args: str) -> subprocess.CompletedProcess[str]:
    assert CURL is not None
    return subprocess.run([CURL, "-sS", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
def test_curl_http2_through_the_gateway(mesh: Mesh, tmp_path: Path) -> None:
    port = 80 + mesh.offset
    url = f"http://{GATEWAY_HOST}:{port}/greeter.Greeter/SayHello"
    resolve = ["--resolve", f"{GATEWAY_HOST}:{port}:127.0.0.1"]
    grpc_headers = ["-H", "content-type: application/grpc", "-H", "te: trailers"]
    body = tmp_path / "call.bin"
    body.write_bytes(CURL_CALL)
    out = tmp_path / "reply.bin"
    # h2c with prior knowledge: a unary gRPC call, its status in the trailers
    r = _curl("--http2-prior-knowledge", *resolve, *grpc_headers, "--data-binary",
              f"@{body}", "-D", "-", "-o", str(out), url)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("HTTP/2 200"), r.stdout
    assert "grpc-status: 0" in r.stdout and "x-version: v" in r.stdout, r.stdout
    assert b"hello curl from v" in out.read_bytes()
    # `--http2` on http:// asks `Upgrade: h2c`; bodiless, the request becomes stream 1 and
    # reaches the gRPC server (which wants a message: its own status comes back)
    r = _curl("--http2", "-v", *resolve, *grpc_headers, "-X", "POST", url)
    assert r.returncode == 0, r.stderr
    assert "HTTP/1.1 101 Switching Protocols" in r.stderr and "< HTTP/2 200" in r.stderr
    assert "grpc-status: 12" in r.stderr and "requires exactly one request message" in r.stderr
    # with a body curl's upgrade is not taken (the request is answered in HTTP/1.1, the
    # gateway translates to the sidecars' HTTP/2): the reply message still arrives
    r = _curl("--http2", "-v", *resolve, *grpc_headers, "--data-binary", f"@{body}",
              "-o", str(out), url)
    assert r.returncode == 0, r.stderr
    assert "< HTTP/1.1 200 OK" in r.stderr and b"hello curl from v" in out.read_bytes()


def test_grpcio_and_h2load_through_the_gateway(mesh: Mesh, tmp_path: Path) -> None:
    target = f"127.0.0.1:{80 + mesh.offset}"
    with example_client.channel(target, GATEWAY_HOST) as ch:
        stub = example_client.say_hello(ch)
        answers = Counter(example_client.call(stub, f"g{i}")[1] for i in range(20))
        streamed = ch.unary_stream("/greeter.Greeter/SayHellos",
                                   request_serializer=StringValue.SerializeToString,
                                   response_deserializer=StringValue.FromString)
        replies = [m.value for m in streamed(StringValue(value="s"), timeout=10)]
    assert answers == Counter({"OK": 20})
    assert len(replies) == 3 and all(r.startswith("hello s #") for r in replies), replies
    if H2LOAD is None:
        pytest.skip("h2load is not installed (nghttp2-client): the grpcio part passed")
    body = tmp_path / "call.bin"
    body.write_bytes(CURL_CALL)
    done = subprocess.run(
        [H2LOAD, "-n", "200", "-c", "2", "-m", "10", "-d", str(body),
         "-H", "content-type: application/grpc", "-H", "te: trailers",
         "-H", f":authority: {GATEWAY_HOST}",
         f"http://{target}/greeter.Greeter/SayHello"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "200 succeeded, 0 failed, 0 errored" in done.stdout, done.stdout
    assert "status codes: 200 2xx" in done.stdout, done.stdout


def test_grpcurl_through_the_gateway_and_the_client_proxy(mesh: Mesh) -> None:
    """grpcurl (the pinned build of tests/tools/build.sh) with the example's greeter.proto:
    unary and server streaming through `tollway up`'s gateway (routed by :authority) and
    through the client proxy and the greeter's sidecar."""
    from tests.tools.gotools import tool

    def grpcurl(target: str, authority: str, method: str) -> list[str]:
        r = subprocess.run(
            [tool("grpcurl"), "-plaintext", "-import-path", str(EXAMPLE), "-proto",
             "greeter.proto", "-authority", authority, "-max-time", "30", "-d", '"grpcurl"',
             target, method], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return [json.loads(line) for line in r.stdout.split("\n") if line.strip()]

    for target, authority in ((f"127.0.0.1:{80 + mesh.offset}", GATEWAY_HOST),
                              (f"127.0.0.1:{mesh.client_port}", "greeter:50051")):
        (one,) = grpcurl(target, authority, "greeter.Greeter/SayHello")
        assert one.startswith("hello grpcurl from v"), one
        many = grpcurl(target, authority, "greeter.Greeter/SayHellos")
        assert [m.rsplit(" from ", 1)[0] for m in many] == [
            f"hello grpcurl #{i}" for i in range(3)], many
