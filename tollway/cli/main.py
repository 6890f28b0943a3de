"""The `tollway` app: each command group lives in its own module with `register(app)`."""

from __future__ import annotations

import importlib
import sys

import typer

app = typer.Typer(
    name="tollway",
    help="Tollway: a service mesh with progressive delivery.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish)
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tollway {_package_version()}")
        raise typer.Exit(0)


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tollway")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Tollway: a service mesh with progressive delivery."""


# Modules under tollway.cli that contribute commands, in help order.
COMMAND_MODULES = (
    "check",  # validate, analyze
    "demo",  # demo
    "up",  # up
    "apply",  # apply, delete, get
    "proxy",  # proxy
    "proxy_config",  # proxy-config
    "status",  # proxy-status
    "authz",  # authz check
    "rollout",  # rollout ...
    "token",  # token create
    "dashboard",  # dashboard
    "loadtest",  # loadtest (hey-style)
    "demoapp",  # demo-app (the bundled example workload)
    "devcluster",  # dev cluster up|down (a local Kubernetes)
    "controlplane",  # control-plane --kubernetes
    "iptables",  # iptables (a pod's traffic capture, as istio-init)
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
    from tollway.cli import helpstyle

    command = helpstyle.tidy(typer.main.get_command(app))
    try:
        command(prog_name="tollway")
    except KeyboardInterrupt:
        sys.exit(130)
