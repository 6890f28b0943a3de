"""Istio's Grafana dashboards (mesh, service, workload) and Kiali's queries, for Tollway.

Users import Istio's dashboards and open Kiali; both read `istio_requests_total` and the
`istio_request_duration_milliseconds` / `_bytes` histograms with Istio's labels, which
Tollway's sidecars export. The panels below carry the PromQL of Istio's dashboards
(istio/istio `manifests/addons/dashboards`, Apache-2.0) and of Kiali's graph and health
(kiali/kiali `prometheus/client_queries.go`, `business/graph/telemetry/istio`, Apache-2.0)
as written there, with Grafana's variables. `tests/e2e/test_dashboard_queries.py` runs
every one of them in a real Prometheus scraping a `tollway up` mesh under known traffic
and checks the answers; `docs/observability.md` lists them (`--write-docs`).

The JSON written by `--write DIR` is our own rendering (grafana dashboard schema 39,
timeseries/stat panels), not a copy of Istio's files: Tollway carries no plain TCP, so the
TCP panels are left out, and the datasource is a variable as in Istio's.

    python -m tollway.dashboard.grafana --write dashboards/grafana
    python -m tollway.dashboard.grafana --write-docs docs/observability.md
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# what the e2e test compares each answer with (see its module doc)
Check = str  # "rate" | "rate4xx" | "rate5xx" | "success" | "p50" | "p99" | "bytes" | "any"


@dataclass(frozen=True)
class Panel:
    title: str
    expr: str
    check: Check = "any"
    unit: str = "short"


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    origin: str
    variables: tuple[tuple[str, str], ...]  # name -> label-values query (Grafana's)
    panels: tuple[Panel, ...]


_SRC = 'reporter=~"source|waypoint"'
_MESH = Dashboard(
    "tollway-istio-mesh", "Istio Mesh Dashboard (Tollway)",
    "istio/istio manifests/addons/dashboards/istio-mesh-dashboard.gen.json",
    (),
    (
        Panel("Traffic Volume",
              f"round(sum (rate(istio_requests_total{{{_SRC}}}[$__rate_interval])), 0.01)",
              "rate", "reqps"),
        Panel("Success Rate",
              f'sum (rate(istio_requests_total{{{_SRC},response_code!~"5.."}}'
              f"[$__rate_interval])) / sum (rate(istio_requests_total{{{_SRC}}}"
              "[$__rate_interval]))", "success", "percentunit"),
        Panel("4xxs", f'round(sum (rate(istio_requests_total{{{_SRC},response_code=~"4.."}}'
              "[$__rate_interval])), 0.01)or vector(0)", "rate4xx", "reqps"),
        Panel("5xxs", f'round(sum (rate(istio_requests_total{{{_SRC},response_code=~"5.."}}'
              "[$__rate_interval])), 0.01)or vector(0)", "rate5xx", "reqps"),
        Panel("HTTP/gRPC Workloads: requests",
              'label_join(sum by (destination_workload,destination_workload_namespace,'
              f"destination_service) (rate(istio_requests_total{{{_SRC}}}[$__rate_interval])),"
              ' "destination_workload_var", ".", "destination_workload", '
              '"destination_workload_namespace")', "rate", "reqps"),
        Panel("HTTP/gRPC Workloads: P50",
              "label_join(histogram_quantile(0.5, sum by (le,destination_workload,"
              "destination_workload_namespace) (rate(istio_request_duration_milliseconds_bucket"
              f'{{{_SRC}}}[$__rate_interval]))), "destination_workload_var", ".", '
              '"destination_workload", "destination_workload_namespace")', "p50", "ms"),
        Panel("HTTP/gRPC Workloads: P99",
              "label_join(histogram_quantile(0.99, sum by (le,destination_workload,"
              "destination_workload_namespace) (rate(istio_request_duration_milliseconds_bucket"
              f'{{{_SRC}}}[$__rate_interval]))), "destination_workload_var", ".", '
              '"destination_workload", "destination_workload_namespace")', "p99", "ms"),
        Panel("HTTP/gRPC Workloads: success rate",
              "label_join(sum by (destination_workload,destination_workload_namespace) "
              f'(rate(istio_requests_total{{{_SRC},response_code!~"5.."}}[$__rate_interval]))/'
              "sum by (destination_workload,destination_workload_namespace) "
              f'(rate(istio_requests_total{{{_SRC}}}[$__rate_interval])), '
              '"destination_workload_var", ".", "destination_workload", '
              '"destination_workload_namespace")', "success", "percentunit"),
        Panel("Istio Component Versions", "sum by (component,tag) (istio_build)"),
    ),
)

_SVC = 'destination_service="$service"'
_SVC_SRC = ('destination_service="$service", source_workload=~"$srcwl", '
            'source_workload_namespace=~"$srcns"')
_SERVICE = Dashboard(
    "tollway-istio-service", "Istio Service Dashboard (Tollway)",
    "istio/istio manifests/addons/dashboards/istio-service-dashboard.json",
    (("service", "sum(istio_requests_total{}) by (destination_service)"),
     ("qrep", "source,destination"),
     ("srcns", 'sum(istio_requests_total{reporter=~"$qrep", destination_service="$service"})'
               " by (source_workload_namespace)"),
     ("srcwl", 'sum(istio_requests_total{reporter=~"$qrep", destination_service="$service", '
               'source_workload_namespace=~"$srcns"}) by (source_workload)')),
    (
        Panel("Client Request Volume",
              f'round(sum(irate(istio_requests_total{{reporter=~"$qrep",{_SVC}}}'
              "[$__rate_interval])), 0.001)", "rate", "reqps"),
        Panel("Client Success Rate (non-5xx responses)",
              f'sum(irate(istio_requests_total{{reporter=~"$qrep",{_SVC},response_code!~"5.*"}}'
              f'[$__rate_interval])) / (sum(irate(istio_requests_total{{reporter=~"$qrep",'
              f"{_SVC}}}[$__rate_interval])) or on () vector(1))", "success", "percentunit"),
        Panel("Client Request Duration P99",
              "(histogram_quantile(0.99, sum(irate(istio_request_duration_milliseconds_bucket"
              f'{{reporter=~"$qrep",{_SVC}}}[$__rate_interval])) by (le)) / 1000) or '
              "histogram_quantile(0.99, sum(irate(istio_request_duration_seconds_bucket"
              f'{{reporter=~"$qrep",{_SVC}}}[$__rate_interval])) by (le))', "p99s", "s"),
        Panel("Server Request Volume",
              f'round(sum(irate(istio_requests_total{{reporter="destination",{_SVC}}}'
              "[$__rate_interval])), 0.001)", "rate", "reqps"),
        Panel("Server Success Rate (non-5xx responses)",
              f'sum(irate(istio_requests_total{{reporter="destination",{_SVC},'
              'response_code!~"5.*"}[$__rate_interval])) / (sum(irate(istio_requests_total'
              f'{{reporter="destination",{_SVC}}}[$__rate_interval])) or on () vector(1))',
              "success", "percentunit"),
        Panel("Server Request Duration P50",
              "(histogram_quantile(0.50, sum(irate(istio_request_duration_milliseconds_bucket"
              f'{{reporter="destination",{_SVC}}}[$__rate_interval])) by (le)) / 1000) or '
              "histogram_quantile(0.50, sum(irate(istio_request_duration_seconds_bucket"
              f'{{reporter="destination",{_SVC}}}[$__rate_interval])) by (le))', "p50s", "s"),
        Panel("Incoming Requests By Source And Response Code",
              "round(sum(irate(istio_requests_total{connection_security_policy!=\"mutual_tls\", "
              f'{_SVC_SRC}, reporter=~"$qrep"}}[$__rate_interval])) by (source_workload, '
              "source_workload_namespace, response_code), 0.001)", "by_code", "reqps"),
        Panel("Incoming Success Rate (non-5xx responses) By Source",
              'sum(irate(istio_requests_total{reporter=~"$qrep", connection_security_policy!='
              f'"mutual_tls", {_SVC_SRC}, response_code!~"5.*"}}[$__rate_interval])) by '
              "(source_workload, source_workload_namespace) / sum(irate(istio_requests_total"
              '{reporter=~"$qrep", connection_security_policy!="mutual_tls", '
              f"{_SVC_SRC}}}[$__rate_interval])) by (source_workload, "
              "source_workload_namespace)", "success", "percentunit"),
        Panel("Incoming Request Size By Source P99",
              "histogram_quantile(0.99, sum(irate(istio_request_bytes_bucket{reporter=~"
              f'"$qrep", connection_security_policy!="mutual_tls", {_SVC_SRC}}}'
              "[$__rate_interval])) by (source_workload, source_workload_namespace, le))",
              "bytes", "decbytes"),
        Panel("Response Size By Source P50",
              "histogram_quantile(0.50, sum(irate(istio_response_bytes_bucket{reporter=~"
              f'"$qrep", connection_security_policy!="mutual_tls", {_SVC_SRC}}}'
              "[$__rate_interval])) by (source_workload, source_workload_namespace, le))",
              "bytes", "decbytes"),
    ),
)

_WL = 'destination_workload=~"$workload", destination_workload_namespace=~"$namespace"'
_WL_SRC = f'{_WL}, source_workload=~"$srcwl", source_workload_namespace=~"$srcns"'
_OUT = ('source_workload=~"$workload", source_workload_namespace=~"$namespace", '
        'destination_service=~"$dstsvc"')
_WORKLOAD = Dashboard(
    "tollway-istio-workload", "Istio Workload Dashboard (Tollway)",
    "istio/istio manifests/addons/dashboards/istio-workload-dashboard.json",
    (("namespace", "sum(istio_requests_total) by (destination_workload_namespace)"),
     ("workload", 'sum(istio_requests_total{destination_workload_namespace=~"$namespace"}) '
                  "by (destination_workload)"),
     ("qrep", "source,destination"),
     ("srcns", 'sum(istio_requests_total{reporter=~"$qrep", destination_workload="$workload",'
               ' destination_workload_namespace=~"$namespace"}) by (source_workload_namespace)'),
     ("srcwl", 'sum(istio_requests_total{reporter=~"$qrep", destination_workload="$workload",'
               ' destination_workload_namespace=~"$namespace", source_workload_namespace=~'
               '"$srcns"}) by (source_workload)'),
     ("dstsvc", 'sum(istio_requests_total{reporter="source", source_workload=~"$workload", '
                'source_workload_namespace=~"$namespace"}) by (destination_service)')),
    (
        Panel("Incoming Request Volume",
              f'round(sum(irate(istio_requests_total{{reporter=~"$qrep", {_WL}}}'
              "[$__rate_interval])), 0.001)", "rate", "reqps"),
        Panel("Incoming Success Rate (non-5xx responses)",
              f'sum(irate(istio_requests_total{{reporter=~"$qrep", {_WL}, '
              'response_code!~"5.*"}[$__rate_interval])) / sum(irate(istio_requests_total'
              f'{{reporter=~"$qrep", {_WL}}}[$__rate_interval]))', "success", "percentunit"),
        Panel("Request Duration P99",
              "(histogram_quantile(0.99, sum(irate(istio_request_duration_milliseconds_bucket"
              f'{{reporter=~"$qrep", {_WL}}}[$__rate_interval])) by (le)) / 1000) or '
              "histogram_quantile(0.99, sum(irate(istio_request_duration_seconds_bucket"
              f'{{reporter=~"$qrep", {_WL}}}[$__rate_interval])) by (le))', "p99s", "s"),
        Panel("Incoming Requests By Source And Response Code",
              'round(sum(irate(istio_requests_total{connection_security_policy!="mutual_tls", '
              f'{_WL_SRC}, reporter=~"$qrep"}}[$__rate_interval])) by (source_workload, '
              "source_workload_namespace, response_code), 0.001)", "by_code", "reqps"),
        Panel("Incoming Request Duration By Source P99",
              "(histogram_quantile(0.99, sum(irate(istio_request_duration_milliseconds_bucket"
              f'{{reporter=~"$qrep", connection_security_policy!="mutual_tls", {_WL_SRC}}}'
              "[$__rate_interval])) by (source_workload, source_workload_namespace, le)) / "
              "1000)", "p99s", "s"),
        Panel("Outgoing Requests By Destination And Response Code",
              'round(sum(irate(istio_requests_total{destination_principal=~"spiffe.*", '
              f'{_OUT}, reporter="source"}}[$__rate_interval])) by (destination_service, '
              "response_code), 0.001)", "any", "reqps"),
        Panel("Outgoing Success Rate (non-5xx responses) By Destination",
              'sum(irate(istio_requests_total{reporter="source", connection_security_policy!='
              f'"mutual_tls", {_OUT}, response_code!~"5.*"}}[$__rate_interval])) by '
              '(destination_service) / sum(irate(istio_requests_total{reporter="source", '
              f'connection_security_policy!="mutual_tls", {_OUT}}}[$__rate_interval])) by '
              "(destination_service)", "any", "percentunit"),
    ),
)

_KIALI_GROUP = ("source_cluster,source_workload_namespace,source_workload,"
                "source_canonical_service,source_canonical_revision,destination_cluster,"
                "destination_service_namespace,destination_service,destination_service_name,"
                "destination_workload_namespace,destination_workload,"
                "destination_canonical_service,destination_canonical_revision,"
                "request_protocol,response_code,grpc_response_status,response_flags")
KIALI = Dashboard(
    "kiali", "Kiali graph and health", "kiali/kiali prometheus/client_queries.go, "
    "business/graph/telemetry/istio/istio.go", (("namespace", ""),),
    (
        Panel("graph: requests into the namespace (source reporter)",
              'sum(rate(istio_requests_total{reporter="source",source_workload_namespace!='
              '"$namespace",destination_service_namespace="$namespace"}[$__rate_interval])) '
              f"by ({_KIALI_GROUP}) > 0", "by_code"),
        Panel("graph: requests from unknown sources (destination reporter)",
              'sum(rate(istio_requests_total{reporter="destination",source_workload="unknown",'
              'destination_service_namespace="$namespace"}[$__rate_interval])) '
              f"by ({_KIALI_GROUP}) > 0", "by_code"),
        Panel("graph: response time P95 (2xx)",
              "histogram_quantile(0.95, sum(rate(istio_request_duration_milliseconds_bucket"
              '{reporter="destination",destination_service_namespace="$namespace",'
              'response_code=~"2[0-9]{2}|^0$"}[$__rate_interval])) by (le,'
              "destination_service_namespace,destination_service,destination_workload)) > 0",
              "any", "ms"),
        Panel("health: service request rates (GetNamespaceServicesRequestRates)",
              'rate(istio_requests_total{destination_service_namespace="$namespace"}'
              "[$__rate_interval]) > 0", "any"),
        Panel("health: all request rates (GetAllRequestRates, from outside)",
              'rate(istio_requests_total{destination_service_namespace="$namespace",'
              'source_workload_namespace!="$namespace"}[$__rate_interval]) > 0', "any"),
        Panel("health: workload request rates in (GetWorkloadRequestRates)",
              'rate(istio_requests_total{destination_workload_namespace="$namespace",'
              'destination_workload="$workload"}[$__rate_interval]) > 0', "any"),
    ),
)
# Kiali's metrics page for a service (business/metrics.go buildLabelStrings,
# fetchAllMetrics): errors are HTTP errors (response_code 0, 4xx, 5xx) or, for gRPC, a
# grpc_response_status 1-16 whose HTTP status is not itself an error; and the gRPC message
# rates. Istio's own Grafana dashboards read no gRPC label: these are where the label is read.
_KIALI_SVC = 'reporter="destination",destination_service_name="$service"'
_KIALI_HTTP_ERR = r'"^0$|^[4-5]\\d\\d$"'  # PromQL string: the regex ^0$|^[4-5]\d\d$
KIALI_GRPC = Dashboard(
    "kiali-grpc", "Kiali service metrics (gRPC)", "kiali/kiali business/metrics.go",
    (("service", ""),),
    (
        Panel("metrics: request error rate (HTTP and gRPC)",
              f"sum(rate(istio_requests_total{{{_KIALI_SVC},response_code=~{_KIALI_HTTP_ERR}}}"
              "[$__rate_interval])) OR sum(rate(istio_requests_total"
              f'{{{_KIALI_SVC},grpc_response_status=~"^[1-9]$|^1[0-6]$",'
              f"response_code!~{_KIALI_HTTP_ERR}}}[$__rate_interval]))",
              "grpc_errors", "reqps"),
        Panel("metrics: request rate by gRPC status",
              f"sum(rate(istio_requests_total{{{_KIALI_SVC}}}[$__rate_interval])) "
              "by (grpc_response_status)", "by_grpc_status", "reqps"),
        Panel("metrics: gRPC request messages",
              f"sum(rate(istio_request_messages_total{{{_KIALI_SVC}}}[$__rate_interval]))",
              "request_messages", "short"),
        Panel("metrics: gRPC response messages",
              f"sum(rate(istio_response_messages_total{{{_KIALI_SVC}}}[$__rate_interval]))",
              "response_messages", "short"),
    ),
)
DASHBOARDS: tuple[Dashboard, ...] = (_MESH, _SERVICE, _WORKLOAD)


def substitute(expr: str, values: dict[str, str]) -> str:
    """Grafana's `$var` (longest names first) replaced by `values`."""
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace("$" + name, values[name])
    return expr


def variables_in(expr: str) -> set[str]:
    return set(re.findall(r"\$(\w+)", expr))


def render(d: Dashboard) -> dict[str, Any]:
    """Grafana's dashboard JSON model (schema 39): one panel per query, 2 per row."""
    templating: list[dict[str, Any]] = [
        {"name": "datasource", "type": "datasource", "query": "prometheus",
         "label": "Data source"}]
    for name, query in d.variables:
        if "," in query and "(" not in query:
            options = query.split(",")
            templating.append({"name": name, "type": "custom", "query": query,
                               "current": {"text": options[-1], "value": options[-1]}})
        else:
            templating.append({
                "name": name, "type": "query", "datasource": {"uid": "${datasource}"},
                "query": {"query": f"query_result({query})", "refId": name},
                "regex": f'/.*{name_label(query)}="([^"]*).*/', "refresh": 2,
                "includeAll": name.startswith(("src", "dst")), "allValue": ".*"})
    panels = [{
        "id": i + 1, "title": p.title,
        "type": "stat" if d is _MESH and i < 4 else "timeseries",
        "datasource": {"uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
        "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
        "targets": [{"expr": p.expr, "refId": "A", "datasource": {"uid": "${datasource}"}}],
    } for i, p in enumerate(d.panels)]
    return {
        "uid": d.uid, "title": d.title, "schemaVersion": 39, "version": 1,
        "description": f"Tollway's rendering of the queries of {d.origin} (Apache-2.0), "
                       "checked against Tollway's metrics by tests/e2e/test_dashboard_queries.py",
        "tags": ["istio", "tollway"], "time": {"from": "now-15m", "to": "now"},
        "refresh": "10s", "timezone": "browser", "editable": True,
        "templating": {"list": templating}, "panels": panels,
    }


def name_label(query: str) -> str:
    m = re.search(r"by \((\w+)\)", query)
    return m[1] if m else "__name__"


def docs_section() -> str:
    """The Markdown list of checked queries (docs/observability.md)."""
    out = ["<!-- queries:begin (python -m tollway.dashboard.grafana --write-docs) -->", ""]
    for d in (*DASHBOARDS, KIALI, KIALI_GRPC):
        out += [f"### {d.title}", "", f"Origin: {d.origin}.", "", "| panel | checked | query |",
                "|---|---|---|"]
        for p in d.panels:
            out.append(f"| {p.title} | {p.check} | `{p.expr.replace('|', chr(92) + '|')}` |")
        out.append("")
    out.append("<!-- queries:end -->")
    return "\n".join(out)


def write(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for d in DASHBOARDS:
        path = folder / f"{d.uid}.json"
        path.write_text(json.dumps(render(d), indent=2) + "\n")
        paths.append(path)
    return paths


def write_docs(path: Path) -> None:
    text = path.read_text() if path.exists() else ""
    begin, end = "<!-- queries:begin", "<!-- queries:end -->"
    if begin in text and end in text:
        head = text[:text.index(begin)]
        tail = text[text.index(end) + len(end):]
        text = head + docs_section() + tail
    else:
        text = text + "\n" + docs_section() + "\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tollway.dashboard.grafana")
    ap.add_argument("--write", type=Path, help="folder for the dashboards' JSON")
    ap.add_argument("--write-docs", type=Path, help="Markdown file whose query list to update")
    args = ap.parse_args(argv)
    if args.write:
        for p in write(args.write):
            print(f"wrote {p}")
    if args.write_docs:
        write_docs(args.write_docs)
        print(f"wrote {args.write_docs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
