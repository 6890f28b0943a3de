"""The sidecar's status port: ISTIO_KUBE_APP_PROBERS read strictly, and /app-health/...
answered by probing a real app on loopback (its 2xx/3xx as 200, other codes passed on,
no answer as 503), /healthz/ready following the proxy's readiness."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import free_port
from tollway.proxy import status


def test_probers_parse_istios_shape() -> None:
    text = json.dumps({
        "/app-health/web/livez": {"httpGet": {"path": "/live", "port": 8080, "scheme": "HTTPS",
                                              "httpHeaders": [{"name": "X-A", "value": "b"}]},
                                  "timeoutSeconds": 3},
        "/app-health/web/readyz": {"httpGet": {"port": 8080}}})
    got = status.parse_probers(text)
    assert got == {
        "/app-health/web/livez": status.Prober(port=8080, path="/live", scheme="HTTPS",
                                               headers=(("X-A", "b"),), timeout=3.0),
        "/app-health/web/readyz": status.Prober(port=8080)}
    assert status.parse_probers(None) == {} and status.parse_probers(" ") == {}


@pytest.mark.parametrize(("text", "named"), [
    ("{", "not JSON"), ("[]", "object"),
    ('{"/x": {"httpGet": {"port": 1}}}', "does not start with /app-health/"),
    ('{"/app-health/a/livez": {"exec": {}}}', "only httpGet"),
    ('{"/app-health/a/livez": {"httpGet": {"port": "http"}}}', "port number"),
    ('{"/app-health/a/livez": {"httpGet": {"port": 80, "scheme": "FTP"}}}', "HTTP or HTTPS"),
])
def test_bad_probers_are_named(text: str, named: str) -> None:
    with pytest.raises(status.ProberError) as err:
        status.parse_probers(text)
    assert named in str(err.value) and "ISTIO_KUBE_APP_PROBERS" in str(err.value)


@given(st.one_of(st.none(), st.integers(min_value=100, max_value=599)))
def test_verdict(code: int | None) -> None:
    got = status.verdict(code)
    if code is None:
        assert got == 503
    elif 200 <= code < 400:  # the kubelet's success range
        assert got == 200
    else:
        assert got == code


def test_request_carries_the_probe_headers_and_path() -> None:
    raw = status.request_bytes(status.Prober(port=9, path="healthz",
                                             headers=(("Host", "app.local"),)))
    assert raw.startswith(b"GET /healthz HTTP/1.1\r\n")
    assert b"Host: app.local\r\n" in raw and raw.count(b"Host:") == 1
    assert raw.endswith(b"Connection: close\r\n\r\n")


def test_status_port_probes_the_app_on_loopback(demo_app_factory: Any) -> None:
    app = demo_app_factory()
    closed = free_port()
    ready = {"yes": False}
    probers = {
        "/app-health/web/livez": status.Prober(port=app.port, path="/"),
        "/app-health/web/readyz": status.Prober(port=app.port, path="/status/503"),
        "/app-health/web/startupz": status.Prober(port=closed, timeout=2.0),
    }

    def metrics() -> tuple[int, str, bytes]:
        return 200, "text/plain; version=0.0.4", b"istio_requests_total 1\n"

    async def run() -> dict[str, int]:
        server = status.StatusServer(lambda: ready["yes"], probers, metrics=metrics)
        host, port = await server.start("127.0.0.1", 0)
        out: dict[str, int] = {}
        try:
            async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=10) as c:
                for path in [*probers, "/app-health/other/livez", "/healthz/ready"]:
                    out[path] = (await c.get(path)).status_code
                ready["yes"] = True
                out["ready-after"] = (await c.get("/healthz/ready")).status_code
                scraped = await c.get("/stats/prometheus")
                assert scraped.text == "istio_requests_total 1\n"
                assert scraped.headers["content-type"] == "text/plain; version=0.0.4"
        finally:
            await server.close()
        return out

    got = asyncio.run(run())
    assert got == {"/app-health/web/livez": 200, "/app-health/web/readyz": 503,
                   "/app-health/web/startupz": 503, "/app-health/other/livez": 404,
                   "/healthz/ready": 503, "ready-after": 200}


def test_a_silent_app_times_out_as_503() -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    try:
        code = asyncio.run(status.probe(status.Prober(port=silent.getsockname()[1],
                                                      timeout=0.5)))
        assert code is None
    finally:
        silent.close()
