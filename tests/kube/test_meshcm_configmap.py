"""The `istio` ConfigMap's `mesh` key: parsed with `--mesh-config`'s rules, applied when its
text changes, and a broken one keeps the mesh config in force (one sentence said)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from tollway.config.meshconfig import MeshConfig
from tollway.control.compiler import MeshCompiler
from tollway.kube import meshcm

GOOD = {"data": {"mesh": "accessLogFile: /dev/stdout\ndefaultConfig:\n  tracing:\n"
                         "    sampling: 25\ntrustDomain: cluster.local\n"}}


def test_parse_reads_the_mesh_key_and_warns_about_unapplied_keys() -> None:
    r = meshcm.parse_configmap(GOOD, "tollway-system")
    assert r.config is not None and r.config.access_log_file == "/dev/stdout"
    assert r.config.default_config.tracing is not None
    assert r.config.default_config.tracing.sampling == 25
    (msg,) = r.messages
    assert msg.startswith("warning: ConfigMap tollway-system/istio key mesh: trustDomain is "
                          "not applied by Tollway (it applies ")
    assert msg.endswith("); ignored")


def test_missing_configmap_or_key_is_istios_defaults() -> None:
    assert meshcm.parse_configmap(None, "ns").config == MeshConfig()
    assert meshcm.parse_configmap({"data": {}}, "ns").config == MeshConfig()


def test_broken_mesh_keeps_what_is_in_force_with_one_sentence() -> None:
    bad = meshcm.parse_configmap({"data": {"mesh": "accessLogEncoding: XML\n"}}, "ns")
    assert bad.config is None
    (msg,) = bad.messages
    assert msg.startswith("ConfigMap ns/istio key mesh: accessLogEncoding is 'XML'")
    assert msg.endswith("the mesh config in force stays") and "\n" not in msg
    assert meshcm.parse_configmap({"data": {"mesh": "a: [\n"}}, "ns").config is None


class _Answers:
    """The API server's answers to GET configmaps/istio, one per call (then the last)."""

    def __init__(self, *answers: tuple[int, Any]) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def request(self, method: str, path: str, *, body: Any = None,
                      content_type: str = "application/json",
                      params: Mapping[str, str] | None = None) -> tuple[int, Any]:
        assert (method, path) == ("GET", "/api/v1/namespaces/ns/configmaps/istio")
        self.calls += 1
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def test_follow_applies_on_change_only_and_keeps_config_on_error() -> None:
    changed = {"data": {"mesh": "accessLogFile: /tmp/a.log\n"}}
    api = _Answers((404, None), (200, GOOD), (200, GOOD), (200, {"data": {"mesh": "x: ["}}),
                   (200, changed))
    applied: list[MeshConfig] = []
    said: list[str] = []

    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(meshcm.follow(api, "ns", applied.append, said.append,
                                                 interval=0.01, stop=stop))
        while api.calls < 6:
            await asyncio.sleep(0.01)
        stop.set()
        await task

    asyncio.run(go())
    assert [c.access_log_file for c in applied] == ["", "/dev/stdout", "/tmp/a.log"]
    assert any("not YAML" in s for s in said)


def test_compiler_switches_mesh_config() -> None:
    c = MeshCompiler()
    mc = MeshConfig.model_validate({"pathNormalization": {"normalization": "NONE"}})
    c.use_mesh_config(mc)
    assert c.mesh_config is mc and c.mesh.path_normalization == "NONE"
    c.use_mesh_config(None)
    assert c.mesh.path_normalization == "BASE"
