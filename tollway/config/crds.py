"""CustomResourceDefinitions for every kind Tollway accepts, generated from its models.

One source of truth: the pydantic models that `tollway validate` checks are turned into
`apiextensions.k8s.io/v1` structural schemas here, so a field Tollway reads is a field the
API server keeps. Pydantic's JSON Schema is not structural as Kubernetes defines it
(`$ref`, `anyOf` with types, `null` branches, `additionalProperties: false` beside
`properties`), so the conversion below inlines references, folds `X | None` into `X`,
turns `int | str` into `x-kubernetes-int-or-string`, and keeps free-form parts (pod
templates, `Blob` fields, `Any`) with `x-kubernetes-preserve-unknown-fields`, so the API
server never prunes what a user wrote there. Defaults are dropped: defaulting is Tollway's
job (as it is Istio's), not the API server's. Regex `pattern`s are dropped too: ours are
Python/RE2, the API server's are ECMA; the validation webhook applies the full models.

Groups: Istio (networking, security, telemetry, extensions), Argo Rollouts and Flagger.
Built-in Kubernetes kinds and the Gateway API are not ours to define (the Gateway API
ships its own CRDs). Generate with `python -m tollway.config.crds --write charts/tollway/crds`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tollway.config.kinds import ALL_KINDS, KindSpec

# Groups whose CRDs Tollway installs, and the storage version of each (the oldest version
# upstream still serves, as upstream stores it, so existing objects need no migration).
GROUPS: dict[str, str] = {
    "networking.istio.io": "v1alpha3",
    "security.istio.io": "v1beta1",
    "telemetry.istio.io": "v1alpha1",
    "extensions.istio.io": "v1alpha1",
    "argoproj.io": "v1alpha1",
    "flagger.app": "v1beta1",
}

# Upstream's plural, short names, categories, scope: what `kubectl get vs` users type.
_NAMES: dict[str, tuple[str, tuple[str, ...]]] = {
    "VirtualService": ("virtualservices", ("vs",)),
    "DestinationRule": ("destinationrules", ("dr",)),
    "Gateway": ("gateways", ("gw",)),
    "ServiceEntry": ("serviceentries", ("se",)),
    "WorkloadEntry": ("workloadentries", ("we",)),
    "WorkloadGroup": ("workloadgroups", ("wg",)),
    "Sidecar": ("sidecars", ()),
    "EnvoyFilter": ("envoyfilters", ()),
    "ProxyConfig": ("proxyconfigs", ()),
    "PeerAuthentication": ("peerauthentications", ("pa",)),
    "AuthorizationPolicy": ("authorizationpolicies", ("ap",)),
    "RequestAuthentication": ("requestauthentications", ("ra",)),
    "Telemetry": ("telemetries", ("telemetry",)),
    "WasmPlugin": ("wasmplugins", ()),
    "TrafficExtension": ("trafficextensions", ()),
    "Rollout": ("rollouts", ("ro",)),
    "AnalysisTemplate": ("analysistemplates", ()),
    "ClusterAnalysisTemplate": ("clusteranalysistemplates", ()),
    "AnalysisRun": ("analysisruns", ()),
    "Experiment": ("experiments", ("exp",)),
    "Canary": ("canaries", ("canary",)),
    "MetricTemplate": ("metrictemplates", ()),
    "AlertProvider": ("alertproviders", ()),
}
_CLUSTER_SCOPED = {"ClusterAnalysisTemplate"}

# Model definitions kept free-form: Kubernetes' own pod template (the API server and the
# pod's own admission check it when the pod is made) and our `Blob` passthroughs.
_FREE_FORM_DEFS = {"PodTemplate", "PodTemplateSpec", "PodSpec"}

_PRESERVE: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
_ANY: dict[str, Any] = {"x-kubernetes-preserve-unknown-fields": True}
_KEEP = ("type", "enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
         "minLength", "maxLength", "minItems", "maxItems", "format", "description")

# Status and printer columns as upstream shows them (Argo's and Flagger's CRDs).
_STATUS_KINDS = {"Rollout", "AnalysisRun", "Canary", "Experiment"}
_COLUMNS: dict[str, list[dict[str, str]]] = {
    "Rollout": [
        {"name": "Desired", "type": "integer", "jsonPath": ".spec.replicas"},
        {"name": "Current", "type": "integer", "jsonPath": ".status.replicas"},
        {"name": "Up-to-date", "type": "integer", "jsonPath": ".status.updatedReplicas"},
        {"name": "Available", "type": "integer", "jsonPath": ".status.availableReplicas"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ],
    "AnalysisRun": [
        {"name": "Status", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ],
    "Canary": [
        {"name": "Status", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Weight", "type": "string", "jsonPath": ".status.canaryWeight"},
        {"name": "LastTransitionTime", "type": "string",
         "jsonPath": ".status.lastTransitionTime"},
    ],
}


class SchemaError(ValueError):
    """A model whose JSON Schema cannot be made structural (a bug in a model, not input)."""


def structural(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Pydantic's JSON Schema of a model -> a structural `openAPIV3Schema` node."""
    defs: Mapping[str, Any] = schema.get("$defs", {})
    return _node(schema, defs, ())


Defs = Mapping[str, Any]


def _node(node: Mapping[str, Any], defs: Defs, seen: tuple[str, ...]) -> dict[str, Any]:
    if "$ref" in node:
        name = str(node["$ref"]).rsplit("/", 1)[-1]
        if name in _FREE_FORM_DEFS or name in seen:  # free-form, or recursive: keep as is
            return dict(_PRESERVE)
        return _node(defs[name], defs, (*seen, name))
    for key in ("anyOf", "oneOf"):
        if key in node:
            return _union(node[key], defs, seen)
    if "allOf" in node and len(node["allOf"]) == 1:
        return _node(node["allOf"][0], defs, seen)
    if "const" in node:
        return {"type": _json_type(node["const"]), "enum": [node["const"]]}
    kind = node.get("type")
    if kind is None:
        return dict(_ANY)
    if kind == "object":
        return _object(node, defs, seen)
    out: dict[str, Any] = {k: node[k] for k in _KEEP if k in node}
    if kind == "array":
        items = node.get("items")
        out["items"] = _node(items, defs, seen) if isinstance(items, Mapping) else dict(_ANY)
    if "enum" in out:
        out["enum"] = [v for v in out["enum"] if v is not None]
    return out


def _object(node: Mapping[str, Any], defs: Defs, seen: tuple[str, ...]) -> dict[str, Any]:
    props: Mapping[str, Any] = node.get("properties", {})
    extra = node.get("additionalProperties")
    out: dict[str, Any] = {"type": "object"}
    if props:
        out["properties"] = {k: _node(v, defs, seen) for k, v in props.items()}
        required = [r for r in node.get("required", ()) if r in props]
        if required:
            out["required"] = required
    elif isinstance(extra, Mapping):  # dict[str, X]
        out["additionalProperties"] = _node(extra, defs, seen)
    else:  # dict[str, Any] / a Blob: free-form
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def _union(branches: Iterable[Mapping[str, Any]], defs: Mapping[str, Any],
           seen: tuple[str, ...]) -> dict[str, Any]:
    real = [b for b in branches if b.get("type") != "null"]
    if len(real) == 1:
        return _node(real[0], defs, seen)
    kinds = {b.get("type") for b in real}
    if kinds <= {"integer", "string"} and kinds == {"integer", "string"}:
        return {"x-kubernetes-int-or-string": True}
    if kinds <= {"integer", "number"}:
        return {"type": "number"}
    # Anything wider (a string or an object, say): the models check it, the server keeps it.
    return dict(_ANY)


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string"


def crd(spec: KindSpec) -> dict[str, Any]:
    """The CRD of one kind, every version Tollway accepts served with the same schema."""
    plural, short = _NAMES[spec.kind]
    body = structural(spec.model.model_json_schema(by_alias=True))
    top: dict[str, Any] = {"type": "object", "properties": {}}
    if spec.top_fields == ("spec",):
        top["properties"]["spec"] = body
        if spec.spec_required:
            top["required"] = ["spec"]
    else:
        for name in spec.top_fields:
            top["properties"][name] = body.get("properties", {}).get(name, dict(_ANY))
    top["properties"]["status"] = dict(_PRESERVE)
    storage = GROUPS[spec.group]
    versions = []
    for version in spec.versions:
        entry: dict[str, Any] = {
            "name": version, "served": True, "storage": version == storage,
            "schema": {"openAPIV3Schema": top},
        }
        if spec.kind in _STATUS_KINDS:
            entry["subresources"] = {"status": {}}
            if spec.kind == "Rollout":
                entry["subresources"]["scale"] = {
                    "specReplicasPath": ".spec.replicas",
                    "statusReplicasPath": ".status.HPAReplicas",
                    "labelSelectorPath": ".status.selector",
                }
        if spec.kind in _COLUMNS:
            entry["additionalPrinterColumns"] = _COLUMNS[spec.kind]
        versions.append(entry)
    if not any(v["storage"] for v in versions):
        versions[0]["storage"] = True
    names: dict[str, Any] = {"kind": spec.kind, "listKind": f"{spec.kind}List",
                             "plural": plural, "singular": spec.kind.lower()}
    if short:
        names["shortNames"] = list(short)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{spec.group}",
                     "labels": {"app.kubernetes.io/part-of": "tollway"}},
        "spec": {
            "group": spec.group,
            "names": names,
            "scope": "Cluster" if spec.kind in _CLUSTER_SCOPED else "Namespaced",
            "versions": versions,
        },
    }


def all_crds() -> list[dict[str, Any]]:
    """Every CRD Tollway installs, in a stable order (group, kind)."""
    specs = sorted((s for s in ALL_KINDS if s.group in GROUPS), key=lambda s: (s.group, s.kind))
    return [crd(s) for s in specs]


def render(doc: Mapping[str, Any]) -> str:
    """One CRD as YAML, with a header saying where it comes from."""
    from io import StringIO

    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.default_flow_style = False
    yaml.width = 4096
    out = StringIO()
    out.write("# Generated from Tollway's models by `python -m tollway.config.crds --write DIR`;"
              " do not edit.\n")
    yaml.dump(_plain(doc), out)
    return out.getvalue()


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def files() -> dict[str, str]:
    """File name -> text, one file per CRD (`<plural>.<group>.yaml`)."""
    return {f"{d['metadata']['name']}.yaml": render(d) for d in all_crds()}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("--write", "--check"):
        print("usage: python -m tollway.config.crds --write|--check DIR", file=sys.stderr)
        return 2
    folder = Path(argv[1])
    want = files()
    if argv[0] == "--check":
        have = {p.name: p.read_text() for p in folder.glob("*.yaml")} if folder.is_dir() else {}
        if have != want:
            print(f"{folder}: CRDs are out of date; run python -m tollway.config.crds "
                  f"--write {folder}", file=sys.stderr)
            return 1
        return 0
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.yaml"):
        if old.name not in want:
            old.unlink()
    for name, text in want.items():
        (folder / name).write_text(text)
    print(f"wrote {len(want)} CRDs to {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
