"""Access logs: Envoy's text format and Istio's JSON fields, written off the request path.

Per request the loop does at most: run the compiled filter (chain/expr.py) and append
`(sink, exchange, now)` to a deque. A thread per proxy process wakes every `interval`
seconds, renders the lines (snapshot/logformat.py operators) and writes them; a slow disk
or a closed stdout never holds a request. The deque is bounded: past `max_queue` entries
new ones are dropped and counted (`tollway_access_log_dropped_total` on the admin port,
with the lines a sink still blocked at shutdown never took; see LogWriter). A listener side
with no access log has no logger at all (`plan.logger is None`): one attribute test per
request.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING, Any

from tollway.proxy.chain import expr
from tollway.proxy.core import grpc
from tollway.snapshot import logformat, types

if TYPE_CHECKING:
    from tollway.proxy.chain.stream import Exchange

log = logging.getLogger("tollway.proxy.accesslog")
Value = Callable[[Any, float, float], Any]  # (exchange, loop now, wall offset)


def _req(arg: str) -> Value:
    names = [n.strip().lower() for n in arg.split("?")]

    def get(ex: Exchange, now: float, wall: float) -> Any:
        for n in names:
            if n == ":method":
                return ex.method
            if n == ":path":
                return ex.target if ex.target.startswith("/") else ex.path
            if n == ":authority":
                return ex.authority or None
            if n == ":scheme":
                return ex.plan.scheme
            v = ex.headers.get(n)
            if v is not None:
                return v
        return None

    return get


def _resp(arg: str) -> Value:
    name = arg.split("?")[0].strip().lower()
    if name == "x-envoy-upstream-service-time":
        return lambda ex, now, wall: (int(ex.upstream_time * 1000)
                                      if ex.upstream_time >= 0 else None)
    return lambda ex, now, wall: None  # response headers are not kept past the write


_SECOND: list[Any] = [-1, ""]  # (whole second, its formatted prefix): one strftime a second


def _start_time(ex: Exchange, now: float, wall: float) -> str:
    t = ex.start + wall
    whole = int(t)
    if whole != _SECOND[0]:
        _SECOND[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _SECOND[0] = whole
    return f"{_SECOND[1]}.{int((t - whole) * 1000):03d}Z"


def _peer(ex: Exchange) -> str | None:
    return ex.principal or None


def _grpc_status(fmt: str) -> Value:
    """%GRPC_STATUS(X)%: "-" unless the request is gRPC and the call has a status (the
    exchange's grpc_status: trailers, head, or the HTTP status mapped, as Envoy's)."""
    names = grpc.SNAKE if fmt == "SNAKE_STRING" else grpc.CAMEL

    def get(ex: Exchange, now: float, wall: float) -> Any:
        code = ex.grpc_status
        if not ex.grpc or code is None:
            return None
        if fmt == "NUMBER" or not 0 <= code <= grpc.MAX_KNOWN:
            return code
        return names[code]

    return get


_HOSTNAME = socket.gethostname()
_SIMPLE: dict[str, Value] = {
    "START_TIME": _start_time,
    "PROTOCOL": lambda ex, now, wall: ex.attrs.get("protocol") or (
        "HTTP/1.1" if ex.http11 else "HTTP/1.0"),
    "RESPONSE_CODE": lambda ex, now, wall: ex.status,
    "RESPONSE_FLAGS": lambda ex, now, wall: ex.flags,
    "RESPONSE_CODE_DETAILS": lambda ex, now, wall: (
        "via_upstream" if ex.upstream_time >= 0 else None),
    "CONNECTION_TERMINATION_DETAILS": lambda ex, now, wall: None,
    "UPSTREAM_TRANSPORT_FAILURE_REASON": lambda ex, now, wall: None,
    "BYTES_RECEIVED": lambda ex, now, wall: ex.body_size,
    "BYTES_SENT": lambda ex, now, wall: ex.bytes_out,
    "DURATION": lambda ex, now, wall: int((now - ex.start) * 1000),
    "REQUEST_DURATION": lambda ex, now, wall: None,
    "RESPONSE_DURATION": lambda ex, now, wall: (
        int(ex.upstream_time * 1000) if ex.upstream_time >= 0 else None),
    "UPSTREAM_HOST": lambda ex, now, wall: ex.upstream_host or None,
    "UPSTREAM_CLUSTER": lambda ex, now, wall: ex.cluster_name or None,
    "UPSTREAM_CLUSTER_RAW": lambda ex, now, wall: ex.cluster_name or None,
    "UPSTREAM_LOCAL_ADDRESS": lambda ex, now, wall: None,
    "DOWNSTREAM_LOCAL_ADDRESS": lambda ex, now, wall: (
        f"{ex.plan.spec.address}:{ex.plan.spec.port}"),
    "DOWNSTREAM_REMOTE_ADDRESS": lambda ex, now, wall: f"{ex.source_ip}:{ex.source_port}",
    "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": lambda ex, now, wall: ex.source_ip,
    "DOWNSTREAM_PEER_URI_SAN": lambda ex, now, wall: _peer(ex),
    "REQUESTED_SERVER_NAME": lambda ex, now, wall: None,
    "ROUTE_NAME": lambda ex, now, wall: ex.route_name or None,
    "TRACE_ID": lambda ex, now, wall: expr.trace_id(ex) or None,
    "HOSTNAME": lambda ex, now, wall: _HOSTNAME,
    "UPSTREAM_REQUEST_ATTEMPT_COUNT": lambda ex, now, wall: (
        1 if ex.upstream_time >= 0 else 0),
    "GRPC_STATUS_NUMBER": _grpc_status("NUMBER"),
}
assert set(_SIMPLE) | {"REQ", "RESP", "GRPC_STATUS"} == logformat.COMMANDS


def _operator(part: tuple[str, str, int]) -> Value:
    command, arg, limit = part
    if command == "REQ":
        get = _req(arg)
    elif command == "RESP":
        get = _resp(arg)
    elif command == "GRPC_STATUS":
        get = _grpc_status(arg)
    else:
        get = _SIMPLE[command]
    if not limit:
        return get

    def cut(ex: Exchange, now: float, wall: float) -> Any:
        v = get(ex, now, wall)
        return v[:limit] if isinstance(v, str) else v

    return cut


def _text(v: Any) -> str:
    return "-" if v is None else str(v)


# operators whose value never depends on the request: folded into the text at compile time
_CONSTANT = {"CONNECTION_TERMINATION_DETAILS": None, "UPSTREAM_TRANSPORT_FAILURE_REASON": None,
             "UPSTREAM_LOCAL_ADDRESS": None, "REQUESTED_SERVER_NAME": None,
             "REQUEST_DURATION": None, "HOSTNAME": _HOSTNAME}


def compile_text(fmt: str) -> Callable[[Exchange, float, float], str]:
    """Literal text folded (constants included) into the prefix of each live operator, so a
    line is one pass over (prefix, operator) pairs."""
    pairs: list[tuple[str, Value]] = []
    text = ""
    for p in logformat.parse(fmt):
        if isinstance(p, str):
            text += p
        elif p[0] in _CONSTANT and not p[2]:
            text += _text(_CONSTANT[p[0]])
        elif p[0] == "RESP" and p[1].split("?")[0].strip().lower() != (
                "x-envoy-upstream-service-time"):
            text += "-"  # response headers are not kept
        else:
            pairs.append((text, _operator(p)))
            text = ""
    tail = text

    def render(ex: Exchange, now: float, wall: float) -> str:
        out = []
        for prefix, op in pairs:
            v = op(ex, now, wall)
            out.append(prefix)
            out.append("-" if v is None else str(v))
        out.append(tail)
        return "".join(out)

    return render


def compile_json(labels: Sequence[tuple[str, str]]
                 ) -> Callable[[Exchange, float, float], str]:
    fields: list[tuple[str, Any]] = []
    for key, fmt in labels:
        parts = logformat.parse(fmt)
        if len(parts) == 1 and not isinstance(parts[0], str):
            fields.append((key, _operator(parts[0])))  # typed: numbers stay numbers
        else:
            fields.append((key, compile_text(fmt)))

    def render(ex: Exchange, now: float, wall: float) -> str:
        return json.dumps({k: f(ex, now, wall) for k, f in fields}) + "\n"

    return render


class Sink:
    """One destination and its format (compiled once per snapshot)."""

    __slots__ = ("path", "render")

    def __init__(self, spec: types.AccessLog) -> None:
        self.path = spec.path
        if spec.encoding == "JSON":
            self.render = compile_json(spec.json_labels or logformat.ISTIO_JSON)
        else:
            fmt = spec.text_format or logformat.ISTIO_TEXT
            self.render = compile_text(fmt if fmt.endswith("\n") else fmt + "\n")


class LogWriter:
    """The process's access-log queue and the thread that renders and writes it.

    Who writes: whoever holds `_writing` (the thread's periodic flush, a test's `flush()`,
    or `close()`), so a line is rendered and written by exactly one party, and never to a
    file `close()` has closed. `close()` waits for an in-flight flush up to
    `close_timeout`: a sink blocked longer than that (a FIFO nobody reads, a hung mount)
    must not hold the proxy's exit, so close gives up, and what was still queued or being
    written is counted as dropped (`abandoned`), never claimed written; the party still
    writing then stops and closes the files itself. The counters both the writing party
    and a giving-up close move are under `_tally`, which is never held across IO."""

    def __init__(self, *, max_queue: int = 16384, interval: float = 0.2,
                 close_timeout: float = 5.0) -> None:
        self.queue: deque[tuple[Sink, Exchange, float]] = deque()
        self.max_queue = max_queue
        self.interval = interval
        self.close_timeout = close_timeout
        self.dropped = 0  # queue full, or offered after close (counted by the loop thread)
        self._dropped_open = -1  # `dropped` when shutdown began: the rest came after it
        self.abandoned = 0  # queued or being written when close's wait ran out
        self.written = 0
        self.failed = 0
        self._files: dict[str, IO[str]] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._writing = threading.Lock()
        self._tally = threading.Lock()
        self._in_flight = 0  # lines the writing party rendered and has not written yet
        self._closed = False
        self._gave_up = False
        self.stdout: IO[str] = sys.stdout

    def offer(self, sink: Sink, ex: Exchange, now: float) -> None:
        """Called on the loop per logged request: O(1), never blocks."""
        if len(self.queue) >= self.max_queue:
            self.dropped += 1
            return
        self.queue.append((sink, ex, now))
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tollway-access-log",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()
        # what is still queued is close()'s to write (it holds `_writing` by then)

    def flush(self) -> None:
        """Render and write what is queued (the thread calls this; tests may too)."""
        with self._writing:
            if not self._closed:
                self._flush()
            if self._gave_up:  # close() stopped waiting for us: the files are ours to close
                self._close_files()

    def _flush(self) -> None:
        q = self.queue
        if not q:
            return
        # loop clock -> wall clock: both read now; the loop clock is time.monotonic()
        wall = time.time() - time.monotonic()
        out: dict[str, list[str]] = {}
        rendered = 0
        for _ in range(len(q)):  # what is queued now: a busy loop cannot keep us here
            sink, ex, now = q.popleft()
            try:
                out.setdefault(sink.path, []).append(sink.render(ex, now, wall))
                rendered += 1
            except Exception:  # a line that cannot render is dropped, never the thread
                self.failed += 1
        with self._tally:
            if self._gave_up:
                self.abandoned += rendered
                return
            self._in_flight = rendered
        for path, lines in out.items():
            if self._gave_up:  # close() counted the rest as dropped
                return
            self._write(path, lines)

    def _write(self, path: str, lines: list[str]) -> None:
        try:
            f = self._file(path)
            f.write("".join(lines))
            f.flush()
            ok = True
        except (OSError, ValueError) as exc:
            ok = False
            log.warning("access log %s: %s", path, exc)
        with self._tally:
            if self._gave_up:
                return  # past close's wait: close counted these lines as dropped
            self._in_flight -= len(lines)
            if ok:
                self.written += len(lines)
            else:
                self.failed += len(lines)

    def _file(self, path: str) -> IO[str]:
        if path in ("/dev/stdout", "-"):
            return self.stdout
        f = self._files.get(path)
        if f is None:
            f = self._files[path] = open(path, "a", encoding="utf-8")  # noqa: SIM115
        return f

    def _close_files(self) -> None:
        files, self._files = list(self._files.items()), {}
        for path, f in files:
            try:
                f.close()
            except OSError as exc:  # e.g. a FIFO whose reader left
                log.warning("access log %s: %s", path, exc)

    def _discard_queued(self) -> int:
        n = 0
        while True:
            try:
                self.queue.popleft()
            except IndexError:
                return n
            n += 1

    def close(self) -> None:
        """Write what is queued and close the files (called once, off the loop, at exit).

        Waits up to `close_timeout` for a flush in progress; past that, gives up and
        counts the lines not written as dropped. Lines offered after close are dropped
        and counted by offer() itself: `max_queue` is set to 0, so the per-request path
        needs no check of its own."""
        self._stop.set()
        if not self._writing.acquire(timeout=self.close_timeout):
            self._give_up()
            return
        try:
            if self._closed:
                return
            self._shutting()
            self._flush()
            self._closed = True
            late = self._discard_queued()  # an offer() that raced the line above
            self._close_files()
            with self._tally:
                self.abandoned += late
        finally:
            self._writing.release()
        if self._thread is not None:
            self._thread.join(1.0)  # it sees the stop flag at once; no write is left to it

    def _give_up(self) -> None:
        with self._tally:
            if self._closed:
                return
            self._shutting()
            self._closed = self._gave_up = True
            lost = self._in_flight + self._discard_queued()
            self._in_flight = 0
            self.abandoned += lost
        log.warning("access log: %d lines not written: the sink was still blocked %.1f s "
                    "after shutdown began (counted in tollway_access_log_dropped_total)",
                    lost, self.close_timeout)

    def _shutting(self) -> None:
        """From here on offer() drops every line: those count as `shutdown`, not as a
        full queue. (An offer racing this line from the loop may land in either.)"""
        if self._dropped_open < 0:
            self._dropped_open = self.dropped
        self.max_queue = 0

    def statistics(self) -> dict[str, int]:
        """`dropped`: lines never written, `queue_full` (the sink is behind) plus
        `shutdown` (offered after close began, or still queued when close gave up on a
        blocked sink); `failed`: lines that could not render or whose write failed. Once
        close has run, every offered line is exactly one of written, dropped, failed."""
        full = self.dropped if self._dropped_open < 0 else self._dropped_open
        shutdown = self.abandoned + self.dropped - full
        return {"written": self.written, "dropped": full + shutdown, "queue_full": full,
                "shutdown": shutdown, "failed": self.failed, "queued": len(self.queue)}


class AccessLogger:
    """What one listener side logs: (filter or None, sink) pairs, fixed per snapshot."""

    __slots__ = ("entries", "writer")

    def __init__(self, writer: LogWriter,
                 entries: Sequence[tuple[Callable[[Exchange, float], bool] | None, Sink]]
                 ) -> None:
        self.writer = writer
        self.entries = tuple(entries)

    def log(self, ex: Exchange, now: float) -> None:
        for filt, sink in self.entries:
            if filt is None or filt(ex, now):
                self.writer.offer(sink, ex, now)


def compile_loggers(config: types.ProxyConfig, writer: LogWriter, legacy_json: bool
                    ) -> tuple[AccessLogger | None, AccessLogger | None]:
    """(client side, server side) loggers for a snapshot; None where nothing is logged.
    `legacy_json`: `tollway proxy --access-log`, Istio's JSON to stdout on both sides."""
    specs = list(config.telemetry.access_logs)
    if legacy_json:
        specs.append(types.AccessLog(path="/dev/stdout", encoding="JSON"))
    compiled = [(expr.compile_filter(s.filter) if s.filter else None, Sink(s), s)
                for s in specs]
    client = [(f, k) for f, k, s in compiled if s.client]
    server = [(f, k) for f, k, s in compiled if s.server]
    return (AccessLogger(writer, client) if client else None,
            AccessLogger(writer, server) if server else None)
