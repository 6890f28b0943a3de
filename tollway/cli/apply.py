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

from tollway.cli import check, credentials
from tollway.config.load import load_paths

DEFAULT_SERVER = "http://127.0.0.1:15010"
_SERVER = typer.Option(None, "--server", help="Control plane URL (default $TOLLWAY_SERVER "
                       f"or {DEFAULT_SERVER}).")
_FILES = typer.Option(..., "-f", "--filename", help="Manifest file or folder (repeatable).")
_TOKEN = typer.Option(None, "--token", help="Admin credential (default $TOLLWAY_TOKEN, or "
                      "the one `tollway up` left for this server on this machine).")
REFUSED = {401: "refused this credential", 403: "refused this call", 415: "refused the request",
           421: "refused the Host"}


def server_url(server: str | None) -> str:
    return (server or os.environ.get("TOLLWAY_SERVER") or DEFAULT_SERVER).rstrip("/")


def request(method: str, url: str, *, token: str | None = None,
            **kwargs: Any) -> httpx.Response:
    """One call to the control plane with the admin credential when one is known;
    unreachable or refused (401/403/415/421) prints one sentence and exits 1."""
    base = url.split("/v1/")[0]
    try:
        response = httpx.request(method, url, timeout=30.0,
                                 headers=credentials.headers(base, token), **kwargs)
    except httpx.HTTPError as exc:
        typer.echo(f"cannot reach the control plane at {base} ({type(exc).__name__}); "
                   "start it with `tollway up DIR` or pass --server URL", err=True)
        raise typer.Exit(1) from exc
    if response.status_code in REFUSED:
        typer.echo(f"the control plane at {base} {REFUSED[response.status_code]}: "
                   f"{response.text.strip()}", err=True)
        raise typer.Exit(1)
    return response


def _send(verb: str, files: list[str], server: str | None, token: str | None) -> None:
    missing = [f for f in files if not Path(f).exists()]
    if missing:
        typer.echo(f"tollway {verb}: no such file or folder: {missing[0]}", err=True)
        raise typer.Exit(2)
    result = load_paths(files)
    if not result.ok:
        raise typer.Exit(check.report(result, list(result.findings)))
    body = {"files": [{"filename": f, "text": Path(f).read_text()} for f in result.files],
            "reason": f"tollway {verb} -f {' '.join(files)}"}
    response = request("POST", f"{server_url(server)}/v1/{verb}", json=body, token=token)
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


OUTPUTS = ("yaml", "json", "wide", "name")


def known_kind(query: str) -> str | None:
    """The kind a kubectl-style name (plural, short) stands for, or None if none is."""
    from tollway.config.kinds import ALL_KINDS
    from tollway.control.resources_json import kind_matches

    return next((s.kind for s in ALL_KINDS if kind_matches(query, s.kind)), None)


def complete_kind(incomplete: str) -> list[str]:
    """Shell completion of KIND: each kind's lower-case plural, as kubectl completes."""
    from tollway.config.kinds import ALL_KINDS

    names = sorted({_plural(s.kind) for s in ALL_KINDS})
    return [n for n in names if n.startswith(incomplete.lower())]


def _plural(kind: str) -> str:
    k = kind.lower()
    if k.endswith("y"):
        return k[:-1] + "ies"
    return k + ("es" if k.endswith("s") else "s")


def _group(item: dict[str, Any]) -> str:
    group = str(item.get("apiVersion", "")).rpartition("/")[0]
    return f"{item['kind'].lower()}.{group}" if group else item["kind"].lower()


def _yaml_dump(data: Any, single: bool) -> None:
    yaml = YAML()
    yaml.default_flow_style = False
    if single:
        yaml.dump(data, sys.stdout)
    else:
        yaml.dump_all(data, sys.stdout)


def _print_items(items: list[dict[str, Any]], output: str | None, single: bool,
                 all_namespaces: bool) -> None:
    if output == "json":
        typer.echo(json.dumps(items[0] if single else items, indent=2))
    elif output == "yaml":
        _yaml_dump(items[0] if single else items, single)
    elif output == "name":  # as kubectl: kind.group/name, one a line, for scripts
        for item in items:
            typer.echo(f"{_group(item)}/{item['metadata']['name']}")
    else:
        _table(items, wide=output == "wide", all_namespaces=all_namespaces)


def _table(items: list[dict[str, Any]], *, wide: bool, all_namespaces: bool) -> None:
    rows = []
    for item in items:
        meta = item["metadata"]
        row = [meta["namespace"]] if all_namespaces else []
        row += [meta["name"], str(meta.get("generation", "")),
                str(meta.get("resourceVersion", "")), str(meta.get("source") or "-")]
        if wide:
            labels = ",".join(f"{k}={v}" for k, v in (meta.get("labels") or {}).items())
            row += [item["kind"], str(item.get("apiVersion", "")),
                    str(meta.get("managedBy", "") or "-"), labels or "<none>"]
        rows.append(row)
    head = (["NAMESPACE"] if all_namespaces else []) + ["NAME", "GENERATION", "VERSION",
                                                         "SOURCE"]
    if wide:
        head += ["KIND", "API VERSION", "MANAGED BY", "LABELS"]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        typer.echo("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    for item in items:  # what the API's version shadows in the folder (control/applied.py)
        meta = item["metadata"]
        if meta.get("conflict"):
            typer.echo(f"conflict: {item['kind']}/{meta['namespace']}/{meta['name']} "
                       f"{meta['conflict']}")


def _fetch(kind: str, name: str | None, namespace: str | None, server: str | None,
           token: str | None = None) -> list[dict[str, Any]]:
    """The objects, or exit 1 with kubectl's words for an unknown kind or a missing name."""
    resolved = known_kind(kind)
    if resolved is None:
        typer.echo(f'error: the server doesn\'t have a resource type "{kind}"', err=True)
        raise typer.Exit(1)
    path = f"/v1/resources/{kind}" + (f"/{name}" if name else "")
    params = {"namespace": namespace} if namespace else None
    response = request("GET", server_url(server) + path, params=params, token=token)
    items: list[dict[str, Any]] = (response.json().get("items", [])
                                   if response.status_code == 200 else [])
    if name and not items:
        plural = _plural(resolved)
        typer.echo(f'Error from server (NotFound): {plural} "{name}" not found', err=True)
        raise typer.Exit(1)
    return items


def register(app: typer.Typer) -> None:
    @app.command("apply")
    def apply(files: list[str] = _FILES, server: str | None = _SERVER,
              token: str | None = _TOKEN) -> None:
        """Validate manifests, then apply them all or nothing to the running mesh."""
        _send("apply", files, server, token)

    @app.command("delete")
    def delete(files: list[str] = _FILES, server: str | None = _SERVER,
               token: str | None = _TOKEN) -> None:
        """Validate manifests, then delete the resources they name, all or nothing."""
        _send("delete", files, server, token)

    @app.command("get")
    def get(
        kind: str = typer.Argument(..., help="Kind, plural or short name (vs, dr, deploy).",
                                   autocompletion=complete_kind),
        name: str | None = typer.Argument(None, help="One resource by name."),
        namespace: str = typer.Option("default", "-n", "--namespace",
                                      help="Namespace (default: default)."),
        all_namespaces: bool = typer.Option(False, "-A", "--all-namespaces",
                                            help="Every namespace."),
        output: str | None = typer.Option(None, "-o", "--output",
                                          help="yaml, json, wide or name."),
        server: str | None = _SERVER,
        token: str | None = _TOKEN,
    ) -> None:
        """Show the resources in force, with generation and resourceVersion (as kubectl)."""
        if output not in (None, *OUTPUTS):
            typer.echo(f"error: -o {output} is not an output; use one of "
                       f"{', '.join(OUTPUTS)}", err=True)
            raise typer.Exit(2)
        items = _fetch(kind, name, None if all_namespaces else namespace, server, token)
        if not items:
            where = "" if all_namespaces else f" in {namespace} namespace"
            typer.echo(f"No resources found{where}.", err=True)
            return
        _print_items(items, output, single=bool(name), all_namespaces=all_namespaces)

    @app.command("describe")
    def describe(
        kind: str = typer.Argument(..., help="Kind, plural or short name (vs, dr, deploy).",
                                   autocompletion=complete_kind),
        name: str = typer.Argument(..., help="The resource's name."),
        namespace: str = typer.Option("default", "-n", "--namespace"),
        server: str | None = _SERVER,
        token: str | None = _TOKEN,
    ) -> None:
        """One resource in full, as kubectl describe: metadata, spec, status."""
        item = _fetch(kind, name, namespace, server, token)[0]
        typer.echo(describe_text(item))


def describe_text(item: dict[str, Any]) -> str:
    """kubectl describe's layout: `Name:` lines, then Spec and Status as indented YAML."""
    import io

    meta = item["metadata"]

    def block(data: Any) -> list[str]:
        out = io.StringIO()
        yaml = YAML()
        yaml.default_flow_style = False
        yaml.dump(data, out)
        return ["  " + line for line in out.getvalue().rstrip().splitlines()]

    def pairs(data: dict[str, Any] | None) -> str:
        return "\n".join(f"{' ' * 14 if i else ''}{k}={v}"
                         for i, (k, v) in enumerate((data or {}).items())) or "<none>"

    lines = [f"{'Name:':<14}{meta['name']}", f"{'Namespace:':<14}{meta['namespace']}",
             f"{'Labels:':<14}{pairs(meta.get('labels'))}",
             f"{'Annotations:':<14}{pairs(meta.get('annotations'))}",
             f"{'API Version:':<14}{item.get('apiVersion', '')}",
             f"{'Kind:':<14}{item['kind']}",
             f"{'Generation:':<14}{meta.get('generation', '')}",
             f"{'Version:':<14}{meta.get('resourceVersion', '')}",
             f"{'Managed By:':<14}{meta.get('managedBy') or '-'}",
             f"{'Source:':<14}{meta.get('source') or '-'}"]
    if meta.get("conflict"):
        lines.append(f"{'Conflict:':<14}{meta['conflict']}")
    for key, value in item.items():
        if key in ("apiVersion", "kind", "metadata"):
            continue
        lines.append(f"{key[:1].upper()}{key[1:]}:")
        lines += block(value) if value not in (None, {}, []) else ["  <none>"]
    return "\n".join(lines)
