"""kit/fieldref.py: Argo's fieldRef paths and Go's `%v` of a JSON number [pure]."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollway.kit.fieldref import check_metadata_path, go_value, resolve

ROLLOUT = {"metadata": {"name": "web", "labels": {"app": "web"}},
           "spec": {"replicas": 2, "ports": [80, 443], "paused": False, "template": {}}}


@pytest.mark.parametrize(("value", "printed"), [
    (3, "3"), (3.0, "3"), (123456, "123456"), (1000000, "1e+06"), (1234567, "1.234567e+06"),
    (0.5, "0.5"), (0.0001, "0.0001"), (0.00001, "1e-05"), (-2.5, "-2.5"), (0, "0"),
    (1e21, "1e+21"), (True, "true"), (False, "false"), ("x", "x")])
def test_go_prints_json_values_so(value: object, printed: str) -> None:
    """fmt.Sprintf("%v", v) of what encoding/json decodes into `any` (numbers: float64)."""
    assert go_value(value) == printed


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_the_printed_number_reads_back_the_same(x: float) -> None:
    printed = go_value(x)
    assert float(printed) == x and go_value(float(printed)) == printed


def test_paths_resolve_as_argo_walks_them() -> None:
    assert resolve(ROLLOUT, "spec.ports[1]") == "443"
    assert resolve(ROLLOUT, "spec.paused") == "false"
    assert resolve(ROLLOUT, "metadata.labels['missing']") == ""
    for path, reason in [("spec.nothing", "invalid path"), ("spec.ports[2]", "out of range"),
                         ("spec.ports[x]", "invalid index"), ("spec.template", "must end"),
                         ("spec.replicas.x", "invalid path"),
                         ("metadata.generateName", "unsupported fieldPath"),
                         ("metadata.name['x']", "does not support a subscript"),
                         ("metadata.labels['bad key']", "invalid key subscript")]:
        with pytest.raises(ValueError, match=reason):
            resolve(ROLLOUT, path)
    check_metadata_path("metadata.annotations['Example.com/Team']")  # lowered, as Kubernetes
    with pytest.raises(ValueError):
        check_metadata_path("metadata.creationTimestamp")
