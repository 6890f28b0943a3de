"""What the HTTP/1.1 listener needs to notice HTTP/2, without the HTTP/2 server.

The listener spots HTTP/2 by ALPN or by the connection preface llhttp stops at, and only
then hands the connection to `h2/server.py` (which imports `hpack`, its Huffman tables
included: memory a sidecar that never sees an HTTP/2 client does not need to hold).
Kept here, apart from the server, so that importing the listener loads none of it.
"""

from __future__ import annotations

ALPN_H2 = frozenset(("h2", "istio-h2"))
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def after_preface(data: bytes) -> bytes | None:
    """The bytes after the connection preface, when llhttp stopped at its end inside
    `data` (it pauses only once all 24 bytes were read, possibly over several reads);
    None when `data` does not fit that (then it is answered as a bad request)."""
    if data.startswith(PREFACE):
        return data[len(PREFACE):]
    for k in range(min(len(PREFACE), len(data)), -1, -1):
        if PREFACE.endswith(data[:k]):
            rest = data[k:]
            # a client's first frame is SETTINGS on stream 0 (RFC 9113 3.4)
            if not rest or (len(rest) >= 9 and rest[3] == 4 and rest[5:9] == b"\0\0\0\0"):
                return rest
    return None
