"""The mesh's certificate authority: SPIFFE workload certificates signed on a CSR.

Like istiod's CA: a self-signed root kept in the state folder (10 years), or a plug-in CA
loaded from the user's files (`ca-cert.pem`, `ca-key.pem`, optional `cert-chain.pem` and
`root-cert.pem`, Istio's `cacerts` layout). Workloads generate their own EC P-256 key and
send only a CSR; the CA returns a short-lived leaf (default 24 h, down to minutes) whose
only identity is the URI SAN `spiffe://TRUST_DOMAIN/ns/NS/sa/SA`, with an empty subject.

Certificate logic takes an injected clock and does no IO; only `load_or_create` and
`from_files` touch the disk. CONTROL decides whom to trust for an identity and passes it
to `sign_csr` (see `identity_of` for what the CSR asks for).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tollway.kit.clock import Clock, MonotonicClock

log = logging.getLogger(__name__)
DEFAULT_TTL = 24 * 3600.0
MIN_TTL = 1.0  # tests rotate in seconds; operators in minutes
MAX_TTL = 90 * 24 * 3600.0  # Istio's MAX_WORKLOAD_CERT_TTL
ROOT_TTL = 10 * 365 * 24 * 3600.0
SKEW = 60.0  # backdate not-before for clocks slightly behind
ROOT_CERT = "root-cert.pem"
ROOT_KEY = "root-key.pem"
REVOKED = "revoked-serials"  # one lowercase hex serial a line, beside the root


class CAError(ValueError):
    """A CSR or identity the CA refuses; the message is one sentence for the caller."""


def _now(clock: Clock) -> dt.datetime:
    return dt.datetime.fromtimestamp(clock.wall(), tz=dt.UTC)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def parse_spiffe(spiffe_id: str) -> tuple[str, str, str]:
    """`spiffe://TD/ns/NS/sa/SA` → (TD, NS, SA); CAError for anything else."""
    rest = spiffe_id.removeprefix("spiffe://")
    parts = rest.split("/")
    if (not spiffe_id.startswith("spiffe://") or len(parts) != 5 or parts[1] != "ns"
            or parts[3] != "sa" or not all(parts)):
        raise CAError(f"identity {spiffe_id!r} is not spiffe://TRUST_DOMAIN/ns/NS/sa/SA")
    return parts[0], parts[2], parts[4]


def identity_of(csr: x509.CertificateSigningRequest | str | bytes) -> str:
    """The SPIFFE ID a CSR asks for (its one URI SAN); CAError when there is none."""
    req = _load_csr(csr) if isinstance(csr, str | bytes) else csr
    try:
        san = req.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise CAError("the CSR has no URI SAN with a spiffe:// identity") from None
    uris = [u for u in san.get_values_for_type(x509.UniformResourceIdentifier)
            if u.startswith("spiffe://")]
    if len(uris) != 1:
        raise CAError("the CSR must carry exactly one spiffe:// URI SAN")
    return uris[0]


def _load_csr(pem: str | bytes) -> x509.CertificateSigningRequest:
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        req = x509.load_pem_x509_csr(data)
    except ValueError as exc:
        raise CAError("the CSR is not a PEM certificate signing request") from exc
    if not req.is_signature_valid:
        raise CAError("the CSR's signature does not verify")
    return req


def _root_cert(key: ec.EllipticCurvePrivateKey, trust_domain: str, now: dt.datetime
               ) -> x509.Certificate:
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain),
        x509.NameAttribute(NameOID.COMMON_NAME, "Tollway Root CA"),
    ])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(seconds=SKEW))
        .not_valid_after(now + dt.timedelta(seconds=ROOT_TTL))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                          content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )


@dataclass
class CertificateAuthority:
    """Signs workload certificates; `root_pem` is the trust bundle pushed with config."""

    cert: x509.Certificate  # the signing certificate (the root, or a plug-in intermediate)
    key: ec.EllipticCurvePrivateKey
    chain: tuple[x509.Certificate, ...] = ()  # intermediates above `cert`, leaf side first
    root: x509.Certificate | None = None  # the trust anchor, when `cert` is not it
    trust_domain: str = "cluster.local"
    clock: Clock = field(default_factory=MonotonicClock)
    revoked: set[int] = field(default_factory=set)
    folder: Path | None = None  # where load_or_create keeps the root (and revocations)

    # -------------------------------------------------------------- construction

    @classmethod
    def create(cls, trust_domain: str = "cluster.local", clock: Clock | None = None
               ) -> CertificateAuthority:
        clock = clock or MonotonicClock()
        key = new_key()
        return cls(_root_cert(key, trust_domain, _now(clock)), key,
                   trust_domain=trust_domain, clock=clock)

    @classmethod
    def load_or_create(cls, state_dir: str | Path, trust_domain: str = "cluster.local",
                       clock: Clock | None = None) -> CertificateAuthority:
        """The self-signed root in STATE_DIR/ca/, created (key 0600) on first use."""
        folder = Path(state_dir) / "ca"
        cert_file, key_file = folder / ROOT_CERT, folder / ROOT_KEY
        if cert_file.exists() and key_file.exists():
            ca = cls.from_files(cert_file, key_file, trust_domain=trust_domain, clock=clock)
            ca.folder = folder
            revoked = folder / REVOKED
            if revoked.exists():  # a restart must not forget a revocation
                ca.revoked = {int(x, 16) for x in revoked.read_text().split() if x}
            return ca
        ca = cls.create(trust_domain, clock)
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key_pem(ca.key))
        cert_file.write_text(cert_pem(ca.cert))
        ca.folder = folder
        return ca

    @classmethod
    def from_files(cls, cert: str | Path, key: str | Path, *, chain: str | Path | None = None,
                   root: str | Path | None = None, trust_domain: str = "cluster.local",
                   clock: Clock | None = None) -> CertificateAuthority:
        """A plug-in CA (Istio's cacerts): signing cert + key, optional chain and root."""
        signing = x509.load_pem_x509_certificate(Path(cert).read_bytes())
        loaded = serialization.load_pem_private_key(Path(key).read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise CAError(f"{key}: the CA key must be an EC key (P-256)")
        above = tuple(x509.load_pem_x509_certificates(Path(chain).read_bytes())) if chain else ()
        above = tuple(c for c in above if c != signing)
        anchor = x509.load_pem_x509_certificate(Path(root).read_bytes()) if root else None
        return cls(signing, loaded, above, anchor, trust_domain, clock or MonotonicClock())

    # -------------------------------------------------------------- use

    @property
    def root_pem(self) -> str:
        return cert_pem(self.root or (self.chain[-1] if self.chain else self.cert))

    def sign_csr(self, csr_pem: str | bytes, spiffe_id: str | None = None,
                 ttl: float = DEFAULT_TTL) -> str:
        """Leaf PEM + the chain up to (not including) the root, for the CSR's public key."""
        req = _load_csr(csr_pem)
        wanted = identity_of(req)
        identity = spiffe_id or wanted
        if wanted != identity:
            raise CAError(f"the CSR asks for {wanted} but this caller is {identity}")
        domain, _, _ = parse_spiffe(identity)
        if domain != self.trust_domain:
            raise CAError(f"identity {identity} is outside trust domain {self.trust_domain}")
        if not MIN_TTL <= ttl <= MAX_TTL:
            raise CAError(f"certificate lifetime {ttl:g}s is outside {MIN_TTL:g}s..90 days")
        public = req.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey):
            raise CAError("workload keys must be EC P-256")
        leaf = self._leaf(public, identity, ttl)
        return "".join(cert_pem(c) for c in (leaf, *self._issuers()))

    def sign_request(self, body: object, identity: str | None = None,
                     ttl: float = DEFAULT_TTL) -> dict[str, str]:
        """The `POST /v1/ca/sign` exchange: `{"csr": PEM}` → `{"cert_chain", "root"}`.

        `identity` is who CONTROL knows the caller to be (e.g. from the node it started:
        `spiffe://TD/ns/NS/sa/SA`); a CSR asking for anything else is refused. CAError's
        message is the one sentence to answer with (HTTP 400).
        """
        csr = body.get("csr") if isinstance(body, dict) else None
        if not isinstance(csr, str):
            raise CAError('the request body must be JSON {"csr": "<PEM>"}')
        return {"cert_chain": self.sign_csr(csr, identity, ttl), "root": self.root_pem}

    def _issuers(self) -> tuple[x509.Certificate, ...]:
        if self.root is None and not self.chain:
            return ()  # the signer is the root: clients already trust it
        return (self.cert, *(c for c in self.chain if c != self.root))

    def _leaf(self, public: ec.EllipticCurvePublicKey, identity: str, ttl: float
              ) -> x509.Certificate:
        now = _now(self.clock)
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.cert.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(seconds=min(SKEW, ttl / 10)))
            .not_valid_after(now + dt.timedelta(seconds=ttl))
            .add_extension(x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(identity)]), critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(digital_signature=True, key_encipherment=True,
                              content_commitment=False, data_encipherment=False,
                              key_agreement=False, key_cert_sign=False, crl_sign=False,
                              encipher_only=False, decipher_only=False),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def revoke(self, cert_chain_pem: str) -> int:
        """Revoke a workload certificate; its serial goes out with the trust bundle."""
        try:
            serial = x509.load_pem_x509_certificate(cert_chain_pem.encode()).serial_number
        except ValueError as exc:
            raise CAError("cert_chain is not a PEM certificate") from exc
        self.revoked.add(serial)
        return serial

    def revoke_serial(self, serial_hex: str) -> int:
        """Revoke by serial (hex, as `openssl x509 -serial` or the trust bundle print it)."""
        text = serial_hex.strip().lower().removeprefix("0x").replace(":", "")
        try:
            serial = int(text, 16)
        except ValueError:
            raise CAError(f"serial {serial_hex!r} is not a hexadecimal number") from None
        self.revoked.add(serial)
        return serial

    def save_revoked(self) -> None:
        """Write the revoked serials beside the root (IO: called by the HTTP edge)."""
        if self.folder is None:
            return
        path = self.folder / REVOKED
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(s + "\n" for s in self.revoked_serials()))
        tmp.replace(path)

    def revoked_serials(self) -> tuple[str, ...]:
        return tuple(sorted(format(s, "x") for s in self.revoked))


def check_ttl(ttl: float) -> float:
    """`ttl` when the CA can issue certificates of that lifetime, else CAError."""
    if not MIN_TTL <= ttl <= MAX_TTL:
        raise CAError(f"certificate lifetime {ttl:g}s is outside {MIN_TTL:g}s..90 days")
    return ttl


IdentityLookup = Callable[[str, Any], str | None]  # (node, auth.Principal) -> SPIFFE ID


def routes(ca: CertificateAuthority, identity_for: IdentityLookup,
           ttl: float = DEFAULT_TTL, on_revoke: Callable[[], None] | None = None,
           persist: Callable[[], Awaitable[None]] | None = None) -> list[Any]:
    """aiohttp routes for `POST /v1/ca/sign`, to pass to `serve.make_app(routes=...)`.

    `identity_for(node_name, principal)` returns the SPIFFE ID the control plane knows
    that node by (`spiffe://TD/ns/NS/sa/SA`), or None for a node it does not know
    (answered 403); it raises `auth.Forbidden` when the caller's verified credential
    (`principal`, set by the guard) is not for that node (403). Without a verified
    credential nothing is signed: the guard must sit in front (`serve.make_app`).
    With `on_revoke` (called after each revocation, to push the new trust bundle),
    `POST /v1/ca/revoke` `{"serial": HEX}` or `{"cert_chain": PEM}` is mounted too.
    `persist` (the control plane on Kubernetes: the CA Secret every replica reads) is
    awaited before the answer; when it fails the revocation holds on this replica only and
    the answer is 503 saying so, never a 200 that would claim it is shared.
    """
    from aiohttp import web

    from tollway.control import auth, guard

    check_ttl(ttl)

    async def sign(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.Response(status=400, text='request body must be JSON {"csr": PEM}')
        node = str(body.get("node", "")) if isinstance(body, dict) else ""
        try:
            identity = identity_for(node, guard.principal_of(request))
        except auth.Forbidden as exc:
            return web.Response(status=403, text=str(exc))
        if identity is None:
            return web.Response(status=403, text=f"node {node!r} is not registered")
        try:
            return web.json_response(ca.sign_request(body, identity, ttl))
        except CAError as exc:
            return web.Response(status=400, text=str(exc))

    async def revoke(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        try:
            if isinstance(body, dict) and isinstance(body.get("serial"), str):
                serial = ca.revoke_serial(body["serial"])
            elif isinstance(body, dict) and isinstance(body.get("cert_chain"), str):
                serial = ca.revoke(body["cert_chain"])
            else:
                raise CAError('the request body must be JSON {"serial": HEX} or '
                              '{"cert_chain": PEM}')
        except CAError as exc:
            return web.Response(status=400, text=str(exc))
        try:
            ca.save_revoked()
        except OSError as exc:  # in force now; only a restart would forget it
            log.warning("revocation of %x not saved to %s: %s", serial, ca.folder, exc)
        assert on_revoke is not None
        on_revoke()
        if persist is not None:
            try:
                await persist()
            except Exception as exc:
                return web.Response(status=503, text=(
                    f"serial {serial:x} is revoked on this replica but not saved for the "
                    f"others ({exc}); retry the revocation"))
        return web.json_response({"revoked": format(serial, "x"),
                                  "revoked_serials": list(ca.revoked_serials())})

    out = [web.post("/v1/ca/sign", sign)]
    if on_revoke is not None:
        out.append(web.post("/v1/ca/revoke", revoke))
    return out
