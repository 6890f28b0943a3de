"""proxy/core/authn.py: per-port mode, first-bytes sniffing, admission (no sockets)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollway.proxy.core import authn
from tollway.snapshot import types


@pytest.mark.parametrize(("data", "kind"), [
    (b"", "more"), (b"\x16", "more"), (b"\x16\x03", "more"), (b"\x16\x03\x01", "tls"),
    (b"\x16\x03\x03\x00", "tls"), (b"GET / HTTP/1.1", "plaintext"), (b"\x16\x04\x01", "plaintext"),
    (b"\x16\x03\x09", "plaintext"),
])
def test_sniff_first_bytes(data: bytes, kind: str) -> None:
    assert authn.sniff(data) == kind


@given(st.binary(min_size=1).filter(lambda b: b[0] != 0x16))
def test_sniff_anything_not_starting_0x16_is_plaintext(data: bytes) -> None:
    assert authn.sniff(data) == "plaintext"


@pytest.mark.parametrize(("mode", "sniffed", "accept"), [
    ("STRICT", "tls", True), ("STRICT", "plaintext", False),
    ("PERMISSIVE", "tls", True), ("PERMISSIVE", "plaintext", True),
    ("DISABLE", "tls", False), ("DISABLE", "plaintext", True),
])
def test_admit_table(mode: str, sniffed: authn.Sniffed, accept: bool) -> None:
    assert authn.admit(mode, sniffed).accept is accept


def test_mode_for_port_prefers_port_level() -> None:
    pa = types.PeerAuthn(mode="STRICT", port_modes={8080: "DISABLE"})
    assert authn.mode_for_port(pa, 8080) == "DISABLE"
    assert authn.mode_for_port(pa, 9090) == "STRICT"
    assert authn.mode_for_port(pa, None) == "STRICT"
