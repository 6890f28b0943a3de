"""The upstream HTTP/2 pool codes request heads as the downstream server does
(h2/hpack_fast.StaticEncoder): no dynamic table, no Huffman. Every request carries fields
of its own (x-request-id, trace ids) that a table would only churn through, so each
header block stands alone: a fresh HPACK decoder reads any of them, the second request's
as well as the first. Checked on the wire: a recording relay between a sidecar and the
real grpcio app keeps the bytes the sidecar sent; the calls succeed through it.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

import grpc
import hpack
from grpc_app import stubs
from grpc_mesh import outbound
from hyperframe.frame import ContinuationFrame, Frame, HeadersFrame
from proxy_harness import Harness

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class Relay:
    """One TCP hop that forwards both ways and keeps what the client side sent."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.sent = bytearray()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.target))
            self.socks += [down, up]
            threading.Thread(target=self._pump, args=(down, up, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, down, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, record: bool) -> None:
        try:
            while data := src.recv(65536):
                if record:
                    self.sent += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()
        for s in self.socks:
            s.close()


def header_blocks(data: bytes) -> list[bytes]:
    """The complete header blocks (HEADERS + CONTINUATION) in a client's byte stream."""
    assert data.startswith(PREFACE)
    pos, blocks, current = len(PREFACE), [], b""
    while pos + 9 <= len(data):
        frame, length = Frame.parse_frame_header(memoryview(data[pos:pos + 9]))
        if pos + 9 + length > len(data):
            break
        frame.parse_body(memoryview(data[pos + 9:pos + 9 + length]))
        pos += 9 + length
        if isinstance(frame, HeadersFrame | ContinuationFrame):
            current += frame.data
            if "END_HEADERS" in frame.flags:
                blocks.append(current)
                current = b""
    return blocks


def test_request_header_blocks_stand_alone(harness: Harness, echo: tuple[int, Any]) -> None:
    relay = Relay(echo[0])
    try:
        side_out = outbound(harness, {"v1": (relay.port, 100)})
        with grpc.insecure_channel(f"127.0.0.1:{side_out.listener_address('out')[1]}") as ch:
            for i in range(3):
                assert stubs(ch)["unary"](b"%d" % i, timeout=20) == b"v1:%d" % i
    finally:
        relay.close()
    blocks = header_blocks(bytes(relay.sent))
    assert len(blocks) == 3  # one request head per call, one connection
    ids = set()
    for block in blocks:  # each read by a decoder that saw no other block
        fields = dict(hpack.Decoder().decode(block, raw=True))
        assert fields[b":path"] == b"/tollway.test.Echo/Unary"
        ids.add(fields[b"x-request-id"])
    assert len(ids) == 3
