"""`tollway loadtest`: hey's flags (-n -c -q -z -m -H -d -T -t), Tollway's bundled load tester.

The flags are declared here so `--help` lists them as hey's own help does; the values go
to `loadtest.hey.parse` unchanged, the same parser Flagger's load-test webhooks use, so
both accept exactly the same command lines. Ctrl-C stops the load and still prints the
summary of what was sent (exit 130), as hey does.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

import typer

from tollway.loadtest import hey
from tollway.loadtest import run as load_run

STOP_GRACE = 2.0  # seconds for in-flight requests after Ctrl-C before they are cut


def _opt(flag: str, metavar: str, help_text: str) -> str | None:
    return typer.Option(None, flag, metavar=metavar, help=help_text)  # type: ignore[no-any-return]


async def _run(spec: hey.LoadSpec, via: str | None) -> tuple[load_run.Summary, bool]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    summary = load_run.Summary()
    started = time.monotonic()
    task = asyncio.create_task(load_run.run(spec, via=via, stop=stop, summary=summary))
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if not task.done():
        done, _ = await asyncio.wait({task}, timeout=STOP_GRACE)
        if not done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        summary.elapsed = time.monotonic() - started
    stopped.cancel()
    return summary, stop.is_set()


def register(app: typer.Typer) -> None:
    @app.command("loadtest")
    def loadtest(
        url: str = typer.Argument(..., metavar="URL", help="e.g. http://api:8080/health"),
        n: str | None = _opt("-n", "N", "Number of requests to run (default 200; "
                             "ignored with -z)."),
        c: str | None = _opt("-c", "N", "Number of workers to run concurrently (default 50)."),
        q: str | None = _opt("-q", "RATE", "Rate limit, in requests per second, per worker "
                             "(default: none)."),
        z: str | None = _opt("-z", "DURATION", "Send for this long, e.g. 10s or 3m; -n is "
                             "then ignored."),
        m: str | None = _opt("-m", "METHOD", "HTTP method: GET, POST, PUT, DELETE, HEAD, "
                             "OPTIONS (default GET)."),
        h: list[str] = typer.Option([], "-H", metavar="'NAME: VALUE'",
                                    help="A request header; repeatable."),
        d: str | None = _opt("-d", "BODY", "Request body."),
        t_type: str | None = _opt("-T", "TYPE", "Content-Type of the body, e.g. "
                                  "application/json."),
        t: str | None = _opt("-t", "SECONDS", "Timeout of each request (default 20)."),
        via: str | None = typer.Option(None, "--via", metavar="HOST:PORT",
                                       help="Send through this proxy, keeping the URL's "
                                       "host as Host (e.g. the mesh's client proxy)."),
    ) -> None:
        """Put load on a URL, as hey does: `tollway loadtest -z 30s -q 10 -c 2 URL`.

        Ctrl-C stops early and prints the summary so far."""
        argv: list[str] = []
        for flag, value in (("-n", n), ("-c", c), ("-q", q), ("-z", z), ("-m", m),
                            ("-d", d), ("-T", t_type), ("-t", t)):
            if value is not None:
                argv += [flag, value]
        for header in h:
            argv += ["-H", header]
        try:
            spec = hey.parse([*argv, url])
        except hey.HeyError as exc:
            typer.echo(f"tollway loadtest: {exc}", err=True)
            raise typer.Exit(2) from None
        summary, interrupted = asyncio.run(_run(spec, via))
        typer.echo(summary.render() + ("  (stopped by Ctrl-C)" if interrupted else ""))
        if interrupted:
            raise typer.Exit(130)
