"""`tollway validate` and `tollway analyze`: findings on stdout, exit 0/1/2.

Each finding prints as `FILE:LINE: KIND/NAME: FIELD.PATH: severity: message`; the last line
is a one-line summary. Exit 0 when nothing is an error (warnings allowed), 1 when something
is, 2 on a usage error (no path, or a path that does not exist).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import typer

from tollway.config.analyze import analyze
from tollway.config.findings import Finding, Severity
from tollway.config.load import LoadResult, load_paths

_PATHS = typer.Argument(None, help="Manifest files or folders (*.yaml, *.yml, *.json).")


def _usage(command: str, paths: list[str] | None) -> list[str]:
    if not paths:
        typer.echo(f"tollway {command}: give at least one manifest file or folder, "
                   f"e.g. `tollway {command} examples/canary`", err=True)
        raise typer.Exit(2)
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        typer.echo(f"tollway {command}: no such file or folder: {missing[0]}", err=True)
        raise typer.Exit(2)
    return paths


def _ordered(result: LoadResult, findings: Iterable[Finding]) -> list[Finding]:
    rank = {f: i for i, f in enumerate(result.files)}
    return sorted(findings, key=lambda f: (rank.get(f.file, len(rank)), f.file, f.doc, f.line))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def report(result: LoadResult, findings: list[Finding]) -> int:
    """Print findings and the summary; return the exit code."""
    for f in _ordered(result, findings):
        typer.echo(f.render())
    errors = sum(1 for f in findings if f.severity is Severity.ERROR)
    warnings = sum(1 for f in findings if f.severity is Severity.WARNING)
    infos = sum(1 for f in findings if f.severity is Severity.INFO)
    summary = (f"{_plural(len(result.files), 'file')}, "
               f"{_plural(len(result.resources), 'resource')}: "
               f"{_plural(errors, 'error')}, {_plural(warnings, 'warning')}")
    if infos:
        summary += f", {infos} info"
    typer.echo(summary)
    return 1 if errors else 0


def validate(paths: list[str] | None = _PATHS) -> None:
    """Check manifests one by one: syntax, fields, types, values."""
    result = load_paths(_usage("validate", paths))
    raise typer.Exit(report(result, list(result.findings)))


def analyze_command(paths: list[str] | None = _PATHS) -> None:
    """Validate, then check the resources against each other (as `istioctl analyze`)."""
    result = load_paths(_usage("analyze", paths))
    findings = list(result.findings) + analyze(result.resources)
    raise typer.Exit(report(result, findings))


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
    app.command("analyze")(analyze_command)
