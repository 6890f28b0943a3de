"""MeshConfig files: Istio's shape read, applied keys checked, the rest warned about."""

from __future__ import annotations

from pathlib import Path

import pytest

from tollway.config.meshconfig import MeshConfigError, load_mesh_config, parse_mesh_config
from tollway.control.translate.mesh import mesh_settings
from tollway.snapshot import types


@pytest.mark.parametrize("mode", ["NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"])
def test_each_mode_reaches_the_snapshot(tmp_path: Path, mode: str) -> None:
    f = tmp_path / "mesh.yaml"
    f.write_text(f"pathNormalization:\n  normalization: {mode}\n")
    loaded = load_mesh_config(f)
    assert loaded.warnings == ()
    assert mesh_settings(loaded.config) == types.Mesh(path_normalization=mode)  # type: ignore[arg-type]


def test_defaults_are_istios() -> None:
    assert mesh_settings(parse_mesh_config(None, "m").config) == types.Mesh()
    assert mesh_settings(parse_mesh_config({"pathNormalization": {}}, "m").config) == types.Mesh()
    assert types.Mesh().path_normalization == "BASE"


def test_other_keys_are_ignored_with_one_warning_each() -> None:
    loaded = parse_mesh_config({"trustDomain": "example.org", "enableAutoMtls": True,
                                "pathNormalization": {"normalization": "NONE"}}, "mesh.yaml")
    assert loaded.config.path_normalization.normalization == "NONE"
    applied = ("accessLogEncoding, accessLogFile, accessLogFormat, defaultConfig, "
               "defaultProviders, enableTracing, extensionProviders, h2UpgradePolicy, "
               "pathNormalization")
    assert loaded.warnings == (
        f"mesh.yaml: trustDomain is not applied by Tollway (it applies {applied}); ignored",
        f"mesh.yaml: enableAutoMtls is not applied by Tollway (it applies {applied}); ignored",
    )


def test_telemetry_keys_are_read_and_unapplied_parts_warned_once_each() -> None:
    loaded = parse_mesh_config({
        "enableTracing": False, "accessLogFile": "/dev/stdout", "accessLogEncoding": "JSON",
        "defaultProviders": {"tracing": ["z"]},
        "defaultConfig": {"tracing": {"sampling": 10, "maxPathTagLength": 99},
                          "concurrency": 2},
        "extensionProviders": [
            {"name": "z", "zipkin": {"service": "zipkin.istio-system", "port": 9411}},
            {"name": "o", "opentelemetry": {"service": "c", "port": 4317}},
            {"name": "a", "envoyExtAuthzHttp": {"service": "x", "port": 1}}],
    }, "m.yaml")
    c = loaded.config
    assert (c.enable_tracing, c.access_log_file, c.access_log_encoding) == (
        False, "/dev/stdout", "JSON")
    assert c.default_providers.tracing == ["z"] and c.default_providers.metrics == ["prometheus"]
    assert c.default_config.tracing is not None and c.default_config.tracing.sampling == 10
    assert [p.name for p in c.extension_providers] == ["z", "o"]
    assert len(loaded.warnings) == 4
    assert "(o) sends OTLP over gRPC" in loaded.warnings[0]
    assert "(a) is of kind envoyExtAuthzHttp" in loaded.warnings[1]
    assert loaded.warnings[2] == (
        "m.yaml: defaultConfig.concurrency is not applied by Tollway; ignored")
    assert "defaultConfig.tracing.maxPathTagLength" in loaded.warnings[3]


@pytest.mark.parametrize(("data", "sentence"), [
    ({"accessLogEncoding": "XML"},
     "m: accessLogEncoding is 'XML'; use one of 'TEXT' or 'JSON'"),
    ({"defaultConfig": {"tracing": {"sampling": 101}}},
     "m: defaultConfig.tracing.sampling: Input should be less than or equal to 100"),
    ({"extensionProviders": [{"name": "z", "zipkin": {"service": "z"}}]},
     "m: extensionProviders[0].zipkin.port: Field required"),
    ({"accessLogEncoding": "JSON", "accessLogFormat": "[%START_TIME%]"},
     "m: accessLogFormat: must be a JSON object of field -> Envoy operator when "
     "accessLogEncoding is JSON"),
    ({"extensionProviders": [{"name": "f", "envoyFileAccessLog": {
        "logFormat": {"labels": {"x": "%BYTES%"}}}}]},
     "m: extensionProviders[0].envoyFileAccessLog.logFormat.labels.x: %BYTES% is not an "
     "operator Tollway writes (it writes BYTES_RECEIVED, BYTES_SENT, "),
])
def test_bad_telemetry_values_are_one_sentence(data: dict[str, object], sentence: str) -> None:
    with pytest.raises(MeshConfigError) as exc:
        parse_mesh_config(data, "m")
    assert str(exc.value).startswith(sentence) and "\n" not in str(exc.value)


def test_formats_the_proxy_writes_are_accepted() -> None:
    ok = parse_mesh_config({"accessLogEncoding": "JSON", "accessLogFormat":
                            '{"code": "%RESPONSE_CODE%", "p": "%REQ(:PATH):40%"}'}, "m")
    assert ok.config.access_log_encoding == "JSON"
    text = parse_mesh_config({"accessLogFormat": "%START_TIME% %%done %ROUTE_NAME%\n"}, "m")
    assert text.config.access_log_format.startswith("%START_TIME%")


def test_an_istio_operator_meshconfig_block_is_read_too() -> None:
    loaded = parse_mesh_config({"meshConfig": {"pathNormalization": {
        "normalization": "MERGE_SLASHES"}, "outboundTrafficPolicy": {"mode": "ALLOW_ANY"}}}, "m")
    assert loaded.config.path_normalization.normalization == "MERGE_SLASHES"
    assert loaded.warnings[0].startswith("m: meshConfig.outboundTrafficPolicy is not applied")


@pytest.mark.parametrize(
    ("data", "sentence"),
    [
        ({"pathNormalization": {"normalization": "LOOSE"}},
         "m.yaml: pathNormalization.normalization is 'LOOSE'; use one of 'NONE', 'BASE', "
         "'MERGE_SLASHES' or 'DECODE_AND_MERGE_SLASHES'"),
        ({"pathNormalization": {"mode": "BASE"}},
         "m.yaml: pathNormalization.mode is not a field here; remove it"),
        ({"pathNormalization": "BASE"},
         "m.yaml: pathNormalization must be a mapping of its fields, not 'BASE'"),
        (["pathNormalization"], "m.yaml: a mesh config is a mapping of MeshConfig keys "
         "(for example `pathNormalization: {normalization: BASE}`)"),
    ],
)
def test_bad_values_are_one_sentence_naming_the_field(data: object, sentence: str) -> None:
    with pytest.raises(MeshConfigError) as err:
        parse_mesh_config(data, "m.yaml")
    assert str(err.value) == sentence


def test_unreadable_and_non_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(MeshConfigError, match="cannot read the mesh config"):
        load_mesh_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("pathNormalization: [\n")
    with pytest.raises(MeshConfigError, match="not YAML"):
        load_mesh_config(bad)
