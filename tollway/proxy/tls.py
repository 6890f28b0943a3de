"""SSLContexts for mTLS between sidecars, and SPIFFE identities read from peers.

The sidecar makes its own EC P-256 key and sends only a CSR to the control plane
(`new_key_and_csr`); the signed chain comes back as `Credentials`. One `TlsState` per
proxy owns the server and client contexts; `rotate()` reloads the new certificate into
the same contexts, so connections made from then on present it while established ones
(and pooled upstream connections) keep going untouched: no request or connection drops.

Python's hostname check cannot read URI SANs, so peers are verified against the CA by
OpenSSL during the handshake and against the expected SPIFFE IDs right after it
(`check_peer`), before any request byte is read or written.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import os
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tollway.kit.backoff import Backoff
from tollway.kit.clock import Clock, MonotonicClock
from tollway.proxy.credential import TokenSource, header
from tollway.snapshot import types

log = logging.getLogger("tollway.proxy.tls")

ALPN = ("istio-http/1.1", "istio", "http/1.1")
# What the inbound side accepts, in its order of preference (OpenSSL picks the first one
# the client offers too): HTTP/2 for a client that offers it (`istio-h2` is what Istio's
# sidecars offer for an HTTP/2 upstream), else HTTP/1.1 as before. A client offering none
# of them still gets HTTP/2 if it starts with the connection preface (Istio's peers do).
SERVER_ALPN = ("h2", "istio-h2", *ALPN)
GATEWAY_ALPN = ("h2", "http/1.1")
SPIFFE = "spiffe://"


# ------------------------------------------------------------------ keys and credentials


def new_key_and_csr(spiffe_id: str) -> tuple[str, str]:
    """A fresh P-256 key (stays here) and the CSR (the only thing that leaves)."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]),
                       critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return key_pem, csr.public_bytes(serialization.Encoding.PEM).decode()


@dataclass(frozen=True, slots=True)
class Credentials:
    """A workload's certificate chain, its key, and the roots it trusts."""

    cert_chain: str
    private_key: str
    roots: str
    spiffe_id: str
    not_before: float  # wall-clock seconds
    not_after: float

    @classmethod
    def from_pem(cls, cert_chain: str, private_key: str, roots: str) -> Credentials:
        leaf = x509.load_pem_x509_certificate(cert_chain.encode())
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = [u for u in san.get_values_for_type(x509.UniformResourceIdentifier)
                if u.startswith(SPIFFE)]
        return cls(cert_chain, private_key, roots, uris[0] if uris else "",
                   leaf.not_valid_before_utc.timestamp(), leaf.not_valid_after_utc.timestamp())

    def rotate_at(self, ratio: float = 0.5) -> float:
        """When to ask for the next one: Istio renews at 50% of the lifetime."""
        return self.not_before + (self.not_after - self.not_before) * ratio

    def lifetime_left(self, now_wall: float) -> float:
        return self.not_after - now_wall


def _load_chain(ctx: ssl.SSLContext, cert_chain: str, private_key: str) -> None:
    """`load_cert_chain` needs a file: write one readable only by us, load, delete."""
    folder = tempfile.mkdtemp(prefix="tollway-tls-")
    path = os.path.join(folder, "cred.pem")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(private_key)
            f.write("\n")
            f.write(cert_chain)
        ctx.load_cert_chain(path)
    finally:
        if os.path.exists(path):
            os.unlink(path)
        os.rmdir(folder)


def _base(ctx: ssl.SSLContext, alpn: tuple[str, ...] = ALPN) -> ssl.SSLContext:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(list(alpn))
    return ctx


def server_mtls_context(creds: Credentials) -> ssl.SSLContext:
    """Inbound ISTIO_MUTUAL: a client certificate from our CA is required."""
    ctx = _base(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), SERVER_ALPN)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=creds.roots)
    _load_chain(ctx, creds.cert_chain, creds.private_key)
    return ctx


def client_mtls_context(creds: Credentials) -> ssl.SSLContext:
    """Outbound ISTIO_MUTUAL: present our certificate, verify the server's chain; the
    SPIFFE ID is checked after the handshake against the cluster's expected identities."""
    ctx = _base(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=creds.roots)
    _load_chain(ctx, creds.cert_chain, creds.private_key)
    return ctx


# ------------------------------------------------------------------ contract functions


def inbound_context(config: types.ProxyConfig, creds: Credentials | None
                    ) -> ssl.SSLContext | None:
    """The sidecar's inbound mTLS context; None when no port accepts mTLS or no creds."""
    if creds is None or config.node.kind == "client":
        return None
    pa = config.peer_authn
    modes = {pa.mode, *pa.port_modes.values()}
    if modes == {"DISABLE"}:
        return None
    return server_mtls_context(creds)


def client_context(cluster: types.Cluster, creds: Credentials | None
                   ) -> ssl.SSLContext | None:
    """Upstream TLS for a cluster from its DestinationRule mode (or auto mTLS)."""
    tls = cluster.tls
    if tls.mode == "DISABLE":
        return None
    if tls.mode == "ISTIO_MUTUAL":
        if creds is None:
            raise ValueError(f"cluster {cluster.name} needs mTLS but this proxy has no "
                             "workload certificate yet")
        ctx = client_mtls_context(creds)
        if tls.expected_identities:
            ctx.sslobject_class = _checking_object_class(frozenset(tls.expected_identities))
        return ctx
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        if tls.ca_certificates:
            _load_roots(ctx, tls.ca_certificates)
        else:
            ctx.load_default_certs()
        if tls.subject_alt_names:  # Istio: the SAN list replaces the hostname check
            ctx.check_hostname = False
            ctx.sslobject_class = _san_checking_class(frozenset(tls.subject_alt_names))
    if tls.mode == "MUTUAL" and tls.client_certificate and tls.private_key:
        _load_client_cert(ctx, tls.client_certificate, tls.private_key)
    return ctx


def _load_client_cert(ctx: ssl.SSLContext, cert: str, key: str) -> None:
    if "-----BEGIN" in cert:
        _load_chain(ctx, cert, key)
    else:
        ctx.load_cert_chain(cert, key)


def _san_checking_class(expected: frozenset[str]) -> type[ssl.SSLObject]:
    """DestinationRule `subjectAltNames`: the server must carry one of them (DNS or URI)."""

    class SanCheckedObject(ssl.SSLObject):
        def do_handshake(self) -> None:
            super().do_handshake()
            cert: dict[str, Any] = dict(self.getpeercert() or {})
            sans = {str(pair[1]) for pair in cert.get("subjectAltName", ())}
            if not sans & expected:
                raise ssl.SSLCertVerificationError(
                    f"server certificate SANs {sorted(sans)} match none of {sorted(expected)}")

    return SanCheckedObject


def _load_roots(ctx: ssl.SSLContext, pem_or_path: str) -> None:
    if "-----BEGIN" in pem_or_path:
        ctx.load_verify_locations(cadata=pem_or_path)
    else:
        ctx.load_verify_locations(cafile=pem_or_path)


def gateway_context(tls: types.DownstreamTls) -> ssl.SSLContext | None:
    """Gateway server TLS from a Secret or files: SIMPLE, or MUTUAL (client cert)."""
    if tls.mode not in ("SIMPLE", "MUTUAL") or tls.credential is None:
        return None
    ctx = _base(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), GATEWAY_ALPN)
    _load_chain(ctx, tls.credential.cert_chain, tls.credential.private_key)
    if tls.mode == "MUTUAL":
        if not tls.credential.ca_certificates:
            raise ValueError("Gateway tls MUTUAL needs caCertificates (or ca.crt in the Secret)")
        ctx.verify_mode = ssl.CERT_REQUIRED
        _load_roots(ctx, tls.credential.ca_certificates)
    return ctx


# ------------------------------------------------------------------ peers


def peer_spiffe_id(ssl_object: Any) -> str | None:
    """The verified peer's `spiffe://…` URI SAN, or None (no certificate, no SPIFFE ID)."""
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert()
    if not cert:
        return None
    for kind, value in cert.get("subjectAltName", ()):
        if kind == "URI" and value.startswith(SPIFFE):
            return str(value)
    return None


def peer_principal(ssl_object: Any) -> str | None:
    """The peer as AuthorizationPolicy `principals` name it: SPIFFE ID minus `spiffe://`."""
    sid = peer_spiffe_id(ssl_object)
    return sid[len(SPIFFE):] if sid else None


def peer_cert_hash(ssl_object: Any) -> str:
    """Hex SHA-256 of the peer certificate's DER (XFCC's `Hash=`)."""
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return hashlib.sha256(der).hexdigest() if der else ""


def check_peer(ssl_object: Any, expected: Collection[str] = (),
               revoked: Collection[str] = ()) -> str | None:
    """None when the peer is acceptable, else the reason (one sentence for the log)."""
    cert = ssl_object.getpeercert() if ssl_object is not None else None
    if not cert:
        return "peer presented no certificate"
    sid = peer_spiffe_id(ssl_object)
    if sid is None:
        return "peer certificate carries no spiffe:// identity"
    if revoked and str(cert.get("serialNumber", "")).lower().lstrip("0") in {
            r.lower().lstrip("0") for r in revoked}:
        return f"peer certificate of {sid} is revoked"
    if expected and sid not in expected:
        return f"peer identity {sid} is not one of {', '.join(sorted(expected))}"
    return None


def verify_upstream(ssl_object: Any, cluster: types.Cluster) -> str | None:
    """After an upstream mTLS handshake: is the server one of the cluster's identities?"""
    return check_peer(ssl_object, cluster.tls.expected_identities)


# ------------------------------------------------------------------ rotation


def _checking_object_class(expected: frozenset[str]) -> type[ssl.SSLObject]:
    """An SSLObject whose handshake also checks the server's SPIFFE ID.

    asyncio and uvloop drive TLS through `context.wrap_bio`, which builds
    `context.sslobject_class`; raising here fails the handshake itself, so a server that
    is not one of the expected identities never sees a request byte.
    """

    class SpiffeCheckedObject(ssl.SSLObject):
        def do_handshake(self) -> None:
            super().do_handshake()
            reason = check_peer(self, expected)
            if reason is not None:
                raise ssl.SSLCertVerificationError(reason)

    return SpiffeCheckedObject


class TlsState:
    """The proxy's current credentials and the contexts built from them.

    Listeners and upstream pools read `server` / `client` / `client_for(ids)` when they
    make a new connection; `rotate` reloads the same context objects in place, so nothing
    has to be rebuilt and established connections are not touched.
    """

    def __init__(self, creds: Credentials) -> None:
        self.creds = creds
        self.server = server_mtls_context(creds)
        self.client = client_mtls_context(creds)
        self.rotations = 0
        self._roots = {creds.roots}
        self._checked: dict[frozenset[str], ssl.SSLContext] = {}

    def client_for(self, expected: Collection[str]) -> ssl.SSLContext:
        """A client context that refuses servers outside `expected` (ISTIO_MUTUAL)."""
        key = frozenset(expected)
        if not key:
            return self.client
        ctx = self._checked.get(key)
        if ctx is None:
            ctx = client_mtls_context(self.creds)
            ctx.sslobject_class = _checking_object_class(key)
            self._checked[key] = ctx
        return ctx

    def rotate(self, creds: Credentials) -> None:
        for ctx in (self.server, self.client, *self._checked.values()):
            if creds.roots not in self._roots:
                ctx.load_verify_locations(cadata=creds.roots)
            _load_chain(ctx, creds.cert_chain, creds.private_key)
        self._roots.add(creds.roots)
        self.creds = creds
        self.rotations += 1

    def statistics(self) -> dict[str, object]:
        return {
            "spiffe_id": self.creds.spiffe_id,
            "not_after": dt.datetime.fromtimestamp(self.creds.not_after, dt.UTC).isoformat(),
            "rotations": self.rotations,
        }


# ------------------------------------------------------------------ issuing and renewing

Signer = Callable[[str], Awaitable[tuple[str, str]]]  # CSR PEM -> (cert chain, root)


class SignRefused(OSError):
    """The CA answered with an HTTP status other than 200 (403: unknown node, 404: no CA)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"CA answered {status}: {text}")
        self.status = status


def spiffe_id(node: types.Node) -> str:
    """The identity a proxy asks the CA for: its node's namespace and service account."""
    return f"{SPIFFE}{node.cluster_domain}/ns/{node.namespace}/sa/{node.service_account}"


def http_signer(control_url: str, node: str = "", timeout: float = 10.0,
                token: TokenSource | None = None) -> Signer:
    """`POST {control_url}/v1/ca/sign {"csr": PEM}` → `{"cert_chain": PEM, "root": PEM}`."""
    parts = urlsplit(control_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    base = parts.path.rstrip("/")

    async def sign(csr: str) -> tuple[str, str]:
        body = json.dumps({"csr": csr, "node": node}).encode()
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        try:
            writer.write(f"POST {base}/v1/ca/sign HTTP/1.0\r\nHost: {host}:{port}\r\n"
                         f"{header(token)}Content-Type: application/json\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            await writer.drain()
            raw = await asyncio.wait_for(reader.read(), timeout)
        finally:
            writer.close()
        head, _, payload = raw.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
        if status != 200:
            raise SignRefused(status, payload[:200].decode("latin-1"))
        data = json.loads(payload)
        return str(data["cert_chain"]), str(data["root"])

    return sign


async def issue(spiffe_id: str, sign: Signer) -> Credentials:
    """A new key here, its CSR to the CA, the signed chain back."""
    key, csr = new_key_and_csr(spiffe_id)
    chain, root = await sign(csr)
    return Credentials.from_pem(chain, key, root)


class Rotator:
    """Renews the workload certificate at half its lifetime, as Istio's agent does.

    `state.rotate` swaps the certificate into the live contexts: established and pooled
    connections keep going, new handshakes present the new certificate. A failed renewal
    is retried with backoff while the current certificate stays in use.
    """

    def __init__(self, state: TlsState, sign: Signer, *, ratio: float = 0.5,
                 clock: Clock | None = None, backoff: Backoff | None = None) -> None:
        self.state = state
        self.sign = sign
        self.ratio = ratio
        self.clock = clock or MonotonicClock()
        self.backoff = backoff or Backoff(base=0.5, cap=30.0)
        self.failures = 0

    def delay(self) -> float:
        return max(0.0, self.state.creds.rotate_at(self.ratio) - self.clock.wall())

    async def renew_once(self) -> None:
        creds = await issue(self.state.creds.spiffe_id, self.sign)
        self.state.rotate(creds)
        self.backoff.reset()
        log.info("workload certificate for %s renewed (valid until %s)", creds.spiffe_id,
                 dt.datetime.fromtimestamp(creds.not_after, dt.UTC).isoformat())

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.delay())
            try:
                await self.renew_once()
            except (OSError, ValueError, KeyError, TimeoutError) as exc:
                self.failures += 1
                wait = self.backoff.next_delay()
                log.warning("certificate renewal failed (%s); retrying in %.1fs", exc, wait)
                await asyncio.sleep(wait)


async def bootstrap(control_url: str, spiffe_id: str, node: str = "",
                    token: TokenSource | None = None) -> tuple[TlsState, Rotator]:
    """First certificate from the control plane's CA, and the rotator that renews it.

    For `tollway proxy`: `state, rotator = await tls.bootstrap(url, sid, node)`, pass
    `tls_state=state` to ProxyServer, then run `rotator.run()` as a task.
    """
    sign = http_signer(control_url, node, token=token)
    state = TlsState(await issue(spiffe_id, sign))
    return state, Rotator(state, sign)


async def obtain(control_url: str, node: types.Node, *, backoff: Backoff | None = None,
                 token: TokenSource | None = None) -> tuple[TlsState, Rotator] | None:
    """`bootstrap` for a proxy that must not serve before it has its certificate.

    Retries (with backoff) while the control plane is unreachable or does not know the
    node yet (403: registration races the first CSR), as Istio's agent waits for its
    first certificate. None when the control plane has no CA at all (404): the proxy
    then runs without mTLS, as it did before certificates were issued, and says so.
    """
    backoff = backoff or Backoff(base=0.1, cap=5.0)
    sid = spiffe_id(node)
    while True:
        try:
            state, rotator = await bootstrap(control_url, sid, node.name, token)
        except SignRefused as exc:
            if exc.status == 404:
                log.warning("control plane at %s has no CA (/v1/ca/sign answered 404); %s "
                            "runs without a workload certificate (no mTLS)", control_url,
                            node.name)
                return None
            reason = str(exc)
        except (OSError, TimeoutError, ValueError, KeyError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
        else:
            log.info("%s runs as %s (certificate valid until %s)", node.name, sid,
                     dt.datetime.fromtimestamp(state.creds.not_after, dt.UTC).isoformat())
            return state, rotator
        wait = backoff.next_delay()
        log.warning("no workload certificate for %s yet (%s); retrying in %.1fs", sid, reason,
                    wait)
        await asyncio.sleep(wait)
