"""The proxy forwards, keeps connections alive, splits traffic and answers NR."""

from __future__ import annotations

import httpx
from proxy_harness import Harness, cluster, config, route


def addr(server) -> str:
    host, port = server.listener_address("main")
    return f"http://{host}:{port}"


def test_forward_get_returns_upstream_answer(harness: Harness) -> None:
    up = harness.upstream("a")
    p = harness.proxy(config([route(("c", 100))], [cluster("c", up)]))
    r = httpx.get(addr(p) + "/hello?x=1", headers={"x-envoy-force": "1"})
    assert r.status_code == 200
    body = r.json()
    assert body["upstream"] == "a"
    assert body["path"] == "/hello?x=1"
    assert "x-envoy-force" not in body["headers"]
    assert "x-request-id" in body["headers"]
