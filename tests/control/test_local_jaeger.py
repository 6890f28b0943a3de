"""Jaeger for `tollway up --tracing`: the pinned build, the rendered config, and a real
Jaeger storing a proxy's spans (OTLP and Zipkin), read back through its HTTP query API."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from ruamel.yaml import YAML

from tollway.control.local import jaeger
from tollway.control.local.procs import PortAllocator
from tollway.snapshot import types

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proxy"))
from proxy_harness import Harness, cluster, config, route


def test_one_pinned_version_and_a_config_with_only_chosen_ports() -> None:
    assert jaeger.pinned_version() == "v1.75.0"
    text = jaeger.render_config(otlp_port=1, zipkin_port=2, query_port=3, query_grpc_port=4)
    doc = YAML(typ="safe").load(text)
    ext = doc["extensions"]
    assert ext["jaeger_query"]["http"]["endpoint"] == "127.0.0.1:3"
    assert ext["jaeger_query"]["grpc"]["endpoint"] == "127.0.0.1:4"
    assert doc["receivers"]["otlp"]["protocols"] == {"http": {"endpoint": "127.0.0.1:1"}}
    assert doc["receivers"]["zipkin"]["endpoint"] == "127.0.0.1:2"
    assert doc["service"]["telemetry"]["metrics"]["level"] == "none"  # no :8888
    assert jaeger.argv("/b/jaeger", Path("/c.yaml"), "/usr/bin/setpriv")[:4] == [
        "/usr/bin/setpriv", "--pdeathsig", "TERM", "--"]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[jaeger.MeshJaeger]:
    state = tmp_path_factory.mktemp("jaeger-state")
    lines: list[str] = []
    loop = asyncio.new_event_loop()  # one loop: the child process is bound to it
    try:
        binary = loop.run_until_complete(
            jaeger.ensure_built(state / "logs" / "build.log", lines.append))
        j = jaeger.MeshJaeger(binary, state, query_port=PortAllocator().allocate())
        loop.run_until_complete(j.start(timeout=90))
        try:
            yield j
        finally:
            loop.run_until_complete(j.stop())
            assert j.proc is not None and not j.proc.alive()
    finally:
        loop.close()


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    h.close()


def _trace(j: jaeger.MeshJaeger, trace_id: str, spans: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    got: dict[str, Any] = {}
    while time.monotonic() < deadline:
        r = httpx.get(f"{j.query_url}/api/traces/{trace_id}", timeout=5)
        if r.status_code == 200:
            data = r.json()["data"]
            if data and len(data[0]["spans"]) >= spans:
                return dict(data[0])
            got = data[0] if data else {}
        time.sleep(0.2)
    raise AssertionError(f"trace {trace_id} not complete in Jaeger: {got}")


@pytest.mark.parametrize("kind", ["opentelemetry", "zipkin"])
def test_a_proxys_spans_land_in_jaeger_as_one_trace(
    running: jaeger.MeshJaeger, harness: Harness, kind: str
) -> None:
    up = harness.upstream("up")
    endpoint = running.otlp_endpoint if kind == "opentelemetry" else running.zipkin_endpoint
    provider = types.TracingProvider(name="jaeger", kind=kind,  # type: ignore[arg-type]
                                     endpoint=endpoint)
    cfg = config([route(("c", 100))], [cluster("c", up)])
    cfg = msgspec.structs.replace(cfg, node=types.Node(
        name=f"web-0.shop-{kind}", workload="web", namespace=f"shop-{kind[:4]}",
        labels={"app": "web"}), tracing=types.Tracing(provider=provider, sampling=100.0))
    p = harness.proxy(cfg)
    host, port = p.listener_address("main")
    r = httpx.get(f"http://{host}:{port}/status/503", headers={"host": "svc"}, timeout=10)
    assert r.status_code == 503
    trace_id = up.requests[-1]["headers"]["x-b3-traceid"]
    t = _trace(running, trace_id, 4)  # SERVER, and a CLIENT per try (Istio retries 503 twice)
    services = {pid: proc["serviceName"] for pid, proc in t["processes"].items()}
    spans = {s["spanID"]: s for s in t["spans"]}
    assert len(spans) == 4
    clients = [s for s in spans.values()
               if {"key": "span.kind", "type": "string", "value": "client"} in s["tags"]]
    (server,) = [s for s in spans.values() if s not in clients]
    assert {c["spanID"] for c in clients} == {r["headers"]["x-b3-spanid"]
                                              for r in up.requests[-3:]}
    for client in clients:
        assert client["references"] == [{"refType": "CHILD_OF", "traceID": trace_id,
                                         "spanID": server["spanID"]}]
    assert server["references"] == []  # the root: the request came without a trace
    for s in (*clients, server):
        assert services[s["processID"]] == f"web.shop-{kind[:4]}"
        tags = {tag["key"]: tag["value"] for tag in s["tags"]}
        assert str(tags["http.status_code"]) == "503"
        assert tags["upstream_cluster"] == "c"
        assert tags["error"] in (True, "true")


def test_a_port_taken_after_it_was_chosen_is_chosen_again(
    running: jaeger.MeshJaeger, tmp_path: Path
) -> None:
    import socket

    j = jaeger.MeshJaeger(running.binary, tmp_path, query_port=PortAllocator().allocate())
    taken = j.query_port
    with socket.socket() as s:  # someone else binds it between the choice and the start
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", taken))
        s.listen()
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(j.start(timeout=60))
            assert j.query_port != taken
            assert httpx.get(f"{j.query_url}/api/services", timeout=5).status_code == 200
        finally:
            loop.run_until_complete(j.stop())
            loop.close()
