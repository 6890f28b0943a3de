"""The validating admission webhook: `kubectl apply` refuses what `tollway validate` would.

- `admit` [pure]: an AdmissionReview v1 request -> its response. The object is checked
  exactly as `tollway validate` checks a document (`objects.to_resource`); errors refuse
  it with `status.message` = `KIND/NAME: FIELD.PATH: message; ...`, warnings pass as
  AdmissionReview `warnings` (kubectl prints them). Deletes are always allowed.
- `render_configuration` [pure]: the `ValidatingWebhookConfiguration` (the chart
  templates the same shape) for the Tollway kinds, by Service or by URL.
- `serving_credentials` [pure]: a CA and a serving certificate for the webhook's names
  and IPs (cryptography); the CA goes into the configuration's `caBundle`.
- `app` / `serve_webhook`: the HTTPS endpoint (`POST /validate`).
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tollway.config.findings import Finding
from tollway.kube import inject, injectweb, kinds, objects
from tollway.kube.review import read_review

PATH = "/validate"
NAME = "tollway-validation"


def _line(f: Finding) -> str:
    where = f"{f.kind}/{f.name}: " if f.kind else ""
    return f"{where}{f.path + ': ' if f.path else ''}{f.message}"


def admit(review: Mapping[str, Any]) -> dict[str, Any]:
    """AdmissionReview v1 in, AdmissionReview v1 out (same uid)."""
    request = review.get("request") if isinstance(review.get("request"), Mapping) else {}
    assert isinstance(request, Mapping)
    uid = str(request.get("uid") or "")
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    obj = request.get("object")
    if request.get("operation") in ("CREATE", "UPDATE") and isinstance(obj, Mapping):
        _resource, findings = objects.to_resource(obj)
        errors = [f for f in findings if f.is_error]
        warnings = [_line(f) for f in findings if not f.is_error and f.severity.value != "info"]
        if errors:
            response["allowed"] = False
            response["status"] = {"code": 400, "reason": "Invalid",
                                  "message": "; ".join(_line(f) for f in errors)}
        if warnings:
            response["warnings"] = warnings
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": response}


def render_configuration(ca_bundle: str, *, url: str | None = None,
                         service: tuple[str, str, int] | None = None,
                         namespace_selector: Mapping[str, Any] | None = None,
                         name: str = NAME, failure_policy: str = "Fail") -> dict[str, Any]:
    """The ValidatingWebhookConfiguration for every Tollway kind; `service` is
    (namespace, name, port) in a cluster, `url` a webhook outside it (the dev cluster)."""
    if (url is None) == (service is None):
        raise ValueError("give exactly one of url= and service=")
    client: dict[str, Any] = {"caBundle": base64.b64encode(ca_bundle.encode()).decode()}
    if url is not None:
        client["url"] = url
    else:
        assert service is not None
        client["service"] = {"namespace": service[0], "name": service[1], "port": service[2],
                             "path": PATH}
    by_group: dict[str, list[str]] = {}
    for w in kinds.tollway_kinds():
        by_group.setdefault(w.group, []).append(w.plural)
    rules = [{"apiGroups": [g], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"],
              "resources": sorted(p), "scope": "*"} for g, p in sorted(by_group.items())]
    hook: dict[str, Any] = {
        "name": "validation.tollway.dev", "clientConfig": client, "rules": rules,
        "failurePolicy": failure_policy, "sideEffects": "None", "matchPolicy": "Equivalent",
        "admissionReviewVersions": ["v1"], "timeoutSeconds": 10,
    }
    if namespace_selector is not None:
        hook["namespaceSelector"] = dict(namespace_selector)
    return {"apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": name}, "webhooks": [hook]}


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def serving_credentials(hosts: Sequence[str], days: int = 365) -> tuple[str, str, str]:
    """(ca_pem, cert_pem, key_pem): a CA and a serving certificate for `hosts` (DNS
    names or IP literals), as a chart's cert job or cert-manager would make them."""
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    until = now + dt.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (x509.CertificateBuilder().subject_name(_name("tollway-webhook-ca"))
               .issuer_name(_name("tollway-webhook-ca")).public_key(ca_key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now)
               .not_valid_after(until)
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                            False, False), critical=True)
               .sign(ca_key, hashes.SHA256()))
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(hosts[0] if hosts else "webhook"))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(until)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))

    def pem(c: x509.Certificate) -> str:
        return c.public_bytes(serialization.Encoding.PEM).decode()

    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return pem(ca_cert), pem(cert), key_pem


def app(inject_settings: inject.Settings | None = None) -> web.Application:
    """`/validate`, and the sidecar injector's `/inject` (tollway.kube.injectweb)."""

    async def validate(request: web.Request) -> web.Response:
        review = await read_review(request)
        if isinstance(review, web.Response):
            return review
        return web.json_response(admit(review))

    application = web.Application(client_max_size=8 * 1024 * 1024)
    application.add_routes([web.post(PATH, validate)])
    application.add_routes(injectweb.routes(inject_settings or inject.Settings()))
    return application


async def serve_webhook(host: str, port: int, cert_file: Path,
                        key_file: Path, inject_settings: inject.Settings | None = None,
                        ) -> tuple[web.AppRunner, int]:
    """HTTPS on host:port with the given serving certificate; (runner, bound port)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_file, key_file)
    runner = web.AppRunner(app(inject_settings), access_log=None, handle_signals=False,
                           shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ctx)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    return runner, int(bound)


def ensure_credentials(folder: Path, hosts: Sequence[str]) -> tuple[Path, Path, Path]:
    """(ca, cert, key) files in `folder`: the ones there, else made for `hosts`."""
    ca_file, cert_file, key_file = folder / "ca.crt", folder / "tls.crt", folder / "tls.key"
    if not (cert_file.exists() and key_file.exists()):
        folder.mkdir(parents=True, exist_ok=True)
        ca_pem, cert_pem, key_pem = serving_credentials(hosts)
        ca_file.write_text(ca_pem)
        cert_file.write_text(cert_pem)
        key_file.touch(mode=0o600)
        key_file.write_text(key_pem)
    return ca_file, cert_file, key_file
