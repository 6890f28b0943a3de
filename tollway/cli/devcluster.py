"""`tollway dev cluster up|down`: a real Kubernetes API with running pods, no containers."""

from __future__ import annotations

from pathlib import Path

import typer

DEFAULT_STATE = Path(".tollway/cluster")


def register(app: typer.Typer) -> None:
    dev = typer.Typer(help="Developer tools: a local Kubernetes to try Tollway on.",
                      no_args_is_help=True)
    cluster = typer.Typer(help="A one-node Kubernetes (real apiserver, pods as processes).",
                          no_args_is_help=True)
    dev.add_typer(cluster, name="cluster")
    app.add_typer(dev, name="dev")

    @cluster.command("up")
    def up(state_dir: Path = typer.Option(DEFAULT_STATE, "--state-dir",
                                          help="Where the cluster keeps certs, data and logs."),
           ) -> None:
        """Build (once) and start etcd, the control plane, kube-proxy, CoreDNS and a node."""
        from tollway.devcluster import layout
        from tollway.devcluster import up as upmod
        from tollway.devcluster.build import BuildError
        from tollway.devcluster.hostnet import HostNetError

        try:
            rc = upmod.up(layout.Layout.at(state_dir), lambda s: typer.echo(s))
        except (upmod.UpError, BuildError, HostNetError) as exc:
            typer.echo(f"tollway dev cluster up: {exc}", err=True)
            raise typer.Exit(1) from None
        raise typer.Exit(rc)

    @cluster.command("env")
    def env(state_dir: Path = typer.Option(DEFAULT_STATE, "--state-dir",
                                           help="The state dir given to `up`."),
            ) -> None:
        """Print shell exports for KUBECONFIG and the matching kubectl: eval "$(... env)"."""
        import shlex

        from tollway.devcluster import build, layout, procs

        lay = layout.Layout.at(state_dir)
        if procs.read_pidfile(lay.pidfile("supervisor")) is None:
            typer.echo(f"tollway dev cluster env: no dev cluster is running at {lay.root}; run "
                       f"`tollway dev cluster up --state-dir {state_dir}` first", err=True)
            raise typer.Exit(1)
        typer.echo(f"export KUBECONFIG={shlex.quote(str(lay.kubeconfig))}")
        typer.echo(f'export PATH={shlex.quote(str(build.bin_dir()))}:"$PATH"')

    @cluster.command("down")
    def down(state_dir: Path = typer.Option(DEFAULT_STATE, "--state-dir",
                                            help="The state dir given to `up`."),
             ) -> None:
        """Stop every process and remove every netns, veth, bridge and rule `up` made."""
        from tollway.devcluster import build, layout, teardown
        from tollway.devcluster.hostnet import HostNetError
        from tollway.devcluster.up import UpError, require_root

        lay = layout.Layout.at(state_dir)
        try:
            require_root()
            rc = teardown.down(lay, build.bin_dir(), lambda s: typer.echo(s))
        except (UpError, HostNetError, OSError) as exc:
            typer.echo(f"tollway dev cluster down: {exc}", err=True)
            raise typer.Exit(1) from None
        raise typer.Exit(rc)
