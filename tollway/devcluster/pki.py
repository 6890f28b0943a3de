"""The dev cluster's certificates and kubeconfigs, minted with `cryptography`.

One CA signs everything: serving certs (apiserver, etcd, the node agent's kubelet endpoint)
and client certs whose CN/O are the identities Kubernetes' bootstrap RBAC already knows
(system:kube-controller-manager, system:kube-scheduler, system:kube-proxy) or system:masters
for the admin. Keys are ECDSA P-256 (what envtest uses); the Service-account signer is a
separate key because it signs tokens, not TLS.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tollway.devcluster import layout as L

VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class Identity:
    """A client certificate: file stem, CN (user) and O (groups)."""

    stem: str
    user: str
    groups: tuple[str, ...] = ()
    api_client: bool = True  # also write a kubeconfig for it


# Components that talk to the API, each as the user bootstrap RBAC grants its powers to.
# CoreDNS and the node agent use the admin identity: a dev cluster, and the agent deletes
# pods and writes nodes, which the Node authorizer would only allow per bound pod.
CLIENTS = (
    Identity("admin", "tollway-admin", ("system:masters",)),
    Identity("kube-controller-manager", "system:kube-controller-manager"),
    Identity("kube-scheduler", "system:kube-scheduler"),
    Identity("kube-proxy", "system:kube-proxy"),
    Identity("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",),
             api_client=False),
    Identity("apiserver-etcd-client", "kube-apiserver-etcd-client", api_client=False),
)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(cn: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


class CA:
    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self.key = key
        self.cert = cert

    @classmethod
    def create(cls, cn: str = "tollway-dev-ca") -> CA:
        key = _key()
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(_name(cn))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def issue(self, cn: str, orgs: tuple[str, ...] = (), *, server: bool = False,
              client: bool = False, dns: tuple[str, ...] = (),
              ips: tuple[str, ...] = ()) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = _key()
        now = dt.datetime.now(dt.UTC)
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn, orgs))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False,
                                         key_cert_sign=False, crl_sign=False,
                                         content_commitment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.cert.public_key()), critical=False)  # type: ignore[arg-type]
        )
        if dns or ips:
            names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
            names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return key, builder.sign(self.key, hashes.SHA256())


def apiserver_sans() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """DNS and IP SANs: every name a client inside or outside the cluster may dial."""
    svc = "kubernetes.default.svc"
    dns = ("kubernetes", "kubernetes.default", svc, f"{svc}.{L.CLUSTER_DOMAIN}", "localhost")
    ips = ("127.0.0.1", str(L.BRIDGE_IP), str(L.KUBERNETES_SERVICE_IP))
    return dns, ips


def kubeconfig(server: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes,
               name: str = "tollway-dev") -> dict[str, object]:
    """A kubeconfig with the credentials embedded, so it still works when copied elsewhere."""
    def b64(b: bytes) -> str:
        return base64.b64encode(b).decode()

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server,
                                                 "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": name, "user": {"client-certificate-data": b64(cert_pem),
                                          "client-key-data": b64(key_pem)}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_all(lay: L.Layout) -> None:
    """Mint a fresh CA and every cert and kubeconfig the cluster uses (each `up` starts clean)."""
    d = lay.pki
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    ca = CA.create()
    _write_key(d / "ca.key", ca.key)
    _write_cert(d / "ca.crt", ca.cert)
    ca_pem = ca.cert.public_bytes(serialization.Encoding.PEM)

    dns, ips = apiserver_sans()
    key, cert = ca.issue("kube-apiserver", server=True, dns=dns, ips=ips)
    _write_key(d / "apiserver.key", key)
    _write_cert(d / "apiserver.crt", cert)

    key, cert = ca.issue("etcd", server=True, client=True, dns=("localhost",), ips=("127.0.0.1",))
    _write_key(d / "etcd.key", key)
    _write_cert(d / "etcd.crt", cert)

    key, cert = ca.issue(f"system:node:{L.NODE_NAME}", ("system:nodes",), server=True,
                         dns=(L.NODE_NAME, "localhost"), ips=(str(L.BRIDGE_IP), "127.0.0.1"))
    _write_key(d / "kubelet.key", key)
    _write_cert(d / "kubelet.crt", cert)

    sa = _key()
    _write_key(d / "sa.key", sa)
    (d / "sa.pub").write_bytes(sa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

    server = f"https://{L.BRIDGE_IP}:{L.APISERVER_PORT}"
    for ident in CLIENTS:
        key, cert = ca.issue(ident.user, ident.groups, client=True)
        _write_key(d / f"{ident.stem}.key", key)
        _write_cert(d / f"{ident.stem}.crt", cert)
        if not ident.api_client:
            continue
        cfg = kubeconfig(server, ca_pem, cert.public_bytes(serialization.Encoding.PEM),
                         _pem_key(key))
        target = lay.kubeconfig if ident.stem == "admin" else lay.component_kubeconfig(ident.stem)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(cfg, f, indent=2)  # JSON is YAML: kubectl, client-go and lightkube read it
