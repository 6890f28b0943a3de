"""Fixtures for zero-trust tests: a CA, workload credentials, and a uvloop runner."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
import uvloop

from tollway.control.ca import CertificateAuthority
from tollway.kit.clock import FakeClock
from tollway.proxy import tls


def issue_from(ca: CertificateAuthority, spiffe_id: str, ttl: float = 3600.0
               ) -> tls.Credentials:
    """What a sidecar does: key here, CSR to the CA, chain back."""
    key, csr = tls.new_key_and_csr(spiffe_id)
    return tls.Credentials.from_pem(ca.sign_csr(csr, spiffe_id, ttl), key, ca.root_pem)


@pytest.fixture(scope="session")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create()


@pytest.fixture(scope="session")
def other_ca() -> CertificateAuthority:
    return CertificateAuthority.create()


@pytest.fixture
def issue(ca: CertificateAuthority) -> Callable[..., tls.Credentials]:
    def make(spiffe_id: str, ttl: float = 3600.0, *, by: CertificateAuthority | None = None
             ) -> tls.Credentials:
        return issue_from(by or ca, spiffe_id, ttl)
    return make


@pytest.fixture
def expired(ca: CertificateAuthority) -> Callable[[str], tls.Credentials]:
    """A certificate that expired an hour ago (signed on a clock set two hours back)."""
    def make(spiffe_id: str) -> tls.Credentials:
        import time

        past = CertificateAuthority(ca.cert, ca.key, clock=FakeClock(wall_start=time.time() - 7200))
        return issue_from(past, spiffe_id, 3600.0)
    return make


@pytest.fixture
def run() -> Iterator[Callable[[Coroutine[Any, Any, Any]], Any]]:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        yield runner.run
