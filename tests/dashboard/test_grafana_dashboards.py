"""The shipped Grafana dashboards and the docs' query list are generated from
`tollway.dashboard.grafana` and kept current; every query is well-formed PromQL shape."""

from __future__ import annotations

import json
from pathlib import Path

from tollway.dashboard import grafana

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_dashboards_are_current() -> None:
    for d in grafana.DASHBOARDS:
        shipped = json.loads((ROOT / "dashboards" / "grafana" / f"{d.uid}.json").read_text())
        assert shipped == grafana.render(d), (
            f"dashboards/grafana/{d.uid}.json is stale: run "
            "python -m tollway.dashboard.grafana --write dashboards/grafana")


def test_docs_list_every_checked_query() -> None:
    text = (ROOT / "docs" / "observability.md").read_text()
    assert grafana.docs_section() in text, (
        "run python -m tollway.dashboard.grafana --write-docs docs/observability.md")


def test_every_panel_has_one_query_with_known_variables_and_balanced_parens() -> None:
    known = {"__rate_interval", "service", "qrep", "srcwl", "srcns", "namespace", "workload",
             "dstsvc"}
    for d in (*grafana.DASHBOARDS, grafana.KIALI, grafana.KIALI_GRPC):
        for p in d.panels:
            assert grafana.variables_in(p.expr) <= known, (d.title, p.title)
            assert p.expr.count("(") == p.expr.count(")"), (d.title, p.title)
            assert p.expr.count("{") == p.expr.count("}"), (d.title, p.title)
        rendered = grafana.render(d)
        assert [t["targets"][0]["expr"] for t in rendered["panels"]] == [
            p.expr for p in d.panels]
