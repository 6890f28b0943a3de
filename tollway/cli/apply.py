"""`tollway apply -f`, `tollway delete -f`, `tollway get`: talk to a running control plane.

apply and delete validate locally first and print findings exactly as `tollway validate`
does; anything invalid exits 1 and nothing is sent. The control plane validates the
resulting set again (cross-resource checks) and changes nothing if that fails.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import typer
from ruamel.yaml import YAML

from tollway.cli import check
from tollway.config.load import load_paths

DEFAULT_SERVER = "http://127.0.0.1:15010"
_SERVER = typer.Option(None, "--server", help="Control plane URL (default $TOLLWAY_SERVER "
                       f"or {DEFAULT_SERVER}).")
_FILES = typer.Option(..., "-f", "--filename", help="Manifest file or folder (repeatable).")


def server_url(server: str | None) -> str:
    return (server or os.environ.get("TOLLWAY_SERVER") or DEFAULT_SERVER).rstrip("/")


def request(method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One call to the control plane; unreachable prints one sentence and exits 1."""
    try:
        return httpx.request(method, url, timeout=30.0, **kwargs)
    except httpx.HTTPError as exc:
        base = url.split("/v1/")[0]
        typer.echo(f"cannot reach the control plane at {base} ({type(exc).__name__}); "
                   "start it with `tollway up DIR` or pass --server URL", err=True)
        raise typer.Exit(1) from exc


def _send(verb: str, files: list[str], server: str | None) -> None:
    missing = [f for f in files if not Path(f).exists()]
    if missing:
        typer.echo(f"tollway {verb}: no such file or folder: {missing[0]}", err=True)
        raise typer.Exit(2)
    result = load_paths(files)
    if not result.ok:
        raise typer.Exit(check.report(result, list(result.findings)))
    body = {"files": [{"filename": f, "text": Path(f).read_text()} for f in result.files],
            "reason": f"tollway {verb} -f {' '.join(files)}"}
    response = request("POST", f"{server_url(server)}/v1/{verb}", json=body)
    data: dict[str, Any] = {"findings": [response.text], "ok": False}
    if response.headers.get("content-type", "").startswith("application/json"):
        data = response.json()
    for line in data.get("findings", []):
        typer.echo(line)
    if not data.get("ok"):
        typer.echo(f"nothing {'applied' if verb == 'apply' else 'deleted'}: "
                   "the control plane refused the change (see above)")
        raise typer.Exit(1)
    _summarise(verb, result, data)


def _summarise(verb: str, result: Any, data: dict[str, Any]) -> None:
    touched = set(data.get("changed", [])) | set(data.get("deleted", []))
    for r in result.resources:
        key = f"{r.kind}/{r.namespace}/{r.name}"
        if verb == "delete":
            word = "deleted" if key in touched else "not found"
        else:
            word = "configured" if key in touched else "unchanged"
        typer.echo(f"{r.kind.lower()}/{r.name} {word}")


def _print_items(items: list[dict[str, Any]], output: str | None, single: bool) -> None:
    if output == "json":
        typer.echo(json.dumps(items[0] if single else items, indent=2))
    elif output == "yaml":
        yaml = YAML()
        yaml.default_flow_style = False
        if single:
            yaml.dump(items[0], sys.stdout)
        else:
            yaml.dump_all(items, sys.stdout)
    else:
        typer.echo(f"{'KIND':<22} {'NAMESPACE':<14} {'NAME':<32} {'GEN':>4} {'VERSION':>8}")
        for item in items:
            meta = item["metadata"]
            typer.echo(f"{item['kind']:<22} {meta['namespace']:<14} {meta['name']:<32} "
                       f"{meta.get('generation', ''):>4} {meta.get('resourceVersion', ''):>8}")


def register(app: typer.Typer) -> None:
    @app.command("apply")
    def apply(files: list[str] = _FILES, server: str | None = _SERVER) -> None:
        """Validate manifests, then apply them all or nothing to the running mesh."""
        _send("apply", files, server)

    @app.command("delete")
    def delete(files: list[str] = _FILES, server: str | None = _SERVER) -> None:
        """Validate manifests, then delete the resources they name, all or nothing."""
        _send("delete", files, server)

    @app.command("get")
    def get(
        kind: str = typer.Argument(..., help="Kind, plural or short name (vs, dr, deploy)."),
        name: str | None = typer.Argument(None),
        namespace: str | None = typer.Option(None, "-n", "--namespace"),
        output: str | None = typer.Option(None, "-o", "--output", help="yaml or json"),
        server: str | None = _SERVER,
    ) -> None:
        """Show the resources in force, with resourceVersion and generation."""
        if output not in (None, "yaml", "json"):
            typer.echo(f"tollway get: -o {output} is not an output; use -o yaml or -o json",
                       err=True)
            raise typer.Exit(2)
        path = f"/v1/resources/{kind}" + (f"/{name}" if name else "")
        params = {"namespace": namespace} if namespace else None
        response = request("GET", server_url(server) + path, params=params)
        if response.status_code == 404:
            typer.echo(f"{kind} {name} not found", err=True)
            raise typer.Exit(1)
        items = response.json()["items"]
        if not items:
            typer.echo(f"no {kind} found", err=True)
            raise typer.Exit(1 if name else 0)
        _print_items(items, output, single=bool(name))
