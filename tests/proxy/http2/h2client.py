"""A blocking HTTP/2 client for tests: the `h2` library on a plain or TLS socket, plus raw
frames (hyperframe/hpack) for the shapes a well-behaved client library refuses to send."""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
from hpack import Encoder
from hyperframe.frame import ContinuationFrame, Frame, HeadersFrame


@dataclass
class Reply:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    trailers: dict[str, str] = field(default_factory=dict)
    reset: int | None = None
    ended: bool = False


class H2Client:
    """One HTTP/2 connection; `request` then `wait` for replies by stream id."""

    def __init__(self, address: tuple[str, int], *, ctx: ssl.SSLContext | None = None,
                 settings: dict[int, int] | None = None, timeout: float = 20.0,
                 rcvbuf: int | None = None) -> None:
        sock = socket.socket()
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        sock.connect(address)
        self.sock: Any = ctx.wrap_socket(sock) if ctx is not None else sock
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="latin-1")
        self.conn = h2.connection.H2Connection(config=cfg)
        if settings:
            self.conn.local_settings = h2.settings.Settings(client=True, initial_values=settings)
        self.conn.initiate_connection()
        self.replies: dict[int, Reply] = {}
        self.goaway: int | None = None  # error code of a GOAWAY received
        self.closed = False
        self.events: list[Any] = []
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, path: str, *, method: str = "GET", authority: str = "svc",
                headers: list[tuple[str, str]] | None = None, body: bytes = b"",
                end: bool = True) -> int:
        sid = self.conn.get_next_available_stream_id()
        fields = [(":method", method), (":scheme", "http"), (":authority", authority),
                  (":path", path), *(headers or [])]
        self.conn.send_headers(sid, fields, end_stream=end and not body)
        self.replies[sid] = Reply()
        self.flush()
        if body:
            self.send_body(sid, body, end=end)
        return sid

    def send_body(self, sid: int, body: bytes, *, end: bool = True) -> None:
        """Send within the flow-control window, reading (and so learning of WINDOW_UPDATEs)
        while it is closed."""
        view = memoryview(body)
        while view:
            room = min(self.conn.local_flow_control_window(sid),
                       self.conn.max_outbound_frame_size, len(view))
            if room <= 0:
                self.read_once()
                continue
            self.conn.send_data(sid, bytes(view[:room]))
            view = view[room:]
            self.flush()
        if end:
            self.conn.end_stream(sid)
            self.flush()

    def read_once(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            data = b""
        if not data:
            self.closed = True
            return False
        for ev in self.conn.receive_data(data):
            self.events.append(ev)
            sid = getattr(ev, "stream_id", 0)
            reply = self.replies.get(sid)
            if isinstance(ev, h2.events.ResponseReceived) and reply is not None:
                reply.headers = dict(ev.headers)
                reply.status = int(reply.headers[":status"])
            elif isinstance(ev, h2.events.DataReceived) and reply is not None:
                reply.body += ev.data
                self.conn.acknowledge_received_data(ev.flow_controlled_length, sid)
            elif isinstance(ev, h2.events.TrailersReceived) and reply is not None:
                reply.trailers = dict(ev.headers)
            elif isinstance(ev, h2.events.StreamEnded) and reply is not None:
                reply.ended = True
            elif isinstance(ev, h2.events.StreamReset) and reply is not None:
                reply.reset = ev.error_code
                reply.ended = True
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway = ev.error_code
                if not ev.error_code:  # graceful: h2 closes its state anyway; streams go on
                    self.conn.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
        try:
            self.flush()
        except OSError:
            pass
        return True

    def wait(self, sid: int, timeout: float = 20.0) -> Reply:
        deadline = time.monotonic() + timeout
        while not self.replies[sid].ended and time.monotonic() < deadline:
            try:
                if not self.read_once():
                    break
            except TimeoutError:
                continue
        return self.replies[sid]

    def wait_closed(self, timeout: float = 20.0) -> bool:
        """Read until the server closes (True) or the timeout passes (False)."""
        deadline = time.monotonic() + timeout
        self.sock.settimeout(1.0)
        while time.monotonic() < deadline:
            try:
                if not self.read_once():
                    return True
            except TimeoutError:
                continue
            except Exception:  # our h2 state machine objects after a GOAWAY: raw read
                return _drain_raw(self.sock, deadline)
        return False

    def get(self, path: str, **kw: Any) -> Reply:
        return self.wait(self.request(path, **kw))

    # ------------------------------------------------------------ raw frames
    def raw(self, *frames: Frame | bytes) -> None:
        self.sock.sendall(b"".join(f if isinstance(f, bytes) else f.serialize() for f in frames))

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _drain_raw(sock: Any, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


def headers_frame(sid: int, fields: list[tuple[str, str]], encoder: Encoder | None = None,
                  *, end_headers: bool = True, end_stream: bool = True) -> HeadersFrame:
    frame = HeadersFrame(sid)
    frame.data = (encoder or Encoder()).encode(fields)
    if end_headers:
        frame.flags.add("END_HEADERS")
    if end_stream:
        frame.flags.add("END_STREAM")
    return frame


def continuation(sid: int, data: bytes = b"", end: bool = False) -> ContinuationFrame:
    frame = ContinuationFrame(sid)
    frame.data = data
    if end:
        frame.flags.add("END_HEADERS")
    return frame


def get_fields(path: str = "/", authority: str = "svc") -> list[tuple[str, str]]:
    return [(":method", "GET"), (":scheme", "http"), (":authority", authority),
            (":path", path)]


class RawH2:
    """A client that writes frames as given (hpack-encoded by one encoder) and reads the
    server's frames back: for stream-id misuse, floods and other shapes no library sends."""

    PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

    def __init__(self, address: tuple[str, int], timeout: float = 20.0,
                 settings: dict[int, int] | None = None, rcvbuf: int | None = None) -> None:
        from hyperframe.frame import SettingsFrame

        self.sock = socket.socket()
        if rcvbuf is not None:  # before connect: it sets the window the server sees
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(address)
        self.encoder = Encoder()
        frame = SettingsFrame(0)
        for k, v in (settings or {}).items():
            frame.settings[k] = v
        self.sock.sendall(self.PREFACE + frame.serialize())
        self.buffer = b""

    def send(self, *frames: Frame | bytes) -> bool:
        try:
            self.sock.sendall(
                b"".join(f if isinstance(f, bytes) else f.serialize() for f in frames))
            return True
        except OSError:
            return False

    def headers(self, sid: int, fields: list[tuple[str, str]], **kw: bool) -> HeadersFrame:
        return headers_frame(sid, fields, self.encoder, **kw)

    def frames_until_closed(self, timeout: float = 20.0) -> list[Frame]:
        """Every frame the server sent until it closed the connection (or the timeout)."""
        deadline = time.monotonic() + timeout
        self.sock.settimeout(1.0)
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            self.buffer += data
        else:
            raise TimeoutError("the server did not close the connection")
        out = []
        buf = self.buffer
        while len(buf) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(buf[:9]))
            if len(buf) < 9 + length:
                break
            frame.parse_body(memoryview(buf[9:9 + length]))
            out.append(frame)
            buf = buf[9 + length:]
        return out

    def close(self) -> None:
        self.sock.close()


def goaway_code(frames: list[Frame]) -> int | None:
    from hyperframe.frame import GoAwayFrame

    codes = [f.error_code for f in frames if isinstance(f, GoAwayFrame)]
    return codes[-1] if codes else None
