"""A snapshot's Telemetry on a real proxy: access logs in Envoy's text format and Istio's
JSON, filtered by a CEL expression, written to a file by the log thread; metric tag
overrides (route_name added, a tag removed, a metric disabled) as Prometheus scrapes them;
a push that turns logs on or off takes effect for the next request."""

from __future__ import annotations

import collections
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families
from proxy_harness import Harness, cluster, config, route

from tests.conftest import eventually
from tollway.proxy.chain.stream import Exchange
from tollway.snapshot import codec, types


@pytest.fixture
def harness() -> Any:
    h = Harness()
    yield h
    h.close()


def _url(p: Any, path: str) -> str:
    host, port = p.listener_address("main")
    return f"http://{host}:{port}{path}"


def _admin(p: Any, path: str) -> httpx.Response:
    host, port = p.admin_address
    return httpx.get(f"http://{host}:{port}{path}", timeout=10)


def _with(cfg: types.ProxyConfig, telemetry: types.Telemetry, version: str = "") -> Any:
    return msgspec.structs.replace(cfg, telemetry=telemetry, version=version or cfg.version)


def _lines(path: Path, n: int) -> list[str]:
    def ready() -> list[str] | None:
        lines = path.read_text().splitlines() if path.exists() else []
        return lines if len(lines) >= n else None
    found: list[str] = eventually(ready, 20, f"{n} access log lines in {path}")
    return found


def test_text_and_json_logs_with_filter_and_route_name(harness: Harness,
                                                       tmp_path: Path) -> None:
    up = harness.upstream()
    text, js = tmp_path / "text.log", tmp_path / "json.log"
    tel = types.Telemetry(access_logs=(
        types.AccessLog(path=str(text)),
        types.AccessLog(path=str(js), encoding="JSON",
                        filter="response.code >= 400 || request.url_path.startsWith('/x')"),
    ))
    cfg = config([route(("c", 100), name="api-route")], [cluster("c", up)])
    p = harness.proxy(_with(cfg, tel))
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    for path in ("/ok", "/x/1?q=2", "/ok2"):
        assert httpx.get(_url(p, path), headers={"user-agent": "ua/1", "traceparent": tp},
                         timeout=10).status_code == 200
    lines = _lines(text, 3)
    m = re.match(r'^\[(\S+)\] "GET /ok HTTP/1.1" 200 - via_upstream - "-" 0 (\d+) (\d+) \d+ '
                 r'"-" "ua/1" "([0-9a-f-]+)" "127.0.0.1:\d+" "127.0.0.1:\d+" c - '
                 r'127.0.0.1:\d+ 127.0.0.1:\d+ - api-route$', lines[0])
    assert m, lines[0]
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", m[1])
    (only,) = _lines(js, 1)  # /ok and /ok2 filtered out
    entry = json.loads(only)
    assert entry["path"] == "/x/1?q=2" and entry["response_code"] == 200
    assert entry["route_name"] == "api-route" and entry["upstream_cluster"] == "c"
    assert entry["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert entry["upstream_host"].startswith("127.0.0.1:") and entry["response_flags"] == "-"
    assert isinstance(entry["bytes_sent"], int) and entry["upstream_local_address"] is None


def test_a_push_turns_logs_on_and_off_for_the_next_request(harness: Harness,
                                                           tmp_path: Path) -> None:
    up = harness.upstream()
    log = tmp_path / "a.log"
    cfg = config([route(("c", 100))], [cluster("c", up)])
    p = harness.proxy(cfg)
    httpx.get(_url(p, "/before"), timeout=10)
    assert p.snapshot is not None and p.snapshot.plans["main"].logger is None  # off: no logger
    harness.apply(p, _with(cfg, types.Telemetry(access_logs=(
        types.AccessLog(path=str(log), text_format="%REQ(:PATH)% %RESPONSE_CODE%"),)), "v2"))
    httpx.get(_url(p, "/during"), timeout=10)
    assert _lines(log, 1) == ["/during 200"]
    harness.apply(p, _with(cfg, types.Telemetry(), "v3"))
    httpx.get(_url(p, "/after"), timeout=10)
    p.metrics.logs.flush()
    assert log.read_text().splitlines() == ["/during 200"]


def test_server_only_log_skips_an_outbound_listener(harness: Harness, tmp_path: Path) -> None:
    up = harness.upstream()
    log = tmp_path / "s.log"
    cfg = config([route(("c", 100))], [cluster("c", up)])
    p = harness.proxy(_with(cfg, types.Telemetry(access_logs=(
        types.AccessLog(path=str(log), client=False),))))
    assert p.snapshot is not None and p.snapshot.plans["main"].logger is None


def _series(text: str, family: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith(family + "{")]


def test_tag_overrides_add_route_name_remove_a_tag_disable_a_metric(harness: Harness) -> None:
    up = harness.upstream()
    tel = types.Telemetry(client_metrics=(
        types.MetricOverride(metric="REQUEST_COUNT", tags=(
            types.TagOverride(name="route_name", value="xds.route_name"),
            types.TagOverride(name="request_protocol", remove=True))),
        types.MetricOverride(metric="REQUEST_SIZE", disabled=True),
        types.MetricOverride(metric="REQUEST_DURATION", tags=(
            types.TagOverride(name="response_code", remove=True),)),
    ))
    buy = types.RouteMatch(uri=types.StringMatch(kind="prefix", value="/buy"))
    cfg = config([route(("a", 100), name="checkout", matches=(buy,)),
                  route(("a", 100), name="browse")], [cluster("a", up)])
    p = harness.proxy(_with(cfg, tel))
    for path in ("/buy", "/buy", "/look", "/missing-is-still-browse"):
        httpx.get(_url(p, path), timeout=10)
    text = _admin(p, "/stats/prometheus").text
    counts = _series(text, "istio_requests_total")
    by_route = {re.search(r'route_name="([^"]*)"', ln)[1]: ln  # type: ignore[index]
                for ln in counts}
    assert by_route["checkout"].endswith(" 2.0") and by_route["browse"].endswith(" 2.0")
    assert all("request_protocol=" not in ln for ln in counts)
    assert not _series(text, "istio_request_bytes_bucket")
    dur = _series(text, "istio_request_duration_milliseconds_count")
    assert len(dur) == 1 and "response_code=" not in dur[0] and dur[0].endswith(" 4.0")
    assert _series(text, "istio_response_bytes_count")[0].endswith(" 4.0")


def test_tag_value_errors_are_unknown_and_never_fail_a_request(harness: Harness) -> None:
    up = harness.upstream()
    tel = types.Telemetry(client_metrics=(types.MetricOverride(metric="REQUEST_COUNT", tags=(
        types.TagOverride(name="user", value="request.headers['x-user']"),
        types.TagOverride(name="big", value="string(response.code >= 'x')"))),))
    p = harness.proxy(_with(config([route(("a", 100))], [cluster("a", up)]), tel))
    assert httpx.get(_url(p, "/"), headers={"x-user": "ann"}, timeout=10).status_code == 200
    assert httpx.get(_url(p, "/"), timeout=10).status_code == 200
    counts = _series(_admin(p, "/stats/prometheus").text, "istio_requests_total")
    assert sorted(re.search(r'user="([^"]*)"', ln)[1] for ln in counts) == [  # type: ignore[index]
        "ann", "unknown"]
    assert all('big="unknown"' in ln for ln in counts)


def test_a_bad_expression_refuses_the_snapshot(harness: Harness) -> None:
    from tollway.snapshot.codec import SnapshotError

    up = harness.upstream()
    cfg = config([route(("a", 100))], [cluster("a", up)])
    p = harness.proxy(cfg)
    bad = _with(cfg, types.Telemetry(access_logs=(types.AccessLog(filter="1 +"),)), "v2")
    with pytest.raises(SnapshotError):
        harness.apply(p, bad)
    assert p.version == "v1"


def test_exchange_has_the_slots_the_log_reads() -> None:
    # the operators read these attributes; a rename must fail here, not in the log thread
    for name in ("span", "route_name", "upstream_host", "upstream_time", "body_size",
                 "principal", "target"):
        # a slot (pure Python) or a native attribute (compiled build): a descriptor either way
        assert hasattr(Exchange, name), name


# ------------------------------------------------------------ access-log loss, counted


class _Fifo:
    """The read end of a FIFO the proxy logs to, opened without blocking and read only
    when the test says: until then a writer blocks (in open() if this end is not open yet,
    in write() once the pipe's 64 KiB are full)."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        self.fd = -1
        self.data = b""

    def open(self) -> None:
        self.fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)

    def read_until(self, done: Callable[[list[str]], bool], timeout: float = 30) -> list[str]:
        """Read until done(complete lines so far) or `timeout`; b"" (no writer yet, or the
        writer closed) is only 'nothing now'."""
        deadline = time.monotonic() + timeout
        while not done(self.lines()) and time.monotonic() < deadline:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                chunk = b""
            self.data += chunk
            if not chunk:
                time.sleep(0.05)
        return self.lines()

    def lines(self) -> list[str]:
        return self.data.decode().split("\n")[:-1]

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@pytest.fixture
def fifo(tmp_path: Path) -> Any:
    f = _Fifo(tmp_path / "access.fifo")
    yield f
    f.close()


def _dropped_metric(p: Any, reason: str = "queue_full") -> float:
    """tollway_access_log_dropped_total{reason} as Prometheus reads it: a counter, with its
    HELP, a sample for each reason from the start."""
    text = _admin(p, "/stats/prometheus").text
    assert re.search(r"^# HELP tollway_access_log_dropped_total \S", text, re.M), text
    assert "# TYPE tollway_access_log_dropped_total counter\n" in text
    (family,) = [f for f in text_string_to_metric_families(text)
                 if f.name == "tollway_access_log_dropped"]
    assert family.type == "counter"
    samples = {s.labels["reason"]: s.value for s in family.samples
               if s.name == "tollway_access_log_dropped_total"}
    assert set(samples) == {"queue_full", "shutdown"}, samples
    return float(samples[reason])


def test_lines_a_full_queue_drops_are_the_dropped_counter(harness: Harness,
                                                         fifo: _Fifo) -> None:
    """A sink that blocks (a FIFO nobody reads yet: the log thread waits in open()) fills the
    bounded queue; what does not fit is dropped, and the admin port's counter says exactly
    how many: requested minus what the sink finally receives."""
    up = harness.upstream()
    cfg = config([route(("c", 100))], [cluster("c", up)])
    p = harness.proxy(_with(cfg, types.Telemetry(access_logs=(
        types.AccessLog(path=str(fifo.path), text_format="%REQ(:PATH)%"),))))
    assert _dropped_metric(p) == 0  # exported before anything is dropped
    p.metrics.logs.max_queue = 5
    sent = [f"/r{i}" for i in range(30)]
    for path in sent:
        assert httpx.get(_url(p, path), timeout=10).status_code == 200
    dropped = _dropped_metric(p)
    # at most 5 lines taken by the blocked thread, at most 5 queued: the rest dropped
    assert dropped >= 20
    fifo.open()
    lines = fifo.read_until(lambda got: len(got) >= len(sent) - dropped)
    time.sleep(1.0)  # several flush intervals: nothing more may come
    lines = fifo.read_until(lambda got: False, timeout=0.5)
    assert len(lines) == len(set(lines)) == len(sent) - dropped
    assert set(lines) <= set(sent) and lines == sorted(lines, key=sent.index)
    assert _dropped_metric(p) == dropped and _dropped_metric(p, "shutdown") == 0
    stats = p.metrics.logs.statistics()
    assert (stats["written"], stats["failed"], stats["queued"]) == (len(lines), 0, 0)


def _proxy_process(tmp_path: Path, cfg: types.ProxyConfig, *extra: str
                   ) -> tuple[subprocess.Popen[str], str]:
    snap = tmp_path / "snap.json"
    snap.write_bytes(codec.encode(cfg))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tollway.proxy", "--config", str(snap), "--admin-port", "0",
         *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "main=" in line, line + (proc.stderr.read() if proc.stderr else "")
    return proc, "http://" + line.split("main=")[1].split()[0]


def test_shutdown_writes_every_queued_line_once_while_a_write_is_blocked(
        harness: Harness, fifo: _Fifo, tmp_path: Path) -> None:
    """SIGTERM while the log thread is stuck in a write (the FIFO's reader is not reading:
    the pipe is full), requests still logged during --drain-seconds behind it, and the sink
    stuck past the old 2 s join: shutdown waits for that write (up to
    LogWriter.close_timeout, 5 s), then the lines queued behind it are written by the
    closer alone, so the sink gets every line exactly once, nothing is written to a closed
    file, and the process exits 0 with a clean stderr."""
    up = harness.upstream()
    plain = tmp_path / "plain.log"  # a second sink, written after the blocked one
    cfg = _with(config([route(("c", 100))], [cluster("c", up)]), types.Telemetry(
        access_logs=(types.AccessLog(path=str(fifo.path), text_format="%REQ(:PATH)%"),
                     types.AccessLog(path=str(plain), text_format="%REQ(:PATH)%"))))
    fifo.open()  # the proxy's open() succeeds; its writes block once 64 KiB are unread
    proc, base = _proxy_process(tmp_path, cfg, "--drain-seconds", "1.5")
    try:
        pad = "p" * 4000
        sent = [f"/n{i:03d}/{pad}" for i in range(60)]  # ~240 KB of lines
        with httpx.Client(timeout=10) as client:
            for path in sent:
                assert client.get(base + path).status_code == 200
        time.sleep(1.0)  # the thread has taken the lines and blocks on the full pipe
        proc.send_signal(signal.SIGTERM)
        late = [f"/late{i}" for i in range(10)]  # served while draining, queued behind
        with httpx.Client(timeout=10) as client:
            for path in late:
                assert client.get(base + path).status_code == 200
        sent += late
        time.sleep(4.0)  # close began at 1.5 s; still blocked past the old 2 s join
        lines = fifo.read_until(lambda got: len(got) >= len(sent))
        assert proc.wait(30) == 0
        lines = fifo.read_until(lambda got: False, timeout=0.5)  # and nothing after
        assert len(lines) == len(sent) and collections.Counter(lines) == collections.Counter(sent)
        assert collections.Counter(plain.read_text().splitlines()) == collections.Counter(sent)
        _, err = proc.communicate(timeout=10)
        assert "Traceback" not in err and "access log" not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_shutdown_gives_up_on_a_sink_blocked_past_the_bound_and_counts_it(
        harness: Harness, fifo: _Fifo, caplog: pytest.LogCaptureFixture) -> None:
    """A sink blocked for good (nobody reads the FIFO) cannot hold the proxy's exit: close
    returns after LogWriter.close_timeout, says how many lines it gave up on, and counts
    them as dropped; when the sink wakes later the thread writes nothing more than its own
    batch, closes the file itself, and no line is counted twice."""
    up = harness.upstream()
    cfg = config([route(("c", 100))], [cluster("c", up)])
    p = harness.proxy(_with(cfg, types.Telemetry(access_logs=(
        types.AccessLog(path=str(fifo.path), text_format="%REQ(:PATH)%"),))))
    logs = p.metrics.logs
    logs.close_timeout = 0.5
    fifo.open()
    pad = "q" * 4000
    sent = [f"/m{i:03d}/{pad}" for i in range(40)]
    for path in sent:
        assert httpx.get(_url(p, path), timeout=10).status_code == 200
    time.sleep(1.0)  # the thread is blocked on the full pipe
    with caplog.at_level(logging.WARNING, "tollway.proxy.accesslog"):
        harness.lt.run(p.close(), timeout=60)  # returns: the bound, not the sink, decides
    stats = logs.statistics()
    assert stats["dropped"] > 0 and stats["written"] + stats["dropped"] == len(sent)
    assert (stats["queue_full"], stats["shutdown"]) == (0, stats["dropped"])
    assert f"{stats['dropped']} lines not written" in caplog.text
    lines = fifo.read_until(lambda got: len(got) >= stats["written"])
    thread = logs._thread
    assert thread is not None
    thread.join(30)
    assert not thread.is_alive() and logs._files == {}  # the thread closed what it opened
    lines = fifo.read_until(lambda got: False, timeout=0.5)
    assert len(lines) == len(set(lines)) and set(lines) <= set(sent)
    assert stats["written"] <= len(lines) <= len(sent)
    assert logs.statistics() == stats  # the late write was counted once, as dropped


class _SlowFile(io.StringIO):
    """A log file whose first write blocks until the test opens `gate`; a write or flush
    after close is recorded (and raises, as a real closed file does)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.blocked = threading.Event()
        self.after_close: list[str] = []
        self.writes = 0

    def write(self, s: str) -> int:
        self.writes += 1
        if self.writes == 1:
            self.blocked.set()
            self.gate.wait(30)
        if self.closed:
            self.after_close.append("write")
        return super().write(s)

    def flush(self) -> None:
        if self.closed:
            self.after_close.append("flush")
        super().flush()

    def close(self) -> None:
        self.text = self.getvalue()
        super().close()


def test_close_waits_for_a_flush_in_progress_then_writes_the_rest_itself(
        harness: Harness, tmp_path: Path) -> None:
    """The log thread's write outlasts the old 2 s join: close waits for it (never closing
    the file under it), then writes the lines queued meanwhile itself: each line once,
    in order, and nothing written or flushed after close."""
    up = harness.upstream()
    path = str(tmp_path / "never-opened.log")
    cfg = config([route(("c", 100))], [cluster("c", up)])
    p = harness.proxy(_with(cfg, types.Telemetry(access_logs=(
        types.AccessLog(path=path, text_format="%REQ(:PATH)%"),))))
    slow = _SlowFile()
    p.metrics.logs._files[path] = slow
    sent = [f"/s{i}" for i in range(10)]
    for path_ in sent[:5]:
        assert httpx.get(_url(p, path_), timeout=10).status_code == 200
    assert slow.blocked.wait(30)  # the thread is inside its write
    for path_ in sent[5:]:
        assert httpx.get(_url(p, path_), timeout=10).status_code == 200
    errors: list[BaseException] = []

    def close() -> None:
        try:
            harness.lt.run(p.close(), timeout=60)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    closer = threading.Thread(target=close)
    closer.start()
    time.sleep(3.0)  # past the old 2 s join
    slow.gate.set()
    closer.join(60)
    assert not closer.is_alive() and errors == []
    assert slow.closed and slow.after_close == []
    assert slow.text.splitlines() == sent
    stats = p.metrics.logs.statistics()
    assert (stats["written"], stats["dropped"], stats["failed"]) == (10, 0, 0)


def test_lines_offered_after_close_count_as_shutdown_not_queue_full() -> None:
    """A full queue before close and offers after it are told apart by reason, and the
    total stays their sum (pure: LogWriter with no sink ever written)."""
    from tollway.proxy.chain.accesslog import LogWriter

    writer = LogWriter(max_queue=2, interval=60)
    sink: Any = object()
    exchange: Any = object()
    writer._start = lambda: None  # type: ignore[method-assign]  # no thread: nothing renders
    for _ in range(5):
        writer.offer(sink, exchange, 0.0)  # 2 queued, 3 dropped: full
    writer._discard_queued()  # as if written elsewhere; close has nothing left to write
    writer.close()
    for _ in range(4):
        writer.offer(sink, exchange, 0.0)  # after close: 4 dropped at shutdown
    stats = writer.statistics()
    assert (stats["queue_full"], stats["shutdown"], stats["dropped"]) == (3, 4, 7)
