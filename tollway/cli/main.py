"""The `tollway` app: each command group lives in its own module with `register(app)`."""

from __future__ import annotations

import importlib
import sys

import typer

app = typer.Typer(
    name="tollway",
    help="Tollway: a service mesh with progressive delivery.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

@app.callback()
def _root() -> None:
    """Tollway: a service mesh with progressive delivery."""


# Modules under tollway.cli that contribute commands, in help order.
COMMAND_MODULES = (
    "check",  # validate, analyze
    "demo",  # demo
    "up",  # up
    "apply",  # apply, delete, get
    "proxy",  # proxy, proxy-config
    "status",  # proxy-status
    "authz",  # authz check
    "rollout",  # rollout ...
    "dashboard",  # dashboard
    "loadtest",  # loadtest (hey-style)
    "demoapp",  # demo-app (the bundled example workload)
)


def _register_all() -> None:
    for name in COMMAND_MODULES:
        modname = f"tollway.cli.{name}"
        try:
            module = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if exc.name == modname:  # that command group is not part of this build
                continue
            raise
        module.register(app)


_register_all()


def main() -> None:
    """Entry point: usage errors exit 2, as click does."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
