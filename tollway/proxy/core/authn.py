"""PeerAuthentication on an inbound connection: which mode holds, and plaintext or TLS?

Pure decisions the accept path asks before any request is parsed:
- `mode_for_port`: the port-level mode if the workload PA has one, else the workload's;
- `sniff`: Istio's PERMISSIVE detection from the first bytes (a TLS record header:
  0x16, then major version 3), `more` while fewer than 3 bytes have arrived;
- `admit`: STRICT takes only TLS, DISABLE only plaintext, PERMISSIVE both. A refusal
  closes the connection (no HTTP status, as Envoy finds no filter chain), with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tollway.snapshot import types

Sniffed = Literal["tls", "plaintext", "more"]
TLS_HANDSHAKE = 0x16
SNIFF_BYTES = 3


def mode_for_port(peer_authn: types.PeerAuthn, port: int | None) -> str:
    if port is not None:
        mode = peer_authn.port_modes.get(port)
        if mode:
            return mode
    return peer_authn.mode


def sniff(first: bytes) -> Sniffed:
    """TLS when the bytes start a TLS handshake record (0x16 0x03 0x00..0x04)."""
    if not first:
        return "more"
    if first[0] != TLS_HANDSHAKE:
        return "plaintext"
    if len(first) < SNIFF_BYTES:
        return "more"
    return "tls" if first[1] == 3 and first[2] <= 4 else "plaintext"


@dataclass(frozen=True, slots=True)
class Admission:
    accept: bool
    tls: bool
    reason: str


def admit(mode: str, sniffed: Sniffed) -> Admission:
    """What to do with a connection whose first bytes looked like `sniffed`."""
    is_tls = sniffed == "tls"
    if mode == "STRICT" and not is_tls:
        return Admission(False, False, "plaintext refused: PeerAuthentication is STRICT")
    if mode == "DISABLE" and is_tls:
        return Admission(False, True, "TLS refused: PeerAuthentication is DISABLE")
    return Admission(True, is_tls, f"{'mTLS' if is_tls else 'plaintext'} accepted ({mode})")
