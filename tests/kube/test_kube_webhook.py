"""The validating webhook's answers and configuration (pure; e2e in the cluster test)."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest
from cryptography import x509

from tollway.kube import webhook

VS: dict[str, Any] = {
    "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
    "metadata": {"name": "myapp", "namespace": "shop", "uid": "1", "resourceVersion": "4",
                 "managedFields": [{"manager": "kubectl"}]},
    "spec": {"hosts": ["myapp"], "http": [{"route": [{"destination": {"host": "myapp"}}]}]},
}


def review(obj: dict[str, Any], operation: str = "CREATE") -> dict[str, Any]:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "abc-123", "operation": operation, "object": obj,
                        "kind": {"group": "networking.istio.io", "version": "v1",
                                 "kind": "VirtualService"}}}


def test_a_good_manifest_is_allowed_with_the_same_uid() -> None:
    out = webhook.admit(review(VS))
    assert out["apiVersion"] == "admission.k8s.io/v1" and out["kind"] == "AdmissionReview"
    assert out["response"] == {"uid": "abc-123", "allowed": True}


def test_a_bad_manifest_is_refused_with_the_field_named() -> None:
    bad = copy.deepcopy(VS)
    bad["spec"]["http"][0]["timeout"] = "ten seconds"
    bad["spec"]["http"][0]["retires"] = {"attempts": 3}
    response = webhook.admit(review(bad, "UPDATE"))["response"]
    assert response["allowed"] is False and response["status"]["code"] == 400
    message = response["status"]["message"]
    assert "VirtualService/myapp: spec.http[0].timeout: 'ten seconds' is not a duration" in message
    assert "spec.http[0].retires: unknown field 'retires'; did you mean 'retries'?" in message


def test_deletes_are_allowed() -> None:
    assert webhook.admit(review({"kind": "nonsense"}, "DELETE"))["response"]["allowed"] is True


def test_the_configuration_covers_every_tollway_kind_and_trusts_the_ca() -> None:
    ca_pem, cert_pem, _key = webhook.serving_credentials(["10.244.0.1", "tollway.svc"])
    config = webhook.render_configuration(ca_pem, url="https://10.244.0.1:9443/validate",
                                          namespace_selector={"matchLabels": {"a": "b"}})
    [hook] = config["webhooks"]
    assert base64.b64decode(hook["clientConfig"]["caBundle"]).decode() == ca_pem
    resources = {(r["apiGroups"][0], res) for r in hook["rules"] for res in r["resources"]}
    assert {("networking.istio.io", "virtualservices"), ("argoproj.io", "rollouts"),
            ("flagger.app", "canaries"), ("security.istio.io", "authorizationpolicies")} \
        <= resources
    assert hook["sideEffects"] == "None" and hook["admissionReviewVersions"] == ["v1"]
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    ca = x509.load_pem_x509_certificate(ca_pem.encode())
    cert.verify_directly_issued_by(ca)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(i) for i in sans.get_values_for_type(x509.IPAddress)] == ["10.244.0.1"]
    assert sans.get_values_for_type(x509.DNSName) == ["tollway.svc"]
    by_service = webhook.render_configuration(ca_pem, service=("tollway-system", "tollway", 443))
    assert by_service["webhooks"][0]["clientConfig"]["service"]["path"] == "/validate"
    with pytest.raises(ValueError):
        webhook.render_configuration(ca_pem)
