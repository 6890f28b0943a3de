"""`tollway dashboard`: where the web dashboard is, checked, and opened on request.

The dashboard is served by the control plane itself (`tollway up` mounts it on its API
port), so this command starts nothing: it prints the URL, checks that the control plane
answers there, says in one line what the page will show, and with --open hands the URL
to the system's browser.
"""

from __future__ import annotations

import webbrowser
from typing import Any

import httpx
import typer

from tollway.cli import credentials
from tollway.cli.apply import server_url


def _get(url: str) -> httpx.Response:
    try:
        return httpx.get(url, timeout=10.0)
    except httpx.HTTPError as exc:
        base = url.split("/v1/")[0].split("/dashboard")[0]
        typer.echo(f"tollway dashboard: cannot reach the control plane at {base} "
                   f"({type(exc).__name__}); start it with `tollway up DIR` or pass "
                   "--server URL", err=True)
        raise typer.Exit(1) from None


def _session(base: str) -> str | None:
    """A 12 h admin session for the browser (`#token=` in the URL's fragment, which no
    server sees), when this machine holds the admin credential; None otherwise."""
    headers = credentials.headers(base)
    if not headers:
        return None
    try:
        r = httpx.post(f"{base}/v1/tokens", json={"dashboard": True}, headers=headers,
                       timeout=10.0)
    except httpx.HTTPError:
        return None
    return str(r.json()["token"]) if r.status_code == 200 else None


def summary(mesh: dict[str, Any], rollouts: dict[str, Any]) -> str:
    """One line: proxies by sync status, rollouts by phase, config revision."""
    s = mesh.get("summary") or {}
    parts = [f"{s.get('proxies', 0)} proxies"]
    parts += [f"{s[k]} {k}" for k in ("synced", "stale", "nacked", "disconnected") if s.get(k)]
    items = rollouts.get("items") or []
    phases = ", ".join(f"{i['namespace']}/{i['name']} {i['phase']}" for i in items[:5])
    more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
    roll = f"{len(items)} rollouts: {phases}{more}" if items else "no rollouts"
    return f"{', '.join(parts)}; {roll}; config revision {mesh.get('revision', '?')}"


def register(app: typer.Typer) -> None:
    @app.command("dashboard")
    def dashboard(
        server: str | None = typer.Option(
            None, "--server", help="Control plane URL (default $TOLLWAY_SERVER or "
            "http://127.0.0.1:15010)."),
        open_browser: bool = typer.Option(
            False, "--open", help="Also open the dashboard in the system's web browser."),
    ) -> None:
        """Print the URL of the web dashboard (service graph, rollouts, proxies) and check it."""
        base = server_url(server)
        url = f"{base}/dashboard"
        page = _get(url)
        if page.status_code == 404:
            typer.echo(f"tollway dashboard: the control plane at {base} does not serve a "
                       "dashboard (a tollway without it?); run `tollway up DIR` from this "
                       "version", err=True)
            raise typer.Exit(1)
        if page.status_code != 200:
            typer.echo(f"tollway dashboard: {url} answered HTTP {page.status_code}; see the "
                       "control plane's log", err=True)
            raise typer.Exit(1)
        mesh = _get(f"{base}/v1/dashboard/mesh")
        rollouts = _get(f"{base}/v1/dashboard/rollouts")
        typer.echo(f"dashboard: {url}")
        if mesh.status_code == 200 and rollouts.status_code == 200:
            typer.echo(summary(mesh.json(), rollouts.json()))
        session = _session(base)
        if session:
            url = f"{url}#token={session}"
            typer.echo(f"to act (promote, abort, ...) open {url} (a session valid 12 h)")
        if open_browser and not webbrowser.open(url):
            typer.echo("no web browser found here; open the URL above yourself", err=True)
