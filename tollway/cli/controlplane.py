"""`tollway control-plane --kubernetes`: run the control plane against a Kubernetes API.

    tollway control-plane --kubernetes --kubeconfig ~/.kube/config --context dev

In a pod (no --kubeconfig) it uses the pod's service account. Kubernetes is the store:
`kubectl apply` of a VirtualService reaches every sidecar, and the resource's
`status.conditions[type=Reconciled]` says whether it was accepted or why not.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from tollway.kube import inject


def control_plane(
    kubernetes: bool = typer.Option(False, "--kubernetes",
                                    help="Take config and endpoints from a Kubernetes API."),
    kubeconfig: Path | None = typer.Option(None, "--kubeconfig",
                                           help="Kubeconfig file (default: in-cluster, "
                                                "then $KUBECONFIG / ~/.kube/config)."),
    context: str | None = typer.Option(None, "--context", help="Kubeconfig context."),
    listen: str = typer.Option("0.0.0.0:15010", "--listen",
                               help="HOST:PORT for sidecars and the CLI (port 0: any)."),
    state_dir: Path = typer.Option(Path(".tollway/control-plane"), "--state-dir",
                                   help="Signing key and CA files."),
    namespace: str | None = typer.Option(
        None, "--namespace", help="Where the CA Secret and the leader Lease live (default: "
                                  "the pod's namespace, else tollway-system)."),
    identity: str | None = typer.Option(None, "--id", help="This replica's name in the Lease "
                                                          "(default: $POD_NAME, else host-pid)."),
    webhook_listen: str | None = typer.Option(
        None, "--webhook-listen", help="HOST:PORT to serve the validating webhook on (HTTPS, "
                                       "POST /validate); off when not given."),
    webhook_certs: Path | None = typer.Option(
        None, "--webhook-cert-dir", help="tls.crt and tls.key for the webhook (made, with "
                                         "ca.crt, when absent; default STATE/webhook)."),
    extra_host: list[str] = typer.Option([], "--host-name",
                                         help="A DNS name sidecars call this plane by "
                                              "(repeatable), e.g. tollway.tollway-system.svc."),
    injection_config: Path | None = typer.Option(
        None, "--injection-config",
        help="YAML of the injected sidecar: image, imagePullPolicy, command, resources, "
             "initResources, rewriteAppHTTPProbers (the chart renders it from its `sidecar` "
             "values); default: image tollway:latest, command [tollway]."),
    rollouts: bool = typer.Option(True, "--rollouts/--no-rollouts",
                                  help="Reconcile Rollouts and Canaries (on the Lease holder "
                                       "only)."),
    prometheus_url: str | None = typer.Option(
        None, "--prometheus-url", help="Prometheus for analyses whose provider names no "
                                       "address (default $TOLLWAY_PROMETHEUS_URL)."),
    drain_seconds: float = typer.Option(
        0.0, "--drain-seconds", min=0.0,
        help="After SIGTERM, give up the Lease and keep serving webhooks and sidecars this "
             "long before exiting, while the Service's endpoints drop this pod (the chart "
             "sets 5)."),
) -> None:
    """Run the control plane with Kubernetes as its store."""
    import httpx2

    from tollway.control.proxies import split_hostport
    from tollway.kube import kinds
    from tollway.kube.api import Api, ApiUnavailable, load_config
    from tollway.kube.casecret import CASecretError
    from tollway.kube.run import KubePlane
    from tollway.rollout.cluster import ClusterRollouts
    from tollway.rollout.service import error_retry_setting

    if not kubernetes:
        typer.echo("tollway control-plane: only --kubernetes is supported (for one machine, "
                   "use `tollway up DIR`)", err=True)
        raise typer.Exit(2)
    try:
        host, port = split_hostport(listen)
    except ValueError as exc:
        typer.echo(f"tollway control-plane: --listen: {exc}", err=True)
        raise typer.Exit(2) from None
    hook: tuple[str, int] | None = None
    if webhook_listen is not None:
        try:
            hook = split_hostport(webhook_listen)
        except ValueError as exc:
            typer.echo(f"tollway control-plane: --webhook-listen: {exc}", err=True)
            raise typer.Exit(2) from None
    cp_namespace = namespace or _pod_namespace()
    try:
        injection = _injection_settings(injection_config, cp_namespace)
    except ValueError as exc:
        typer.echo(f"tollway control-plane: --injection-config {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        config = load_config(kubeconfig, context)
    except ApiUnavailable as exc:
        typer.echo(f"tollway control-plane: {exc}", err=True)
        raise typer.Exit(2) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                                                   "%(message)s")
    for chatty in ("httpx2", "httpx"):  # not a line per API request or analysis query
        logging.getLogger(chatty).setLevel(logging.WARNING)

    async def main() -> int:
        kp = KubePlane(Api(config), state_dir, host=host, port=port,
                       extra_hosts=tuple(extra_host), echo=lambda s: typer.echo(s),
                       namespace=cp_namespace,
                       identity=identity or os.environ.get("POD_NAME", ""),
                       webhook=hook, webhook_certs=webhook_certs, injection=injection,
                       watched=kinds.watched(rollouts=rollouts), drain=drain_seconds)
        if rollouts:
            cr = ClusterRollouts(kp.api, kp.store, kp.raw,
                                 prometheus_url=prometheus_url
                                 or os.environ.get("TOLLWAY_PROMETHEUS_URL"),
                                 error_retry=error_retry_setting(None))
            kp.listeners.append(cr.on_events)
            kp.leader_tasks.append(cr.run)
        kp.install_signals()
        try:
            return await kp.run()
        except OSError as exc:
            typer.echo(f"tollway control-plane: cannot listen on {listen}: {exc}", err=True)
            return 1
        except CASecretError as exc:
            typer.echo(f"tollway control-plane: {exc}", err=True)
            return 1
        except httpx2.HTTPError as exc:
            typer.echo(f"tollway control-plane: cannot reach the Kubernetes API at "
                       f"{config.cluster.server}: {exc or type(exc).__name__}; check "
                       "--kubeconfig/--context and that the cluster is up", err=True)
            return 1

    raise typer.Exit(asyncio.run(main()))


def _pod_namespace() -> str:
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    try:
        return path.read_text().strip() or "tollway-system"
    except OSError:
        return "tollway-system"


def register(app: typer.Typer) -> None:
    app.command("control-plane")(control_plane)


def _injection_settings(path: Path | None, namespace: str) -> inject.Settings:
    """inject.Settings from the file (ValueError: one sentence naming the file/key)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    from tollway.kube import inject

    if path is None:
        return inject.Settings(control_plane_namespace=namespace)
    try:
        data = YAML(typ="safe", pure=True).load(path.read_text())
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it ({exc.strerror})") from None
    except YAMLError as exc:
        raise ValueError(f"{path}: not YAML ({exc})") from None
    try:
        return inject.from_config(data, str(path), namespace)
    except inject.InjectError as exc:
        raise ValueError(str(exc)) from None
