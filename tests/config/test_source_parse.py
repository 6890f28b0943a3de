"""YAML text -> documents: line numbers, anchors, limits, and hostile input."""

from __future__ import annotations

import time
from pathlib import Path

from tollway.config.load import load_paths, load_text
from tollway.config.source import MAX_BYTES, parse_text

SERVICE = (
    "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  selector: {{app: x}}\n"
)


def test_parse_records_the_line_of_every_key_and_item() -> None:
    docs, findings = parse_text("a:\n  b:\n  - x\n  - y: 1\n---\nc: 2\n", "f.yaml")
    assert findings == []
    assert [d.index for d in docs] == [0, 1]
    first = docs[0]
    assert first.lines[("a",)] == 1 and first.lines[("a", "b")] == 2
    assert first.lines[("a", "b", 1)] == 4 and first.lines[("a", "b", 1, "y")] == 4
    assert first.line_of(("a", "b", 1, "y", "missing")) == 4
    assert docs[1].lines[("c",)] == 6


def test_parse_gives_plain_python_types() -> None:
    docs, _ = parse_text("a: 1\nb: 1.5\nc: true\nd: null\ne: '1'\nf: 2026-01-01\ng: [x]\n")
    data = docs[0].data
    assert data == {"a": 1, "b": 1.5, "c": True, "d": None, "e": "1", "f": "2026-01-01",
                    "g": ["x"]}
    assert type(data) is dict and type(data["g"]) is list


def test_parse_expands_small_anchors_and_merge_keys() -> None:
    docs, findings = parse_text("base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  y: 3\nref: *b\n")
    assert findings == []
    assert docs[0].data["use"] == {"x": 1, "y": 3}
    assert docs[0].data["ref"] == {"x": 1, "y": 2}


def test_parse_skips_empty_documents_but_keeps_indices() -> None:
    docs, findings = parse_text("---\n---\na: 1\n")
    assert findings == [] and len(docs) == 1


def test_load_json_file_works_like_yaml(tmp_path: Path) -> None:
    path = tmp_path / "svc.json"
    path.write_text('{"apiVersion": "v1", "kind": "Service",\n "metadata": {"name": "a"},\n'
                    ' "spec": {"ports": [{"port": "80"}]}}\n')
    result = load_paths([path])
    (f,) = result.findings
    assert (f.line, f.path, f.kind) == (3, "spec.ports[0].port", "Service")


def test_load_five_megabyte_file_is_refused_fast(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    chunk = "\n---\n".join(SERVICE.format(name=f"s{i}") for i in range(100)) + "\n---\n"
    path.write_text(chunk * (5 * 1024 * 1024 // len(chunk) + 1))
    assert path.stat().st_size > 5 * 1024 * 1024
    start = time.process_time()
    result = load_paths([path])
    assert time.process_time() - start < 5  # CPU budget guard, not a latency assertion
    (f,) = result.findings
    assert f.is_error and "MB" in f.message and "split it" in f.message


def test_load_text_over_the_limit_is_refused() -> None:
    result = load_text("a: " + "x" * (MAX_BYTES + 1) + "\n")
    assert not result.ok and "MB" in result.findings[0].message


def test_load_many_small_lines_is_refused_before_parsing() -> None:
    result = load_text("x: 1\n" * 100_000)
    assert not result.ok and "lines/items" in result.findings[0].message


def test_load_folder_reads_manifests_sorted_and_not_recursively(tmp_path: Path) -> None:
    (tmp_path / "b.yml").write_text(SERVICE.format(name="b"))
    (tmp_path / "a.yaml").write_text(SERVICE.format(name="a"))
    (tmp_path / "notes.txt").write_text("not yaml: [")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yaml").write_text(SERVICE.format(name="c"))
    result = load_paths([tmp_path])
    assert [Path(f).name for f in result.files] == ["a.yaml", "b.yml"]
    assert sorted(r.name for r in result.resources) == ["a", "b"]
    assert result.ok and result.findings == ()


def test_load_later_files_replace_equal_keys(tmp_path: Path) -> None:
    (tmp_path / "1.yaml").write_text(SERVICE.format(name="a"))
    (tmp_path / "2.yaml").write_text(SERVICE.format(name="a").replace("app: x", "app: y"))
    result = load_paths([tmp_path])
    (svc,) = result.resources
    assert svc.spec["selector"] == {"app": "y"} and svc.source.file.endswith("2.yaml")


def test_load_missing_and_binary_files_are_findings(tmp_path: Path) -> None:
    binary = tmp_path / "x.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    result = load_paths([tmp_path / "nope.yaml", binary])
    messages = [f.message for f in result.findings]
    assert "no such file or folder" in messages[0]
    assert "not UTF-8" in messages[1]


def test_resource_defaults_namespace_and_keeps_secret_fields() -> None:
    text = ("apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  labels: {a: b}\n"
            "type: Opaque\nstringData:\n  password: hunter2\n")
    result = load_text(text)
    (secret,) = result.resources
    assert secret.namespace == "default" and secret.labels == {"a": "b"}
    assert secret.spec == {"type": "Opaque", "stringData": {"password": "hunter2"}}
    assert secret.line_of(("stringData", "password")) == 8


def test_load_result_raise_if_errors_carries_the_findings() -> None:
    import pytest

    from tollway.config.findings import ConfigError

    load_text(SERVICE.format(name="ok")).raise_if_errors()
    bad = load_text("kind: Service\n")
    with pytest.raises(ConfigError) as info:
        bad.raise_if_errors()
    assert info.value.findings == bad.errors
    assert "apiVersion is required" in str(info.value)


def test_load_kubectl_list_output_yields_its_items_with_their_lines() -> None:
    text = ("apiVersion: v1\nkind: List\nitems:\n"
            "- apiVersion: v1\n  kind: Service\n  metadata: {name: a}\n  spec: {}\n"
            "- apiVersion: v1\n  kind: Service\n  metadata: {name: b}\n"
            "  spec:\n    ports: [{port: 0}]\n")
    result = load_text(text)
    assert [r.name for r in result.resources] == ["a"]
    (f,) = result.findings
    assert (f.name, f.path, f.line) == ("b", "spec.ports[0].port", 12)
