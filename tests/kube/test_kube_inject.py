"""Sidecar injection: Istio's switches, the JSONPatch (applied here as the API server
would: RFC 6902 `add`), and the /inject AdmissionReview endpoint over real HTTPS."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest

from tollway.capture import rules
from tollway.kube import inject, injectweb, webhook

A = rules.ANNOTATION_PREFIX
SETTINGS = inject.Settings(control_plane_namespace="mesh-system", image="tollway:test")


def _pod(labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
         **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "web-1", "namespace": "shop"}
    if labels is not None:
        meta["labels"] = labels
    if annotations is not None:
        meta["annotations"] = annotations
    body = {"serviceAccountName": "web",
            "containers": [{"name": "app", "image": "web:1",
                            "command": ["tollway", "demo-app"],
                            "ports": [{"containerPort": 8080}]}]}
    body.update(spec)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": body}


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def _apply(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 `add` and `replace` (the ops the injector emits), strictly: parents must
    exist, and what `replace` replaces too."""
    out = copy.deepcopy(doc)
    for op in ops:
        assert op["op"] in ("add", "replace")
        *parents, last = _pointer(op["path"])
        node: Any = out
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if op["op"] == "replace":
            assert (int(last) < len(node)) if isinstance(node, list) else last in node
            node[int(last) if isinstance(node, list) else last] = op["value"]
        elif isinstance(node, list):
            node.append(op["value"]) if last == "-" else node.insert(int(last), op["value"])
        else:
            node[last] = op["value"]
    return out


YES, NO = True, False
DECISIONS = [
    # (pod, namespace, namespace labels, inject?)
    (_pod(), "shop", {"istio-injection": "enabled"}, YES),
    (_pod(), "shop", None, YES),  # the webhook's namespaceSelector already matched
    (_pod(), "shop", {}, NO),  # unlabelled namespace, no pod opt-in
    (_pod(), "shop", {"istio-injection": "disabled"}, NO),
    (_pod(labels={inject.INJECT_KEY: "true"}), "shop", {}, YES),
    (_pod(labels={inject.INJECT_KEY: "true"}), "shop", {"istio-injection": "disabled"}, NO),
    (_pod(labels={inject.INJECT_KEY: "false"}), "shop", {"istio-injection": "enabled"}, NO),
    (_pod(annotations={inject.INJECT_KEY: "false"}), "shop", None, NO),
    (_pod(annotations={inject.INJECT_KEY: "yes"}), "shop", {}, YES),
    (_pod(labels={inject.INJECT_KEY: "On"}), "shop", None, YES),
    # the label beats the deprecated annotation, both ways
    (_pod(labels={inject.INJECT_KEY: "true"}, annotations={inject.INJECT_KEY: "false"}),
     "shop", None, YES),
    (_pod(labels={inject.INJECT_KEY: "false"}, annotations={inject.INJECT_KEY: "true"}),
     "shop", None, NO),
    (_pod(labels={inject.INJECT_KEY: "maybe"}), "shop", None, NO),
    (_pod(hostNetwork=True), "shop", {"istio-injection": "enabled"}, NO),
    (_pod(labels={inject.INJECT_KEY: "true"}), "kube-system", None, NO),
    (_pod(annotations={inject.STATUS_KEY: "{}"}), "shop", None, NO),
]


@pytest.mark.parametrize(("pod", "namespace", "ns_labels", "want"), DECISIONS)
def test_istio_switches(pod: dict[str, Any], namespace: str,
                        ns_labels: dict[str, str] | None, want: bool) -> None:
    got, why = inject.decision(pod, namespace, ns_labels)
    assert got is want, why
    assert why


def test_the_patch_adds_init_sidecar_and_token_and_leaves_the_app_alone() -> None:
    pod = _pod(annotations={A + "excludeOutboundPorts": "5432",
                            A + "excludeOutboundIPRanges": "169.254.0.0/16"})
    patched = _apply(pod, inject.patch(pod, SETTINGS))
    spec = patched["spec"]
    assert spec["containers"][0] == pod["spec"]["containers"][0]  # the app, untouched
    [init] = spec["initContainers"]
    assert init["name"] == "tollway-init"
    assert init["command"][:2] == ["tollway", "iptables"]
    flags = init["command"][2:]
    assert flags[flags.index("-o") + 1] == "5432"
    assert flags[flags.index("-x") + 1] == "169.254.0.0/16"
    assert flags[flags.index("-u") + 1] == "1337"
    assert flags[flags.index("-d") + 1] == "15090,15020"  # admin and status never captured
    sc = init["securityContext"]
    assert sc["runAsUser"] == 0
    assert set(sc["capabilities"]["add"]) == {"NET_ADMIN", "NET_RAW"}

    proxy = spec["containers"][1]
    assert proxy["name"] == "tollway-proxy" and proxy["image"] == "tollway:test"
    cmd = proxy["command"]
    assert cmd[:2] == ["tollway", "proxy"]
    assert cmd[cmd.index("--control-plane") + 1] == "http://tollway-control-plane.mesh-system.svc:15010"
    assert cmd[cmd.index("--token-file") + 1] == "/var/run/secrets/tokens/tollway-token"
    assert cmd[cmd.index("--port") + 1] == "15001"
    assert cmd[cmd.index("--capture-port") + 1] == "15006"
    assert cmd[cmd.index("--status-port") + 1] == "15020"
    assert cmd[cmd.index("--address") + 1] == "$(INSTANCE_IP)"
    assert proxy["securityContext"]["runAsUser"] == 1337
    assert proxy["securityContext"]["runAsGroup"] == 1337
    assert {p["containerPort"] for p in proxy["ports"]} == {15001, 15006, 15020, 15090}
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/healthz/ready", "port": 15020,
                                                  "scheme": "HTTP"}
    assert proxy["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"}}
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in proxy["env"]}
    assert env == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace",
                   "INSTANCE_IP": "status.podIP", "SERVICE_ACCOUNT": "spec.serviceAccountName"}
    [mount] = proxy["volumeMounts"]
    [volume] = spec["volumes"]
    assert volume["name"] == mount["name"] and mount["mountPath"] == "/var/run/secrets/tokens"
    token = volume["projected"]["sources"][0]["serviceAccountToken"]
    assert token["audience"] == "tollway" and token["path"] == "tollway-token"
    # never twice
    assert inject.decision(patched, "shop")[0] is False


def test_the_patch_appends_to_what_the_pod_already_has() -> None:
    pod = _pod(annotations={"team": "shop"},
               initContainers=[{"name": "migrate", "command": ["true"]}],
               volumes=[{"name": "data", "emptyDir": {}}])
    ops = inject.patch(pod, SETTINGS)
    assert {op["path"] for op in ops} == {
        "/spec/initContainers/-", "/spec/containers/-", "/spec/volumes/-",
        "/metadata/annotations/sidecar.istio.io~1status",
        "/metadata/annotations/prometheus.io~1scrape", "/metadata/annotations/prometheus.io~1port",
        "/metadata/annotations/prometheus.io~1path"}
    patched = _apply(pod, ops)
    assert [c["name"] for c in patched["spec"]["initContainers"]] == ["migrate", "tollway-init"]
    assert [v["name"] for v in patched["spec"]["volumes"]] == ["data", "tollway-token"]
    assert patched["metadata"]["annotations"]["team"] == "shop"
    status = json.loads(patched["metadata"]["annotations"][inject.STATUS_KEY])
    assert status["containers"] == ["tollway-proxy"]
    # Istio's scrape annotations point Prometheus at the status port
    assert {k: v for k, v in patched["metadata"]["annotations"].items()
            if k.startswith("prometheus.io/")} == {
        "prometheus.io/scrape": "true", "prometheus.io/port": "15020",
        "prometheus.io/path": "/stats/prometheus"}


def test_the_pods_own_scrape_annotations_are_kept() -> None:
    pod = _pod(annotations={"prometheus.io/port": "9100", "prometheus.io/scrape": "true"})
    patched = _apply(pod, inject.patch(pod, SETTINGS))
    annotations = patched["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "9100"
    assert annotations["prometheus.io/path"] == "/stats/prometheus"


def test_a_malformed_capture_annotation_is_refused_naming_it() -> None:
    pod = _pod(annotations={A + "excludeOutboundIPRanges": "10.0.0.300/8"})
    with pytest.raises(inject.InjectError) as err:
        inject.patch(pod, SETTINGS)
    assert f"annotation {A}excludeOutboundIPRanges" in str(err.value)


def _review(pod: dict[str, Any], operation: str = "CREATE") -> dict[str, Any]:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "abc-123", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                        "namespace": "shop", "operation": operation, "object": pod}}


def test_admit_returns_the_patch_base64_as_jsonpatch() -> None:
    pod = _pod()
    out = injectweb.admit(_review(pod), SETTINGS)
    assert out["apiVersion"] == "admission.k8s.io/v1" and out["kind"] == "AdmissionReview"
    resp = out["response"]
    assert resp["uid"] == "abc-123" and resp["allowed"] is True
    assert resp["patchType"] == "JSONPatch"
    assert json.loads(base64.b64decode(resp["patch"])) == inject.patch(pod, SETTINGS)


@pytest.mark.parametrize("review", [
    _review(_pod(labels={inject.INJECT_KEY: "false"})),
    _review(_pod(), operation="UPDATE"),
    _review(_pod(hostNetwork=True)),
])
def test_admit_allows_unchanged_what_is_not_injected(review: dict[str, Any]) -> None:
    resp = injectweb.admit(review, SETTINGS)["response"]
    assert resp == {"uid": "abc-123", "allowed": True}


def test_admit_refuses_a_pod_with_a_bad_annotation() -> None:
    resp = injectweb.admit(_review(_pod(annotations={A + "excludeInboundPorts": "ssh"})),
                           SETTINGS)["response"]
    assert resp["allowed"] is False and "patch" not in resp
    assert f"{A}excludeInboundPorts" in resp["status"]["message"]


def test_inject_endpoint_over_https(tmp_path: Path) -> None:
    ca, cert, key = webhook.serving_credentials(["127.0.0.1"])
    (tmp_path / "tls.crt").write_text(cert)
    (tmp_path / "tls.key").write_text(key)
    (tmp_path / "ca.crt").write_text(ca)

    async def main() -> None:
        runner, port = await webhook.serve_webhook(
            "127.0.0.1", 0, tmp_path / "tls.crt", tmp_path / "tls.key", SETTINGS)
        try:
            ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
            async with httpx.AsyncClient(verify=ctx, timeout=30) as client:
                base = f"https://127.0.0.1:{port}"
                for path in ("/inject", "/inject/cluster/c1/net/n1"):
                    r = await client.post(base + path, json=_review(_pod()))
                    assert r.status_code == 200
                    assert r.json()["response"]["patchType"] == "JSONPatch"
                r = await client.post(base + "/inject", content=b"{",
                                      headers={"content-type": "application/json"})
                assert r.status_code == 400
                r = await client.post(base + "/inject", content=b"x",
                                      headers={"content-type": "text/plain"})
                assert r.status_code == 415
        finally:
            await runner.cleanup()

    asyncio.run(main())


PROBED = {"name": "app", "image": "web:1", "command": ["tollway", "demo-app"],
          "ports": [{"name": "http", "containerPort": 8080}],
          "livenessProbe": {"httpGet": {"path": "/live", "port": "http",
                                        "httpHeaders": [{"name": "X-Probe", "value": "1"}]},
                            "periodSeconds": 5, "timeoutSeconds": 4},
          "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080, "scheme": "HTTP"},
                             "initialDelaySeconds": 2},
          "startupProbe": {"httpGet": {"path": "/start", "port": 8080}},
          }


def test_http_probes_go_to_the_status_port_and_the_originals_to_the_sidecar() -> None:
    pod = _pod(containers=[copy.deepcopy(PROBED),
                           {"name": "worker", "image": "w:1", "command": ["w"],
                            "livenessProbe": {"exec": {"command": ["true"]}},
                            "readinessProbe": {"tcpSocket": {"port": 9000}}}])
    patched = _apply(pod, inject.patch(pod, SETTINGS))
    app, worker, proxy = patched["spec"]["containers"]
    assert app["livenessProbe"] == {"httpGet": {"path": "/app-health/app/livez", "port": 15020,
                                                "scheme": "HTTP"},
                                    "periodSeconds": 5, "timeoutSeconds": 4}
    assert app["readinessProbe"]["httpGet"]["path"] == "/app-health/app/readyz"
    assert app["readinessProbe"]["initialDelaySeconds"] == 2  # timing kept
    assert app["startupProbe"]["httpGet"]["path"] == "/app-health/app/startupz"
    assert worker == pod["spec"]["containers"][1]  # exec and tcpSocket stay as written
    env = {e["name"]: e.get("value") for e in proxy["env"]}
    probers = json.loads(env["ISTIO_KUBE_APP_PROBERS"])
    assert probers == {
        "/app-health/app/livez": {"httpGet": {"path": "/live", "port": 8080,  # name resolved
                                              "httpHeaders": [{"name": "X-Probe",
                                                               "value": "1"}]},
                                  "timeoutSeconds": 4},
        "/app-health/app/readyz": {"httpGet": {"path": "/ready", "port": 8080,
                                               "scheme": "HTTP"}, "timeoutSeconds": 1},
        "/app-health/app/startupz": {"httpGet": {"path": "/start", "port": 8080},
                                     "timeoutSeconds": 1},
    }
    from tollway.proxy import status

    parsed = status.parse_probers(env["ISTIO_KUBE_APP_PROBERS"])  # what the sidecar reads
    assert parsed["/app-health/app/livez"] == status.Prober(
        port=8080, path="/live", headers=(("X-Probe", "1"),), timeout=4.0)


@pytest.mark.parametrize(("annotation", "default", "rewritten"), [
    (None, True, True), ("false", True, False), ("true", False, True), (None, False, False),
])
def test_rewrite_app_http_probers_annotation_over_the_mesh_default(
        annotation: str | None, default: bool, rewritten: bool) -> None:
    annotations = {inject.REWRITE_KEY: annotation} if annotation is not None else None
    pod = _pod(annotations=annotations, containers=[copy.deepcopy(PROBED)])
    settings = inject.Settings(rewrite_probes=default)
    patched = _apply(pod, inject.patch(pod, settings))
    app, proxy = patched["spec"]["containers"]
    assert (app == PROBED) is not rewritten
    assert any(e["name"] == "ISTIO_KUBE_APP_PROBERS" for e in proxy["env"]) is rewritten


def test_settings_from_the_charts_injector_config() -> None:
    settings = inject.from_config(
        {"image": "registry.example/tollway:1.2", "imagePullPolicy": "Always",
         "command": ["/usr/local/bin/tollway"],
         "resources": {"requests": {"cpu": "50m"}, "limits": {"memory": "300Mi"}},
         "initResources": {"requests": {"cpu": "5m"}}, "rewriteAppHTTPProbers": False},
        "config.yaml", "mesh-system")
    patched = _apply(_pod(), inject.patch(_pod(), settings))
    init, proxy = patched["spec"]["initContainers"][0], patched["spec"]["containers"][1]
    assert proxy["image"] == init["image"] == "registry.example/tollway:1.2"
    assert proxy["imagePullPolicy"] == "Always"
    assert proxy["command"][:2] == ["/usr/local/bin/tollway", "proxy"]
    assert init["command"][:2] == ["/usr/local/bin/tollway", "iptables"]
    assert proxy["resources"] == {"requests": {"cpu": "50m"}, "limits": {"memory": "300Mi"}}
    assert init["resources"] == {"requests": {"cpu": "5m"}}
    assert settings.rewrite_probes is False
    assert "mesh-system" in settings.control_plane_url
    assert proxy["command"][-2:] == ["--drain-seconds", "5"]  # Istio's default drain
    drained = inject.from_config({"terminationDrainSeconds": 12.5}, "config.yaml", "m")
    proxy = _apply(_pod(), inject.patch(_pod(), drained))["spec"]["containers"][1]
    assert proxy["command"][-2:] == ["--drain-seconds", "12.5"]


@pytest.mark.parametrize(("data", "named"), [
    ({"image": ""}, "image"), ({"command": "tollway"}, "command"),
    ({"resources": {"request": {}}}, "resources"), ({"imagePullPolicy": "Sometimes"},
                                                    "imagePullPolicy"),
    ({"rewriteAppHTTPProbers": "no"}, "rewriteAppHTTPProbers"), ({"imag": "x"}, "'imag'"),
    ({"terminationDrainSeconds": "5s"}, "terminationDrainSeconds"),
    ({"terminationDrainSeconds": -1}, "terminationDrainSeconds"),
    (["image"], "mapping"),
])
def test_a_bad_injector_config_is_named(data: Any, named: str) -> None:
    with pytest.raises(inject.InjectError) as err:
        inject.from_config(data, "/etc/tollway/injector/config.yaml", "tollway-system")
    assert str(err.value).startswith("/etc/tollway/injector/config.yaml: ")
    assert named in str(err.value)
