"""`tollway proxy-status`: every proxy, its workload, where it listens, what config it has."""

from __future__ import annotations

import json
import sys

import typer
from ruamel.yaml import YAML

from tollway.cli.apply import request, server_url


def register(app: typer.Typer) -> None:
    @app.command("proxy-status")
    def proxy_status(
        output: str | None = typer.Option(None, "-o", "--output", help="json or yaml."),
        server: str | None = typer.Option(None, "--server", help="Control plane URL."),
    ) -> None:
        """List proxies with the config version each acknowledged or refused."""
        if output not in (None, "json", "yaml"):
            typer.echo(f"tollway proxy-status: -o {output} is not an output; use -o json "
                       "or -o yaml", err=True)
            raise typer.Exit(2)
        rows = request("GET", server_url(server) + "/v1/proxies").json()
        if output == "json":
            typer.echo(json.dumps(rows, indent=2))
            return
        if output == "yaml":
            yaml = YAML()
            yaml.default_flow_style = False
            yaml.dump(rows, sys.stdout)
            return
        typer.echo(f"{'NAME':<44} {'NAMESPACE':<14} {'STATUS':<12} {'VERSION':<13} "
                   f"{'ADMIN':<21} INBOUND")
        for r in rows:
            typer.echo(f"{r['name']:<44} {r['namespace']:<14} {r['status']:<12} "
                       f"{(r['acked'] or '-'):<13} {(r['admin'] or '-'):<21} "
                       f"{r['inbound'] or '-'}")
            if r["status"] == "NACKED":
                typer.echo(f"    refused {r['nacked']}: {r['nack_reason']}")
