"""Response-head handling without sockets: pass-through, hop-by-hop cuts, framing."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tollway.proxy.http1 import response

BLOCK = b"HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 5\r\n"


def _head(block: bytes, *, http11: bool = True, ops=None, head: bool = False) -> tuple[int, bytes]:
    found = response.special_names(block)
    mode = response.mode_for(200, found, head_request=head, http11=http11)
    return mode, response.head_bytes(200, block, found, mode, b"\r\n", ops)


def test_head_passes_through_byte_for_byte() -> None:
    mode, out = _head(BLOCK)
    assert mode == response.PASS
    assert out == BLOCK + b"\r\n"


def test_hop_by_hop_lines_are_cut_and_the_rest_kept() -> None:
    block = (
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nX-A: 1\r\n"
        b"Content-Length: 0\r\n"
    )
    _, out = _head(block)
    assert out == b"HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 0\r\n\r\n"


def test_chunked_upstream_to_http10_client_is_unframed() -> None:
    block = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n"
    mode, out = _head(block, http11=False)
    assert mode == response.RAW_CLOSE
    assert b"transfer-encoding" not in out.lower()


def test_unframed_upstream_gets_chunked_for_http11_client() -> None:
    mode, out = _head(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n")
    assert mode == response.CHUNK
    assert out.endswith(b"transfer-encoding: chunked\r\n\r\n")


def test_header_operations_rebuild_the_head() -> None:
    def add(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [*pairs, ("x-added", "1")]

    _, out = _head(BLOCK, ops=[add])
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"x-added: 1\r\n" in out
    assert b"Content-Length: 5\r\n" in out


def test_head_request_has_no_body_mode() -> None:
    assert _head(BLOCK, head=True)[0] == response.NONE


names = st.sampled_from(
    [
        b"X-A",
        b"Server",
        b"Date",
        b"Connection",
        b"keep-alive",
        b"Upgrade",
        b"TE",
        b"Trailer",
        b"Vary",
        b"Proxy-Connection",
    ]
)


@given(st.lists(st.tuples(names, st.from_regex(rb"[a-z0-9=]{0,10}", fullmatch=True)), max_size=8))
def test_no_hop_by_hop_header_survives(headers: list[tuple[bytes, bytes]]) -> None:
    block = b"HTTP/1.1 200 OK\r\n" + b"".join(b"%s: %s\r\n" % h for h in headers)
    block += b"Content-Length: 0\r\n"
    _, out = _head(block)
    kept = [line.split(b":")[0].lower() for line in out.split(b"\r\n")[1:] if line]
    hop = {b"connection", b"keep-alive", b"upgrade", b"te", b"trailer", b"proxy-connection"}
    assert not hop & set(kept)
    expected = [n.lower() for n, _ in headers if n.lower() not in hop] + [b"content-length"]
    assert kept == expected
