"""`{{args.NAME}}` in an AnalysisTemplate's interval/count: valid at load, read once the
run's arguments are substituted (Argo), and an Error run when the result is not valid."""

from __future__ import annotations

import pytest

from tollway.config.load import load_text
from tollway.config.resource import ResourceSet
from tollway.rollout import measure

TEMPLATE = """
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: rate}
spec:
  args: [{name: interval, value: 30s}, {name: count}]
  metrics:
  - name: rate
    interval: "{{args.interval}}"
    count: "{{ args.count }}"
    provider: {prometheus: {query: "up{job='{{args.job}}'}"}}
"""


def _resources() -> ResourceSet:
    result = load_text(TEMPLATE)
    assert result.ok, [f.render() for f in result.findings]
    return result.resources


def test_interval_and_count_are_read_after_substitution() -> None:
    rs = _resources()
    args = measure.template_args(("rate",), "default", rs, {"count": "3", "job": "api"})
    (spec,), missing = measure.metrics_for(("rate",), "default", rs, (), args)
    assert not missing and spec.interval == 30.0 and spec.count == 3
    assert spec.provider["prometheus"]["query"] == "up{job='{{args.job}}'}"  # rendered later


def test_a_substituted_value_that_is_not_valid_fails_the_run_spec() -> None:
    rs = _resources()
    with pytest.raises(measure.DryRunError, match="metric 'rate'"):
        measure.metrics_for(("rate",), "default", rs, (), {"interval": "soon", "count": "1"})


def test_without_arguments_the_template_fields_stay_unset() -> None:
    (spec,), _ = measure.metrics_for(("rate",), "default", _resources())
    assert spec.interval is None and spec.count is None
