"""The destination an app dialled before the capture rules redirected it (SO_ORIGINAL_DST).

REDIRECT rewrites a connection's destination to the sidecar's outbound port and conntrack
keeps the original; `getsockopt(SOL_IP, SO_ORIGINAL_DST)` on the accepted socket returns it
as a `sockaddr_in` (family, big-endian port in bytes 2-3, IPv4 address in bytes 4-7).
Python's socket module does not name the option, hence the literal 80 (linux/netfilter_ipv4.h).
Asked once per accepted connection of an outbound listener, never per request.
"""

from __future__ import annotations

import socket
import struct

SO_ORIGINAL_DST = 80
_SOCKADDR_IN = 16


def parse_sockaddr_in(raw: bytes) -> tuple[str, int]:
    """A `struct sockaddr_in` -> (IPv4 address, port); ValueError if it is not one."""
    if len(raw) < 8:
        raise ValueError(f"sockaddr_in is 16 bytes, got {len(raw)}")
    family = struct.unpack_from("=H", raw, 0)[0]
    if family != socket.AF_INET:
        raise ValueError(f"not an AF_INET address (family {family})")
    port = struct.unpack_from("!H", raw, 2)[0]
    return socket.inet_ntoa(raw[4:8]), port


def original_destination(sock: socket.socket | None) -> tuple[str, int] | None:
    """Where the peer meant to connect, or None when the connection was not redirected
    (no conntrack entry: ENOENT, or the address is this listener's own)."""
    if sock is None or sock.family != socket.AF_INET:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, _SOCKADDR_IN)
        dst = parse_sockaddr_in(raw)
    except (OSError, ValueError):
        return None
    try:
        if dst == tuple(sock.getsockname()[:2]):
            return None
    except OSError:
        return None
    return dst
