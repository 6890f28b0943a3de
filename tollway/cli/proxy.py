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

import msgspec
import typer

from tollway.cli import meshflag
from tollway.config.meshconfig import MeshConfig
from tollway.snapshot import codec, types


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def load_config(path: Path, port: int | None, mesh_config: MeshConfig | None = None
                ) -> types.ProxyConfig:
    """A snapshot JSON file, or manifests (a file or folder of YAML) translated standalone;
    `mesh_config` (--mesh-config) replaces the snapshot's mesh settings (and, for
    manifests, gives the telemetry defaults)."""
    from tollway.control.translate.mesh import mesh_settings

    mesh = mesh_settings(mesh_config) if mesh_config is not None else None
    if not path.exists():
        _fail(f"{path} does not exist; pass --config with a snapshot JSON or manifests.")
    if path.is_file() and path.suffix == ".json":
        try:
            cfg = codec.decode(path.read_bytes())
        except codec.SnapshotError as exc:
            _fail(f"{path}: {exc}")
            raise  # unreachable
        if mesh is not None:
            from tollway.control import translate

            cfg = translate.with_version(msgspec.structs.replace(cfg, mesh=mesh))
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
            result.resources, listen_port=port if port is not None else 15001,
            mesh=mesh or translate.DEFAULT_MESH,
            mesh_config=mesh_config or translate.DEFAULT_MESH_CONFIG,
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


def _usage(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def vm_argv(control_plane: str | None, labels: list[str], inbound_port: int | None,
            app_port: int | None, service_port: int | None, address: str | None,
            port: int | None, capture_port: int | None = None,
            status_port: int | None = None) -> list[str]:
    """The VM-mode flags for `python -m tollway.proxy`, checked (exit 2, one sentence).

    With --control-plane, `--port` is the outbound listener the app sends through, and
    `--inbound-port` + `--app-port` make the app reachable from the mesh (registered as
    a WorkloadEntry with these labels and this address).
    """
    vm_only = {"--label": labels, "--inbound-port": inbound_port, "--app-port": app_port,
               "--service-port": service_port, "--address": address,
               "--capture-port": capture_port, "--status-port": status_port}
    if control_plane is None:
        used = [flag for flag, value in vm_only.items() if value]
        if used:
            _usage(f"{', '.join(used)} only apply with --control-plane URL (VM mode).")
        return []
    for item in labels:
        key, sep, _value = item.partition("=")
        if not sep or not key:
            _usage(f"--label {item!r} is not KEY=VALUE (for example --label app=reviews).")
    if (inbound_port is None) != (app_port is None):
        _usage("--inbound-port and --app-port go together: the inbound listener forwards "
               "to the app's port.")
    if service_port is not None and inbound_port is None:
        _usage("--service-port needs --inbound-port and --app-port.")
    if capture_port is not None and inbound_port is not None:
        _usage("--capture-port (a pod's captured inbound) and --inbound-port (a VM's "
               "inbound to one app port) exclude each other; give one.")
    argv: list[str] = []
    for item in labels:
        argv += ["--label", item]
    for flag, value in (("--inbound-port", inbound_port), ("--app-port", app_port),
                        ("--service-port", service_port), ("--address", address),
                        ("--outbound-port", port), ("--capture-port", capture_port),
                        ("--status-port", status_port)):
        if value is not None:
            argv += [flag, str(value)]
    return argv


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
        token_file: Path = typer.Option(
            None, "--token-file",
            help="This workload's credential (VM mode): the output of `tollway token create "
            "--namespace NS --service-account SA`, in a file only you can read."),
        label: list[str] = typer.Option(
            [], "--label", help="KEY=VALUE label of this workload (repeatable; VM mode)."),
        inbound_port: int = typer.Option(
            None, "--inbound-port", min=1, max=65535,
            help="Inbound listener other proxies reach the app through (VM mode)."),
        app_port: int = typer.Option(
            None, "--app-port", min=1, max=65535,
            help="Port of the app beside this proxy (VM mode; needs --inbound-port)."),
        service_port: int = typer.Option(
            None, "--service-port", min=1, max=65535,
            help="Service port clients name for this app (VM mode; default 8080)."),
        address: str = typer.Option(
            None, "--address",
            help="Address other proxies reach this one at (VM mode; default 127.0.0.1)."),
        mesh_config: Path = typer.Option(None, "--mesh-config", help=meshflag.HELP),
        capture_port: int = typer.Option(
            None, "--capture-port", min=1, max=65535,
            help="In a pod with capture rules: the port inbound is redirected to (15006); "
            "the proxy listens on 0.0.0.0 there and serves each connection by the port "
            "it was sent to."),
        status_port: int = typer.Option(
            None, "--status-port", min=1, max=65535,
            help="In a pod: 0.0.0.0 port for /healthz/ready and the app's rewritten probes "
            "(/app-health/..., from ISTIO_KUBE_APP_PROBERS; 15020)."),
        drain_seconds: float = typer.Option(
            0.0, "--drain-seconds", min=0.0,
            help="After SIGTERM, keep accepting and serving this long, not ready and with "
            "keep-alive off, before closing the listeners (Istio's terminationDrainDuration; "
            "the injected sidecar uses 5)."),
    ) -> None:
        """Run the sidecar / gateway proxy."""
        if config is None and control_plane is None:
            typer.echo("error: give --config FILE or --control-plane URL.", err=True)
            raise typer.Exit(2)
        if control_plane is not None and not workload:
            typer.echo("error: --control-plane needs --workload NAME.", err=True)
            raise typer.Exit(2)
        if mesh_config is not None and control_plane is not None:
            _usage("--mesh-config applies to --config; under --control-plane the control "
                   "plane's mesh config applies (tollway up --mesh-config FILE).")
        mesh = meshflag.mesh_from_flag(mesh_config, lambda line: typer.echo(line, err=True))
        vm_args = vm_argv(control_plane, label, inbound_port, app_port, service_port,
                          address, port, capture_port, status_port)
        if control_plane is not None and token_file is None:
            typer.echo("error: --control-plane needs --token-file FILE: the workload "
                       "credential from `tollway token create --namespace "
                       f"{namespace} --service-account {service_account}`.", err=True)
            raise typer.Exit(2)
        if token_file is not None and not token_file.is_file():
            typer.echo(f"error: --token-file {token_file}: no such file.", err=True)
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
            cfg = load_config(config, port, mesh)
            if workers > 1 and any(lst.port == 0 for lst in cfg.listeners):
                typer.echo("error: --workers needs fixed listener ports (set --port).", err=True)
                raise typer.Exit(2)
            fd, snap_path = tempfile.mkstemp(prefix="tollway-snapshot-", suffix=".json")
            with os.fdopen(fd, "wb") as f:
                f.write(codec.encode(cfg))
            argv += ["--config", snap_path, "--delete-config"]
        if access_log:
            argv.append("--access-log")
        if drain_seconds:
            argv += ["--drain-seconds", f"{drain_seconds:g}"]
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
            argv += ["--token-file", str(token_file.resolve())]
            argv += vm_args
        sys.stdout.flush()
        os.execv(sys.executable, argv)
