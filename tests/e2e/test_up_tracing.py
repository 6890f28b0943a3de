"""Traces through a real `tollway up`: gateway -> frontend -> backend (examples/tracing).

- `--tracing`: a real Jaeger (built from the pinned module) gets every proxy's spans; one
  request is one trace in its HTTP API, with the parent/child chain, service names and
  status codes of each hop.
- a Zipkin provider from `--mesh-config`: a local collector checks each payload against the
  Zipkin v2 schema and gets the same eight spans.
- a dead collector: no request fails, the spans are counted as dropped.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_mesh import Mesh

from tests.spancollector import Collector

# `tollway up --tracing` starts Jaeger before the mesh; on a loaded 2-core host that and
# three meshes in a row take longer than the suite's default 120 s.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(360)]

CALLER = "00f067aa0ba902b7"
GATEWAY, FRONTEND, BACKEND = ("istio-ingressgateway.istio-system", "frontend.shop",
                              "backend.shop")


def _through_gateway(mesh: Mesh, path: str, trace_id: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{80 + mesh.offset}{path}", timeout=30,
                     headers={"host": "shop.example.com",
                              "traceparent": f"00-{trace_id}-{CALLER}-01"})


@pytest.fixture
def traced_mesh(mesh_factory: Callable[..., Mesh], tmp_path: Path
                ) -> Callable[[list[str]], Mesh]:
    def make(extra: list[str]) -> Mesh:
        return mesh_factory("tracing", extra)

    return make


def _chain(spans: list[tuple[str, str, str, str | None, str]]) -> list[tuple[str, str, str]]:
    """(service, kind, status) from the root down, following parent ids; every span
    must have exactly one child except the last."""
    by_parent: dict[str | None, list[tuple[str, str, str, str | None, str]]] = {}
    for s in spans:
        by_parent.setdefault(s[3], []).append(s)
    out = []
    node = by_parent.get(CALLER, [])
    while node:
        assert len(node) == 1, f"two children of one span: {node}"
        service, kind, span_id, _parent, status = node[0]
        out.append((service, kind, status))
        node = by_parent.get(span_id, [])
    assert len(out) == len(spans), f"spans outside the chain: {spans}"
    return out


# Envoy per hop: the SERVER span of what the proxy received, then its CLIENT span.
EXPECTED = [(GATEWAY, "server"), (GATEWAY, "client"),         # gateway -> frontend
            (FRONTEND, "server"), (FRONTEND, "client"),       # frontend's inbound -> app
            (FRONTEND, "server"), (FRONTEND, "client"),       # app -> frontend's outbound
            (BACKEND, "server"), (BACKEND, "client")]         # backend's inbound -> app


def _jaeger_trace(url: str, trace_id: str, n: int) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    last: Any = None
    while time.monotonic() < deadline:
        r = httpx.get(f"{url}/api/traces/{trace_id}", timeout=10)
        if r.status_code == 200 and r.json()["data"]:
            last = r.json()["data"][0]
            if len(last["spans"]) >= n:
                return dict(last)
        time.sleep(0.5)
    raise AssertionError(f"trace {trace_id} not complete in Jaeger: {last}")


def test_one_request_is_one_trace_in_jaeger(traced_mesh: Callable[[list[str]], Mesh]) -> None:
    mesh = traced_mesh(["--tracing"])
    line = next(ln for ln in mesh.lines if ln.startswith("tracing: "))
    assert re.fullmatch(r"tracing: http://127\.0\.0\.1:\d+\n", line), line
    url = line.split(" ", 1)[1].strip()
    for path, status in (("/hello", "200"), ("/status/404", "404")):
        trace_id = (status * 11)[:32].replace("2", "a")
        r = _through_gateway(mesh, path, trace_id)
        assert str(r.status_code) == status, r.text
        t = _jaeger_trace(url, trace_id, 8)
        spans = []
        for s in t["spans"]:
            tags = {x["key"]: x["value"] for x in s["tags"]}
            parent = s["references"][0]["spanID"] if s["references"] else None
            assert s["traceID"] == trace_id
            spans.append((t["processes"][s["processID"]]["serviceName"],
                          str(tags["span.kind"]), s["spanID"], parent,
                          str(tags["http.status_code"])))
        chain = _chain(spans)
        assert [(svc, kind) for svc, kind, _ in chain] == EXPECTED
        assert {st for _, _, st in chain} == {status}
    services = httpx.get(f"{url}/api/services", timeout=10).json()["data"]
    assert {GATEWAY, FRONTEND, BACKEND} <= set(services)


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.close()


def _zipkin_mesh_config(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "mesh.yaml"
    path.write_text(f"""\
enableTracing: true
defaultConfig:
  tracing:
    sampling: 100
defaultProviders:
  tracing: [zipkin]
extensionProviders:
- name: zipkin
  zipkin:
    service: 127.0.0.1
    port: {port}
""")
    return path


def test_zipkin_v2_json_carries_the_same_trace(
    traced_mesh: Callable[[list[str]], Mesh], collector: Collector, tmp_path: Path
) -> None:
    mesh = traced_mesh(["--mesh-config", str(_zipkin_mesh_config(tmp_path, collector.port))])
    trace_id = "b" * 32
    assert _through_gateway(mesh, "/hello", trace_id).status_code == 200
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not collector.errors and \
            sum(s["traceId"] == trace_id for s in collector.zipkin) < 8:
        time.sleep(0.2)
    assert collector.errors == []  # every payload matched the Zipkin v2 schema
    spans = [(s["localEndpoint"]["serviceName"], s["kind"].lower(), s["id"], s.get("parentId"),
              s["tags"]["http.status_code"]) for s in collector.zipkin
             if s["traceId"] == trace_id]
    chain = _chain(spans)
    assert [(svc, kind) for svc, kind, _ in chain] == EXPECTED
    assert {st for _, _, st in chain} == {"200"}


def test_a_dead_collector_costs_no_request(
    traced_mesh: Callable[[list[str]], Mesh], tmp_path: Path
) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    mesh = traced_mesh(["--mesh-config", str(_zipkin_mesh_config(tmp_path, dead))])
    statuses = [_through_gateway(mesh, "/hello", f"{i:032x}").status_code
                for i in range(1, 41)]
    assert statuses == [200] * 40
    gateway = next(m for m in mesh.members() if m["name"].startswith("istio-ingressgateway"))
    deadline = time.monotonic() + 30
    dropped = 0.0
    while time.monotonic() < deadline and dropped < 80:
        text = httpx.get(f"http://127.0.0.1:{gateway['ports']['admin']}/stats/prometheus",
                         timeout=10).text
        dropped = sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
                      if ln.startswith("tollway_tracing_spans_dropped_total{"))
        time.sleep(0.3)
    assert dropped == 80  # the gateway's SERVER + CLIENT span of each request
