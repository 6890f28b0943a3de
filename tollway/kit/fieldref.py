"""Argo's `valueFrom.fieldRef` for a Rollout's analysis args [pure].

Argo (utils/analysis/factory.go BuildArgumentsForRolloutAnalysisRun) resolves a path that
starts with `metadata` as Kubernetes' downward API does (fieldpath.ExtractFieldPathAsString:
name, namespace, uid, one label or annotation by `['key']`, or all of them as sorted
`key="value"` lines; a missing key is the empty string), and any other path by walking the
Rollout's JSON through `.` and `[i]`, where the path must end on a number, string or
boolean, printed as Go's `%v` prints it (a JSON number is a float64 there: 1e+06).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

_SECTIONS = re.compile(r"[.\[\]]+")
_QUALIFIED = re.compile(r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?"
                        r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


def resolve(rollout: Mapping[str, Any], path: str) -> str:
    """The value `path` names in `rollout`; ValueError with Argo's reason otherwise."""
    if path.startswith("metadata"):
        return metadata_value(rollout.get("metadata") or {}, path)
    node: Any = rollout
    for section in _SECTIONS.split(path):
        if section == "":
            continue
        if isinstance(node, list):
            if not section.isdigit():
                raise ValueError(f"invalid index '{section}' in {path}")
            if int(section) >= len(node):
                raise ValueError(f"index {section} out of range in {path}")
            node = node[int(section)]
        elif isinstance(node, Mapping):
            node = node.get(section)
        else:
            raise ValueError(f"invalid path {path} in the rollout")
    if node is None:
        raise ValueError(f"invalid path {path} in the rollout (nothing there)")
    if isinstance(node, list | Mapping):
        raise ValueError(f"path {path} in the rollout must end on a value, not a "
                         f"{'list' if isinstance(node, list) else 'map'}")
    return go_value(node)


def metadata_value(meta: Mapping[str, Any], path: str) -> str:
    """A `metadata` path of an object as Kubernetes' fieldpath.ExtractFieldPathAsString
    reads it (the downward API of a pod: devnode/envvars.py, volumes.py)."""
    if path.endswith("']") and "['" in path:
        field, key = path[:-2].split("['", 1)
        if field in ("metadata.labels", "metadata.annotations"):
            probe = key.lower() if field == "metadata.annotations" else key
            if not _QUALIFIED.match(probe):
                raise ValueError(f"invalid key subscript in {path}: a label or annotation "
                                 "key is a qualified name ([prefix/]name)")
            return str((meta.get(field.split(".")[1]) or {}).get(key, ""))
        raise ValueError(f"fieldPath {path!r} does not support a subscript (only "
                         "metadata.labels['k'] and metadata.annotations['k'] do)")
    if path in ("metadata.labels", "metadata.annotations"):
        return format_map(meta.get(path.split(".")[1]) or {})
    if path in ("metadata.name", "metadata.namespace", "metadata.uid"):
        return str(meta.get(path.split(".")[1]) or "")
    raise ValueError(f"unsupported fieldPath: {path} (metadata.name, metadata.namespace, "
                     "metadata.uid, metadata.labels and metadata.annotations are)")


def format_map(m: Mapping[str, Any]) -> str:
    """Kubernetes' fieldpath.FormatMap: `key="value"` lines, sorted by key, values quoted."""
    return "\n".join(f"{k}={json.dumps(str(m[k]), ensure_ascii=False)}" for k in sorted(m))


def go_value(v: Any) -> str:
    """`fmt.Sprintf("%v", v)` of a value decoded from JSON into Go's `any`."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return _go_float(float(v))
    return str(v)


def _go_float(x: float) -> str:
    """Go's %v of a float64: %g with the shortest digits that read back the same."""
    if x == 0:
        return "0"
    _, digits, exponent = Decimal(repr(abs(x))).normalize().as_tuple()
    exp = int(exponent)  # an int for every finite float (JSON has no NaN or infinity)
    ds = "".join(map(str, digits))
    nd, dp = len(ds), len(ds) + exp  # digits; position of the decimal point
    e = dp - 1
    out: str
    if e < -4 or e >= 6:  # Go decides by precision 6 when printing the shortest digits
        mant = ds[0] + ("." + ds[1:] if nd > 1 else "")
        out = f"{mant}e{'-' if e < 0 else '+'}{abs(e):02d}"
    elif dp <= 0:
        out = "0." + "0" * -dp + ds
    elif dp >= nd:
        out = ds + "0" * (dp - nd)
    else:
        out = ds[:dp] + "." + ds[dp:]
    return ("-" if x < 0 else "") + out


def check_metadata_path(path: str) -> None:
    """ValueError unless `path` is a metadata path Argo can read (validation, before any
    Rollout object exists to read it from)."""
    metadata_value({}, path)
