"""CRDs generated from the models: current in the chart, structural, served by a real API server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tollway.config import crds
from tollway.config.kinds import ALL_KINDS

ROOT = Path(__file__).resolve().parents[2]
CHART_CRDS = ROOT / "charts" / "tollway" / "crds"
SEEDS = ROOT / "tests" / "data" / "seed"


def test_chart_crds_are_current() -> None:
    proc = subprocess.run([sys.executable, "-m", "tollway.config.crds", "--check", str(CHART_CRDS)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


def test_every_accepted_kind_of_our_groups_has_a_crd() -> None:
    have = {(d["spec"]["group"], d["spec"]["names"]["kind"]) for d in crds.all_crds()}
    want = {(s.group, s.kind) for s in ALL_KINDS if s.group in crds.GROUPS}
    assert have == want
    assert ("gateway.networking.k8s.io", "Gateway") not in have  # the Gateway API ships its own


def _walk(node: Mapping[str, Any], path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), Mapping):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), Mapping):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("doc", crds.all_crds(), ids=lambda d: d["metadata"]["name"])
def test_schemas_are_structural(doc: dict[str, Any]) -> None:
    """Kubernetes' structural rules: every node typed (or int-or-string / preserved), no refs,
    no typed anyOf, no properties beside additionalProperties, no defaults we did not mean."""
    versions = doc["spec"]["versions"]
    assert sum(v["storage"] for v in versions) == 1
    for version in versions:
        for path, node in _walk(version["schema"]["openAPIV3Schema"], "$"):
            assert "$ref" not in node and "anyOf" not in node and "default" not in node, path
            assert ("type" in node or node.get("x-kubernetes-int-or-string")
                    or node.get("x-kubernetes-preserve-unknown-fields")), path
            assert not ("properties" in node and "additionalProperties" in node), path
            assert None not in node.get("enum", []), path


def test_union_and_optional_shapes() -> None:
    schema = {"$defs": {"P": {"type": "object", "properties": {"x": {"type": "integer"}},
                              "additionalProperties": False}},
              "type": "object",
              "properties": {
                  "opt": {"anyOf": [{"$ref": "#/$defs/P"}, {"type": "null"}]},
                  "ios": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
                  "blob": {"type": "object", "additionalProperties": True},
                  "tags": {"type": "object", "additionalProperties": {"type": "string"}},
                  "pod": {"$ref": "#/$defs/PodTemplate"},
                  "mode": {"anyOf": [{"enum": ["A", "B"], "type": "string"}, {"type": "null"}]},
              }}
    out = crds.structural(schema)["properties"]
    assert out["opt"] == {"type": "object", "properties": {"x": {"type": "integer"}}}
    assert out["ios"] == {"x-kubernetes-int-or-string": True}
    assert out["blob"] == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    assert out["tags"] == {"type": "object", "additionalProperties": {"type": "string"}}
    assert out["pod"] == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    assert out["mode"] == {"type": "string", "enum": ["A", "B"]}


def _seed_docs_of_our_groups() -> list[dict[str, Any]]:
    yaml = YAML(typ="safe")
    docs = []
    for path in sorted(SEEDS.glob("*.yaml")):
        for doc in yaml.load_all(path.read_text()):
            if doc and doc.get("apiVersion", "").split("/")[0] in crds.GROUPS:
                docs.append(doc)
    return docs


@pytest.mark.cluster
@pytest.mark.xdist_group("cluster")
@pytest.mark.timeout(1200)
def test_the_api_server_takes_the_crds_and_every_seed(dev_cluster: Any, tmp_path: Path) -> None:
    """A real kube-apiserver accepts the CRDs as structural, establishes them, and keeps
    every seed manifest with strict field validation (no field pruned or unknown)."""
    kubectl = dev_cluster.kubectl
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART_CRDS))
    kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "-l",
            "app.kubernetes.io/part-of=tollway")
    docs = _seed_docs_of_our_groups()
    assert len(docs) >= 15
    yaml = YAML()
    for i, doc in enumerate(docs):
        doc.setdefault("metadata", {})["namespace"] = "default"
        if doc["kind"] == "ClusterAnalysisTemplate":
            doc["metadata"].pop("namespace")
        f = tmp_path / f"doc{i}.yaml"
        with f.open("w") as out:
            yaml.dump(doc, out)
        proc = kubectl("apply", "--dry-run=server", "--validate=strict", "-f", str(f),
                       check=False)
        assert proc.returncode == 0, f"{doc['kind']}/{doc['metadata']['name']}: {proc.stderr}"
        assert "unknown field" not in proc.stderr, proc.stderr
    # And the schema refuses what it should: a weight that is not a number.
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: bad, "
        "namespace: default}\nspec:\n  hosts: [web]\n  http:\n  - route:\n    - destination: "
        "{host: web}\n      weight: ninety\n")
    proc = kubectl("apply", "--dry-run=server", "-f", str(bad), check=False)
    assert proc.returncode != 0 and "spec.http[0].route[0].weight" in proc.stderr, proc.stderr
