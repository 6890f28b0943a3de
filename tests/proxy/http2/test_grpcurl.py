"""grpcurl (the pinned Go build from tests/tools/build.sh) calls gRPC services through the
mesh: unary and server-streaming calls, plaintext, with `-proto` schemas.

- the grpc-canary example's greeter (examples/grpc-canary/greeter.py, the example's own
  code in this process, schema greeter.proto beside it): through two sidecars, and through
  a gateway that routes by `:authority` (greeter.example.com, as greeter.yaml's Gateway);
  the bad version v3 answers UNAVAILABLE and grpcurl prints that status (exit 64 + 14);
- the gRPC test app (grpc_app.py, schema echo.proto): through two sidecars, including a
  RESOURCE_EXHAUSTED answer and a replica that is down (UNAVAILABLE after the sidecar's
  retries on `unavailable` are spent).

A missing grpcurl fails the test with the command that builds it (tests/tools/gotools.py).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
from grpc_mesh import SERVICE, inbound, outbound
from proxy_harness import Harness

from tests.tools.gotools import tool
from tollway.proxy.main import ProxyServer
from tollway.snapshot import types

EXAMPLE = Path(__file__).parents[3] / "examples" / "grpc-canary"
HERE = Path(__file__).parent
GATEWAY_HOST = "greeter.example.com"
EXIT_STATUS = 64  # grpcurl exits 64 + the gRPC status code of a failed call


def grpcurl(proto: Path, target: str, method: str, data: str, *extra: str
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("grpcurl"), "-plaintext", "-import-path", str(proto.parent), "-proto",
         proto.name, "-max-time", "30", *extra, "-d", data, target, method],
        capture_output=True, text=True, timeout=60)


def answers(r: subprocess.CompletedProcess[str]) -> list[Any]:
    """grpcurl's JSON answers (one document per message; StringValue prints as a string)."""
    assert r.returncode == 0, r.stderr
    decoder = json.JSONDecoder()
    out, text = [], r.stdout.strip()
    while text:
        value, end = decoder.raw_decode(text)
        out.append(value)
        text = text[end:].lstrip()
    return out


def failed(r: subprocess.CompletedProcess[str], code: grpc.StatusCode, message: str) -> None:
    """grpcurl printed the status of a failed call and exited 64 + its code."""
    name = "".join(w.capitalize() for w in code.name.split("_"))  # Go's codes.Code names
    assert r.returncode == EXIT_STATUS + code.value[0], (r.returncode, r.stderr)
    assert f"Code: {name}" in r.stderr and message in r.stderr, r.stderr
    assert r.stdout == ""


# ------------------------------------------------------------------ the example's greeter

def _greeter_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("grpc_canary_greeter", EXAMPLE / "greeter.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def greeters() -> Iterator[dict[str, int]]:
    """v1 and v3 (v3 failing every call: FAIL_RATE=1) on ephemeral ports -> port."""
    module = _greeter_module()
    servers, ports = [], {}
    for version, env in (("v1", {}), ("v3", {"FAIL_RATE": "1", "DELAY_MS": "0"})):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        server.add_generic_rpc_handlers((module.handler(module.from_env(
            {"VERSION": version, **env})),))
        ports[version] = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
    yield ports
    for server in servers:
        server.stop(0)


def gateway(harness: Harness, inbound_port: int) -> ProxyServer:
    """A plaintext gateway listener for GATEWAY_HOST only, to one inbound sidecar."""
    name = "outbound|50051||greeter"
    cluster = types.Cluster(name=name, service=SERVICE, port=50051, protocol="http2",
                            endpoints=(types.Endpoint(address="127.0.0.1", port=inbound_port),))
    route = types.Route(clusters=(types.WeightedCluster(cluster=name, weight=100),))
    table = types.RouteTable(name="gw", virtual_hosts=(
        types.VirtualHost(name="greeter", domains=(GATEWAY_HOST,), routes=(route,)),))
    cfg = types.ProxyConfig(
        version="g", node=types.Node(name="gateway-0", workload="gateway", kind="gateway"),
        listeners=(types.Listener(name="gw", kind="gateway", address="127.0.0.1", port=0,
                                  route_table="gw"),),
        route_tables=(table,), clusters=(cluster,))
    return harness.proxy(cfg)


GREETER = EXAMPLE / "greeter.proto"


def test_grpcurl_calls_the_example_greeter_through_two_sidecars(
        harness: Harness, greeters: dict[str, int]) -> None:
    sidecars = {v: inbound(harness, port, v) for v, port in greeters.items()}
    for version, side_in in sidecars.items():  # each version on its own route
        side_out = outbound(harness, {version: (side_in.listener_address("in")[1], 100)},
                            retries=None)
        target = "127.0.0.1:{}".format(side_out.listener_address("out")[1])
        if version == "v1":
            r = grpcurl(GREETER, target, "greeter.Greeter/SayHello", '"grpcurl"')
            assert answers(r) == ["hello grpcurl from v1"]
            r = grpcurl(GREETER, target, "greeter.Greeter/SayHello", '"v"', "-v")
            assert r.returncode == 0, r.stderr
            assert 'Response contents:\n"hello v from v1"' in r.stdout
            # the app's trailing metadata crossed both sidecars
            assert "Response trailers received:\nx-version: v1" in r.stdout
            r = grpcurl(GREETER, target, "greeter.Greeter/SayHellos", '"s"')
            assert answers(r) == [f"hello s #{i} from v1" for i in range(3)]
        else:
            r = grpcurl(GREETER, target, "greeter.Greeter/SayHello", '"grpcurl"')
            failed(r, grpc.StatusCode.UNAVAILABLE, "greeter v3 is overloaded")
            r = grpcurl(GREETER, target, "greeter.Greeter/SayHellos", '"s"')
            failed(r, grpc.StatusCode.UNAVAILABLE, "greeter v3 is overloaded")
            # the replica counted both calls: they reached it, the status came back
            stats = answers(grpcurl(GREETER, target, "greeter.Greeter/Stats", '""'))
            assert json.loads(stats[0]) == {"version": "v3", "calls": 2, "failed": 2}


def test_grpcurl_calls_the_example_greeter_through_the_gateway(
        harness: Harness, greeters: dict[str, int]) -> None:
    side_in = inbound(harness, greeters["v1"], "v1")
    gw = gateway(harness, side_in.listener_address("in")[1])
    target = "127.0.0.1:{}".format(gw.listener_address("gw")[1])
    r = grpcurl(GREETER, target, "greeter.Greeter/SayHello", '"gateway"',
                "-authority", GATEWAY_HOST)
    assert answers(r) == ["hello gateway from v1"]
    r = grpcurl(GREETER, target, "greeter.Greeter/SayHellos", '"g"', "-authority", GATEWAY_HOST)
    assert answers(r) == [f"hello g #{i} from v1" for i in range(3)]
    # another host has no route at the gateway: its 404 reaches grpcurl as UNIMPLEMENTED
    r = grpcurl(GREETER, target, "greeter.Greeter/SayHello", '"x"', "-authority", "other.example")
    failed(r, grpc.StatusCode.UNIMPLEMENTED, "")


# ------------------------------------------------------------------ the gRPC test app

ECHO = HERE / "echo.proto"


def test_grpcurl_calls_the_test_app_through_two_sidecars(
        harness: Harness, echo: tuple[int, Any]) -> None:
    port, app = echo
    side_in = inbound(harness, port, "v1")
    side_out = outbound(harness, {"v1": (side_in.listener_address("in")[1], 100)},
                        retries=types.Retry(attempts=2, retry_on=("unavailable",)))
    target = "127.0.0.1:{}".format(side_out.listener_address("out")[1])
    assert answers(grpcurl(ECHO, target, "tollway.test.Echo/Hello", '"x"')) == ["v1:x"]
    assert answers(grpcurl(ECHO, target, "tollway.test.Echo/Hellos", '"4"')) == [
        f"v1:{i}" for i in range(4)]
    failed(grpcurl(ECHO, target, "tollway.test.Echo/Fail", '""'),
           grpc.StatusCode.RESOURCE_EXHAUSTED, "no room")
    app.down = True  # every call UNAVAILABLE: the route's retries are spent, then the status
    calls = app.calls
    failed(grpcurl(ECHO, target, "tollway.test.Echo/Hello", '"x"'),
           grpc.StatusCode.UNAVAILABLE, "v1 is not ready")
    assert app.calls - calls == 3  # the first try and 2 retries on `unavailable`
