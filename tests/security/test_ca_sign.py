"""control/ca.py: SPIFFE workload certificates from CSRs; roots kept or plugged in."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from tollway.control import ca as camod
from tollway.control.ca import CAError, CertificateAuthority
from tollway.kit.clock import FakeClock
from tollway.proxy import tls

SID = "spiffe://cluster.local/ns/checkout/sa/checkout-service"


def leaf_of(chain: str) -> x509.Certificate:
    return x509.load_pem_x509_certificates(chain.encode())[0]


def test_ca_signs_spiffe_leaf_with_empty_subject(ca: CertificateAuthority) -> None:
    _, csr = tls.new_key_and_csr(SID)
    leaf = leaf_of(ca.sign_csr(csr, SID))
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical and san.value.get_values_for_type(x509.UniformResourceIdentifier) == [SID]
    assert leaf.subject == x509.Name([])
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
    leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.root_pem.encode()))


def test_ca_default_ttl_is_24h_and_minutes_are_allowed() -> None:
    clock = FakeClock()
    authority = CertificateAuthority.create(clock=clock)
    _, csr = tls.new_key_and_csr(SID)
    now = dt.datetime.fromtimestamp(clock.wall(), dt.UTC)
    assert leaf_of(authority.sign_csr(csr)).not_valid_after_utc == now + dt.timedelta(hours=24)
    short = leaf_of(authority.sign_csr(csr, SID, ttl=60))
    assert short.not_valid_after_utc == now + dt.timedelta(minutes=1)


def test_ca_identity_of_reads_the_csr() -> None:
    _, csr = tls.new_key_and_csr(SID)
    assert camod.identity_of(csr) == SID


@pytest.mark.parametrize(("sid", "asked", "ttl", "message"), [
    (SID, "spiffe://cluster.local/ns/web/sa/frontend", 3600, "asks for"),
    ("spiffe://other.domain/ns/a/sa/b", None, 3600, "trust domain"),
    ("spiffe://cluster.local/ns/a", None, 3600, "is not spiffe://"),
    (SID, None, 0.1, "lifetime"),
    (SID, None, 100 * 86400, "lifetime"),
])
def test_ca_refuses_bad_requests(ca: CertificateAuthority, sid: str, asked: str | None,
                                 ttl: float, message: str) -> None:
    _, csr = tls.new_key_and_csr(sid)
    with pytest.raises(CAError, match=message):
        ca.sign_csr(csr, asked, ttl)


def test_ca_refuses_garbage_csr(ca: CertificateAuthority) -> None:
    with pytest.raises(CAError, match="not a PEM"):
        ca.sign_csr("hello")


def test_ca_load_or_create_keeps_the_root(tmp_path: Path) -> None:
    first = CertificateAuthority.load_or_create(tmp_path)
    second = CertificateAuthority.load_or_create(tmp_path)
    assert first.root_pem == second.root_pem
    key_mode = stat.S_IMODE((tmp_path / "ca" / camod.ROOT_KEY).stat().st_mode)
    assert key_mode == 0o600


def test_ca_plug_in_intermediate_chains_to_the_users_root(tmp_path: Path) -> None:
    root = CertificateAuthority.create()
    inter_key = camod.new_key()
    # an intermediate signed by the user's root, as Istio's plug-in cacerts
    inter = camod._root_cert(inter_key, "cluster.local", dt.datetime.now(dt.UTC))
    inter = (x509.CertificateBuilder().subject_name(x509.Name.from_rfc4514_string("CN=inter"))
             .issuer_name(root.cert.subject).public_key(inter_key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(inter.not_valid_before_utc).not_valid_after(inter.not_valid_after_utc)
             .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
             .sign(root.key, camod.hashes.SHA256()))
    (tmp_path / "ca-cert.pem").write_text(camod.cert_pem(inter))
    (tmp_path / "ca-key.pem").write_text(camod.key_pem(inter_key))
    (tmp_path / "root-cert.pem").write_text(root.root_pem)
    (tmp_path / "cert-chain.pem").write_text(camod.cert_pem(inter) + root.root_pem)
    plug = CertificateAuthority.from_files(
        tmp_path / "ca-cert.pem", tmp_path / "ca-key.pem",
        chain=tmp_path / "cert-chain.pem", root=tmp_path / "root-cert.pem")
    assert plug.root_pem == root.root_pem
    _, csr = tls.new_key_and_csr(SID)
    certs = x509.load_pem_x509_certificates(plug.sign_csr(csr).encode())
    assert [c.subject for c in certs[1:]] == [inter.subject]
    certs[0].verify_directly_issued_by(inter)


def test_ca_revocation_lists_serials(ca: CertificateAuthority) -> None:
    _, csr = tls.new_key_and_csr(SID)
    chain = ca.sign_csr(csr)
    serial = ca.revoke(chain)
    assert format(serial, "x") in ca.revoked_serials()


def test_credentials_rotate_at_half_life(issue: object) -> None:
    creds = issue(SID, 120.0)  # type: ignore[operator]
    assert creds.spiffe_id == SID
    assert creds.rotate_at() == pytest.approx(creds.not_before + (creds.not_after
                                                                  - creds.not_before) / 2)


def test_ca_sign_request_is_the_wire_exchange(ca: CertificateAuthority) -> None:
    _, csr = tls.new_key_and_csr(SID)
    answer = ca.sign_request({"csr": csr}, SID)
    assert answer["root"] == ca.root_pem and "BEGIN CERTIFICATE" in answer["cert_chain"]
    with pytest.raises(CAError, match="JSON"):
        ca.sign_request({"nope": 1})
    with pytest.raises(CAError, match="asks for"):
        ca.sign_request({"csr": csr}, "spiffe://cluster.local/ns/x/sa/y")
