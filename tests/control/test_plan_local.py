from __future__ import annotations

from typing import Any

from tollway.config.resource import ResourceSet
from tollway.control.local import plan


def _deployment(make_resource: Any, name: str, replicas: int = 2, command: Any = None,
                **container: Any) -> Any:
    c: dict[str, Any] = {"name": "app", "image": "app:1", **container}
    if command is not None:
        c["command"] = command
    return make_resource("Deployment", name, {
        "replicas": replicas,
        "template": {"metadata": {"labels": {"app": "myapp", "version": name}},
                     "spec": {"containers": [c]}},
    })


def test_plan_runs_each_replica_with_command_and_args(make_resource: Any) -> None:
    d = _deployment(make_resource, "v1", 3, ["tollway", "demo-app"], args=["--x"],
                    env=[{"name": "VERSION", "value": "v1"}], ports=[{"containerPort": 8080}])
    p = plan.plan(ResourceSet([d]))
    assert [r.index for r in p.replicas] == [0, 1, 2]
    first = p.replicas[0]
    assert first.command == ("tollway", "demo-app", "--x")
    assert first.env == (("VERSION", "v1"),)
    assert first.container_ports == (8080,)
    assert first.name.startswith("v1-") and first.name.endswith("-0.default")
    assert not p.refusals


def test_plan_refuses_image_without_command_in_one_sentence(make_resource: Any) -> None:
    p = plan.plan(ResourceSet([_deployment(make_resource, "v1")]))
    assert p.replicas == ()
    (refusal,) = p.refusals
    assert 'command: ["tollway", "demo-app"]' in refusal.message
    assert "local mode runs commands" in refusal.message
    assert refusal.message.count(". ") == 0 and refusal.message.endswith(".")


def test_plan_scale_keeps_names_and_template_change_renames(make_resource: Any) -> None:
    three = plan.plan(ResourceSet([_deployment(make_resource, "v1", 3, ["x"])]))
    one = plan.plan(ResourceSet([_deployment(make_resource, "v1", 1, ["x"])]))
    assert one.replicas[0].name == three.replicas[0].name
    start, stop = plan.diff(one.replicas, [r.name for r in three.replicas])
    assert start == [] and stop == sorted(r.name for r in three.replicas[1:])
    changed = plan.plan(ResourceSet([_deployment(make_resource, "v1", 1, ["y"])]))
    assert changed.replicas[0].name != one.replicas[0].name


def test_plan_readiness_probe_path(make_resource: Any) -> None:
    d = _deployment(make_resource, "v1", 1, ["x"],
                    readinessProbe={"httpGet": {"path": "/healthz", "port": 8080}})
    assert plan.plan(ResourceSet([d])).replicas[0].readiness_path == "/healthz"


def test_process_env_sets_port_proxy_and_path(make_resource: Any) -> None:
    d = _deployment(make_resource, "v1", 1, ["x"], env=[{"name": "PORT", "value": "1"}])
    replica = plan.plan(ResourceSet([d])).replicas[0]
    env = plan.process_env(replica, base={"PATH": "/usr/bin", "HTTPS_PROXY": "x"},
                           app_port=4000, outbound_port=5000, exe_dir="/venv/bin")
    assert env["PORT"] == "4000"
    assert env["HTTP_PROXY"] == env["http_proxy"] == "http://127.0.0.1:5000"
    assert env["PATH"].split(":")[0] == "/venv/bin"
    assert "HTTPS_PROXY" not in env


def test_refusal_findings_block_in_store(make_resource: Any) -> None:
    findings = plan.refusal_findings(ResourceSet([_deployment(make_resource, "v1")]))
    assert len(findings) == 1 and findings[0].is_error
