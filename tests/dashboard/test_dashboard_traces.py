"""The dashboard's Traces panel: rows from Jaeger's answers [pure], and in a real Chromium
on `tollway up --tracing` a request found by its x-request-id links to its trace."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.dashboard.browser_kit import Watched, control_plane
from tests.e2e.e2e_mesh import EXAMPLES, Mesh, running
from tollway.dashboard import traces
from tollway.dashboard import web as dashboard_web


def _span(sid: str, parent: str | None, proc: str, start: int, dur: int, status: str,
          **tags: str) -> dict[str, Any]:
    refs = [{"refType": "CHILD_OF", "spanID": parent}] if parent else []
    return {"spanID": sid, "references": refs, "processID": proc, "startTime": start,
            "duration": dur, "operationName": f"op-{sid}",
            "tags": [{"key": "http.status_code", "value": status}]
            + [{"key": k.replace("_", "."), "value": v} for k, v in tags.items()]}


def test_rows_name_root_request_path_worst_status_and_links() -> None:
    trace = {"traceID": "t1", "processes": {"p1": {"serviceName": "gw.ns"},
                                            "p2": {"serviceName": "back.ns"}},
             "spans": [_span("b", "a", "p2", 1_000_300, 100, "503", error="true"),
                       _span("a", "caller", "p1", 1_000_000, 900, "503",
                             **{"guid:x-request-id": "rid-1", "http_method": "GET"})]}
    older = {"traceID": "t0", "processes": {"p": {"serviceName": "gw.ns"}},
             "spans": [_span("z", None, "p", 5, 10, "200")]}
    out = traces.view([{"data": [trace, older]}, {"data": [trace]}, {"data": None}], "http://j")
    assert [r["trace_id"] for r in out["traces"]] == ["t1", "t0"]  # newest first, deduped
    row = out["traces"][0]
    assert (row["root"], row["operation"], row["request_id"]) == ("gw.ns", "op-a", "rid-1")
    assert row["services"] == ["gw.ns", "back.ns"]
    assert (row["status"], row["error"], row["spans"]) == (503, True, 2)
    assert row["duration_ms"] == 0.9
    assert row["link"] == "http://j/trace/t1" and row["json"] == "http://j/api/traces/t1"
    assert traces.row({"traceID": "x", "spans": []}, "u") is None
    assert not traces.disabled()["enabled"]


def test_a_trace_in_several_answers_keeps_its_fullest_copy() -> None:
    # each proxy exports its own batches: the backend's answer came before the gateway's
    # spans reached Jaeger, the gateway's answer after (whichever order they are listed in)
    procs = {"g": {"serviceName": "gw.ns"}, "b": {"serviceName": "back.ns"}}
    gateway = _span("a", "caller", "g", 1_000_000, 900, "200")
    backend = _span("b", "a", "b", 1_000_300, 100, "200")
    part = {"traceID": "t1", "processes": procs, "spans": [backend]}
    whole = {"traceID": "t1", "processes": procs, "spans": [backend, gateway]}
    for answers in ([part], [whole]), ([whole], [part]):
        out = traces.view([{"data": a} for a in answers], "http://j")
        (r,) = out["traces"]
        assert (r["root"], r["spans"], r["services"]) == ("gw.ns", 2, ["gw.ns", "back.ns"])


def test_without_tracing_the_panel_stays_hidden(browser: Any) -> None:
    with control_plane(dashboard_web.routes) as origin:
        assert httpx.get(f"{origin}/v1/dashboard/traces").json()["enabled"] is False
        w = Watched(browser, origin)
        w.wait("() => Number(document.body.dataset.updates) >= 2", "two refreshes")
        assert w.page.locator("#traces-panel").is_hidden()
        w.check_clean()


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[Mesh]:
    root = tmp_path / "tracing"
    shutil.copytree(EXAMPLES / "tracing", root)
    with running(root, ["--tracing"]) as m:
        yield m


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_request_links_to_its_trace(browser: Any, traced: Mesh) -> None:
    jaeger = next(ln for ln in traced.lines if ln.startswith("tracing: ")).split()[1]
    gateway = f"http://127.0.0.1:{80 + traced.offset}"
    answers = [httpx.get(f"{gateway}/item/{i}", headers={"host": "shop.example.com"},
                         timeout=30) for i in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    rid = answers[1].json()["headers"]["X-Request-ID"]  # what the app saw
    trace_id = answers[1].json()["headers"]["traceparent"].split("-")[1]
    w = Watched(browser, traced.url)
    w.wait(f"""() => document.querySelector('#trace-rows tr[data-trace="{trace_id}"]')
           !== null""", "the request's trace in the Traces panel", timeout_ms=60_000)
    w.page.fill("#trace-find", rid)
    w.wait("() => document.querySelectorAll('#trace-rows tbody tr').length === 1",
           "only the request found by its x-request-id")
    # each proxy exports its spans in its own batches, so Jaeger (and the panel, which
    # re-asks it on every refresh) may first hold part of the trace: wait for all hops
    path = "istio-ingressgateway.istio-system → frontend.shop → backend.shop"
    w.wait(f"""() => (document.querySelector('#trace-rows tr[data-trace="{trace_id}"]')
           ?.innerText || '').includes({path!r})""",
           "the whole path once every proxy's spans reached Jaeger", timeout_ms=60_000)
    row = w.page.locator(f'#trace-rows tr[data-trace="{trace_id}"]')
    text = row.inner_text()
    assert "istio-ingressgateway.istio-system → frontend.shop → backend.shop" in text
    assert rid in text and "GET http://shop.example.com/item/1" in text
    assert row.locator("a", has_text="open").get_attribute("href") == \
        f"{jaeger}/trace/{trace_id}"
    json_link = row.locator("a", has_text="json").get_attribute("href")
    assert json_link == f"{jaeger}/api/traces/{trace_id}"
    deadline, spans = time.monotonic() + 60, 0
    while spans != 8 and time.monotonic() < deadline:  # the last batch may still be on its way
        spans = len(httpx.get(json_link, timeout=10).json()["data"][0]["spans"])
        time.sleep(0 if spans == 8 else 0.5)
    assert spans == 8, f"the trace has {spans} spans in Jaeger, 8 expected"
    w.check_clean()
