"""`tollway loadtest`: hey's flags (-z -n -q -c -m -H -d -T -t), Tollway's bundled load tester."""

from __future__ import annotations

import asyncio

import typer

from tollway.loadtest import hey
from tollway.loadtest import run as load_run


def register(app: typer.Typer) -> None:
    @app.command("loadtest", context_settings={"allow_extra_args": True,
                                               "ignore_unknown_options": True})
    def loadtest(
        ctx: typer.Context,
        via: str | None = typer.Option(None, "--via", help="Send through this proxy "
                                       "(host:port), keeping the URL's host as Host."),
    ) -> None:
        """Put load on a URL, e.g. `tollway loadtest -z 30s -q 10 -c 2 http://api:8080/`."""
        try:
            spec = hey.parse(list(ctx.args))
        except hey.HeyError as exc:
            typer.echo(f"tollway loadtest: {exc}", err=True)
            raise typer.Exit(2) from None
        summary = asyncio.run(load_run.run(spec, via=via))
        typer.echo(summary.render())
