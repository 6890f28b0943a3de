"""`tollway proxy-config cluster|listener|route|endpoint PROXY`: what one proxy holds.

As `istioctl proxy-config`: read from the proxy's own admin `/config_dump` (what it runs,
not what the control plane meant to send), shown as a table or as -o json / -o yaml.
PROXY is a name from `tollway proxy-status`, or a workload name (its first proxy).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import httpx
import typer
from ruamel.yaml import YAML

from tollway.cli.apply import request, server_url

SECTIONS = ("cluster", "listener", "route", "endpoint")


def resolve(rows: list[dict[str, Any]], wanted: str) -> dict[str, Any]:
    """A proxy by exact name, `NAME.NAMESPACE`, or workload (first by name)."""
    exact = [r for r in rows if r["name"] == wanted]
    if exact:
        return exact[0]
    workload, _, namespace = wanted.partition(".")
    found = sorted((r for r in rows if r.get("workload") == workload
                    and (not namespace or r["namespace"] == namespace)),
                   key=lambda r: str(r["name"]))
    if not found:
        typer.echo(f"error: no proxy named {wanted}; see `tollway proxy-status` for names",
                   err=True)
        raise typer.Exit(1)
    return found[0]


def _match(m: dict[str, Any]) -> str:
    parts = []
    for key in ("uri", "method", "authority", "scheme"):
        if m.get(key):
            parts.append(f"{key} {m[key]['kind']} {m[key]['value']}")
    parts += [f"header {h.get('name')}" for h in m.get("headers") or ()]
    return ", ".join(parts) or "/*"


def _table(head: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        typer.echo("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def clusters(cfg: dict[str, Any]) -> tuple[list[str], list[list[str]], list[Any]]:
    items = list(cfg.get("clusters") or ())
    rows = [[c["service"], str(c["port"]), c.get("subset") or "-",
             c["name"].split("|", 1)[0], str(len(c.get("endpoints") or ()))] for c in items]
    return ["SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "ENDPOINTS"], rows, items


def listeners(cfg: dict[str, Any]) -> tuple[list[str], list[list[str]], list[Any]]:
    items = list(cfg.get("listeners") or ())
    rows = [[f"{x['address']}:{x['port']}", x["kind"], x.get("route_table") or "-",
             f"{x['app_address']}:{x['app_port']}" if x.get("app_port") else "-",
             "TLS" if x.get("tls") else "-"] for x in items]
    return ["ADDRESS:PORT", "KIND", "ROUTE", "DESTINATION", "TLS"], rows, items


def routes(cfg: dict[str, Any]) -> tuple[list[str], list[list[str]], list[Any]]:
    items = list(cfg.get("route_tables") or ())
    rows = []
    for table in items:
        for vh in table.get("virtual_hosts") or ():
            names = list(vh.get("domains") or ())
            domains = (names[0] + (f" +{len(names) - 1} more" if len(names) > 1 else "")
                       if names else "-")  # -o json lists every one
            for route in vh.get("routes") or ():
                matches = [_match(m) for m in route.get("matches") or ()] or ["/*"]
                rows.append([table["name"], vh["name"], domains, "; ".join(matches),
                             route.get("virtual_service") or "-"])
    return ["NAME", "VHOST NAME", "DOMAINS", "MATCH", "VIRTUAL SERVICE"], rows, items


def endpoints(cfg: dict[str, Any]) -> tuple[list[str], list[list[str]], list[Any]]:
    items = []
    rows = []
    for c in cfg.get("clusters") or ():
        for e in c.get("endpoints") or ():
            items.append({"cluster": c["name"], **e})
            rows.append([f"{e['address']}:{e['port']}",
                         "HEALTHY" if e.get("healthy", True) else "UNHEALTHY",
                         e.get("workload") or "-", c["name"]])
    return ["ENDPOINT", "STATUS", "WORKLOAD", "CLUSTER"], rows, items


VIEWS: dict[str, Callable[[dict[str, Any]], tuple[list[str], list[list[str]], list[Any]]]] = {
    "cluster": clusters, "listener": listeners, "route": routes, "endpoint": endpoints,
}


def config_of(row: dict[str, Any]) -> dict[str, Any]:
    """The proxy's own config dump, from its admin port."""
    try:
        dump = httpx.get(f"http://{row['admin']}/config_dump", timeout=10.0).json()
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        typer.echo(f"error: cannot read the config of {row['name']} from its admin port "
                   f"{row.get('admin') or '(none)'} ({type(exc).__name__})", err=True)
        raise typer.Exit(1) from None
    config: dict[str, Any] | None = dump.get("config")
    if config is None:
        typer.echo(f"error: {row['name']} has no config yet (it is still starting)", err=True)
        raise typer.Exit(1)
    return config


def register(app: typer.Typer) -> None:
    @app.command("proxy-config")
    def proxy_config(
        section: str = typer.Argument(..., help="cluster, listener, route or endpoint."),
        proxy: str = typer.Argument(..., help="A proxy (see proxy-status) or a workload."),
        output: str | None = typer.Option(None, "-o", "--output", help="json or yaml."),
        server: str | None = typer.Option(None, "--server", help="Control plane URL."),
    ) -> None:
        """One proxy's clusters, listeners, routes or endpoints, from its config dump."""
        name = section.lower().rstrip("s")
        if name not in VIEWS:
            typer.echo(f"error: {section!r} is not a section; use one of "
                       f"{', '.join(SECTIONS)}", err=True)
            raise typer.Exit(2)
        if output not in (None, "json", "yaml"):
            typer.echo(f"error: -o {output} is not an output; use -o json or -o yaml", err=True)
            raise typer.Exit(2)
        rows = request("GET", server_url(server) + "/v1/proxies").json()
        head, table, items = VIEWS[name](config_of(resolve(rows, proxy)))
        if output == "json":
            typer.echo(json.dumps(items, indent=2))
        elif output == "yaml":
            yaml = YAML()
            yaml.default_flow_style = False
            yaml.dump(items, sys.stdout)
        else:
            _table(head, table)
