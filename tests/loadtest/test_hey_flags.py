"""The bundled load tester: hey's flags parsed as hey does, and real load on a real app."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tollway.loadtest import hey
from tollway.loadtest import run as load_run


def test_hey_parses_seed08_command() -> None:
    spec = hey.parse("hey -z 1m -q 10 -c 2 http://api:8080/health")
    assert spec.duration == 60 and spec.rate_per_worker == 10 and spec.concurrency == 2
    assert spec.url == "http://api:8080/health" and spec.method == "GET"


def test_hey_parses_method_headers_body() -> None:
    spec = hey.parse(["-n", "5", "-m", "post", "-H", "x-user: beta", "-H", "a:b",
                      "-d", '{"k":1}', "-T", "application/json", "http://x/y"])
    assert spec.requests == 5 and spec.method == "POST" and spec.body == b'{"k":1}'
    assert spec.headers == (("x-user", "beta"), ("a", "b"), ("Content-Type", "application/json"))


@pytest.mark.parametrize(("cmd", "fragment"), [
    ("hey -x 1 http://a/", "-x is not supported"),
    ("hey -z 1m", "needs a URL"),
    ("hey -z forever http://a/", "-z"),
    ("hey -H nocolon http://a/", "Name: value"),
    ("hey -c", "needs a value"),
])
def test_hey_refuses_bad_commands_with_one_sentence(cmd: str, fragment: str) -> None:
    with pytest.raises(hey.HeyError, match=fragment):
        hey.parse(cmd)


def test_loadtest_sends_bounded_load_to_a_real_app(demo_app_factory: Any) -> None:
    app = demo_app_factory(ERROR_RATE="0.5")
    spec = hey.parse(f"hey -n 40 -c 4 -H x-test:1 http://127.0.0.1:{app.port}/")
    summary = asyncio.run(load_run.run(spec))
    assert summary.requests == 40
    assert summary.statuses[200] + summary.statuses[500] == 40
    assert summary.statuses[500] > 0
    assert "40 requests" in summary.render()


def test_loadtest_via_proxy_keeps_host_header(demo_app_factory: Any) -> None:
    app = demo_app_factory()
    spec = hey.parse("hey -n 3 -c 1 http://api:8080/health")
    summary = asyncio.run(load_run.run(spec, via=f"127.0.0.1:{app.port}"))
    assert summary.statuses[200] == 3
    import httpx

    stats = httpx.get(f"http://127.0.0.1:{app.port}/__demo/stats").json()
    assert stats["by_host"].get("api:8080") == 3


def test_loadtest_rate_limit_bounds_count() -> None:
    spec = hey.parse("hey -z 0.5s -q 4 -c 1 http://127.0.0.1:1/")
    summary = asyncio.run(load_run.run(spec))
    assert 1 <= summary.requests <= 3  # 4/s for half a second, refused connections
    assert summary.errors
