"""`tollway proxy`: run the data plane from a snapshot or manifests, or follow a control plane.

The CLI validates and translates here (manifests -> snapshot, with one-sentence errors),
then execs the lean sidecar process `python -m tollway.proxy`, which imports only the
proxy, snapshot and kit: a sidecar does not carry the CLI, the config models or the
control plane in its memory. Exit codes: 2 usage, 1 a bad config, 0 after a clean drain.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import typer

from tollway.snapshot import codec, types


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def load_config(path: Path, port: int | None) -> types.ProxyConfig:
    """A snapshot JSON file, or manifests (a file or folder of YAML) translated standalone."""
    if not path.exists():
        _fail(f"{path} does not exist; pass --config with a snapshot JSON or manifests.")
    if path.is_file() and path.suffix == ".json":
        try:
            cfg = codec.decode(path.read_bytes())
        except codec.SnapshotError as exc:
            _fail(f"{path}: {exc}")
            raise  # unreachable
        return override_port(cfg, port) if port is not None else cfg
    from tollway.config import load
    from tollway.control import translate

    result = load.load_paths([path])
    if not result.ok:
        errors = [f for f in result.findings if str(f.severity).lower() == "error"]
        first = errors[0] if errors else result.findings[0]
        _fail(first.render())
    try:
        return translate.build_standalone(
            result.resources, listen_port=port if port is not None else 15001
        )
    except Exception as exc:  # translate errors are one sentence for the user
        _fail(f"{path}: cannot build a proxy config from these manifests: {exc}")
        raise


def override_port(cfg: types.ProxyConfig, port: int) -> types.ProxyConfig:
    """--port moves the first outbound (or gateway) listener."""
    listeners = list(cfg.listeners)
    for i, lst in enumerate(listeners):
        if lst.kind in ("outbound", "gateway"):
            listeners[i] = types.Listener(**{**_fields(lst), "port": port})
            break
    return types.ProxyConfig(**{**_fields(cfg), "listeners": tuple(listeners)})


def _fields(obj: Any) -> dict[str, Any]:
    return {f: getattr(obj, f) for f in obj.__struct_fields__}


def register(app: typer.Typer) -> None:
    @app.command("proxy")
    def proxy(
        config: Path = typer.Option(None, "--config", help="Snapshot JSON or manifests."),
        port: int = typer.Option(None, "--port", help="Port of the outbound/gateway listener."),
        admin_port: int = typer.Option(15000, "--admin-port", help="Admin port (0: any)."),
        workers: int = typer.Option(
            1, "--workers", min=1, max=64, help="Processes sharing the ports (SO_REUSEPORT)."
        ),
        access_log: bool = typer.Option(False, "--access-log", help="JSON line per request."),
        control_plane: str = typer.Option(None, "--control-plane", help="Control plane URL."),
        workload: str = typer.Option(None, "--workload"),
        namespace: str = typer.Option("default", "--namespace"),
        node_name: str = typer.Option(None, "--node-name"),
        service_account: str = typer.Option("default", "--service-account"),
    ) -> None:
        """Run the sidecar / gateway proxy."""
        if config is None and control_plane is None:
            typer.echo("error: give --config FILE or --control-plane URL.", err=True)
            raise typer.Exit(2)
        if control_plane is not None and not workload:
            typer.echo("error: --control-plane needs --workload NAME.", err=True)
            raise typer.Exit(2)
        argv = [
            sys.executable,
            "-m",
            "tollway.proxy",
            "--admin-port",
            str(admin_port),
            "--workers",
            str(workers),
        ]
        if config is not None:
            cfg = load_config(config, port)
            if workers > 1 and any(lst.port == 0 for lst in cfg.listeners):
                typer.echo("error: --workers needs fixed listener ports (set --port).", err=True)
                raise typer.Exit(2)
            fd, snap_path = tempfile.mkstemp(prefix="tollway-snapshot-", suffix=".json")
            with os.fdopen(fd, "wb") as f:
                f.write(codec.encode(cfg))
            argv += ["--config", snap_path, "--delete-config"]
        if access_log:
            argv.append("--access-log")
        if control_plane is not None:
            argv += [
                "--control-plane",
                control_plane,
                "--workload",
                workload,
                "--namespace",
                namespace,
                "--service-account",
                service_account,
            ]
            if node_name:
                argv += ["--node-name", node_name]
        sys.stdout.flush()
        os.execv(sys.executable, argv)
