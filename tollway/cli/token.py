"""`tollway token create`: a workload credential for a proxy `tollway up` did not start.

    tollway token create --namespace payments --service-account payment-service > t
    chmod 600 t; tollway proxy --control-plane URL --token-file t --workload ...

Printed on stdout, nothing else, so it can be redirected into the file. Issued by the
running control plane (`POST /v1/tokens`, with the admin credential the CLI finds by
itself on the machine running `tollway up`), or offline from its state folder with
`--state-dir` (reads the signing key; needs no running control plane).
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from tollway.cli import apply
from tollway.control import auth

token_app = typer.Typer(help="Issue workload credentials (VM proxies).", no_args_is_help=True)


def _ttl(text: str) -> float | None:
    from tollway.kit.durations import DurationError, parse_duration

    if text in ("0", "never", ""):
        return None
    try:
        return parse_duration(text)
    except DurationError as exc:
        typer.echo(f"tollway token create: --ttl: {exc}", err=True)
        raise typer.Exit(2) from None


@token_app.command("create")
def create(
    namespace: str = typer.Option(..., "--namespace", "-n", help="The workload's namespace."),
    service_account: str = typer.Option(..., "--service-account",
                                        help="The service account it runs as."),
    ttl: str = typer.Option("8760h", "--ttl", help="Lifetime (e.g. 24h; 0 = no expiry)."),
    node: str | None = typer.Option(None, "--node", help="Bind it to one proxy's node name."),
    server: str | None = apply._SERVER,
    token: str | None = apply._TOKEN,
    state_dir: Path | None = typer.Option(
        None, "--state-dir", help="Mint offline with the signing key of this state folder."),
) -> None:
    """Print a token for NAMESPACE/SERVICE_ACCOUNT (a proxy's --token-file)."""
    lifetime = _ttl(ttl)
    if state_dir is not None:
        key_file = state_dir / auth.KEY_FILE
        if not key_file.exists():
            typer.echo(f"tollway token create: {key_file} does not exist; give the state "
                       "folder of a `tollway up` (default DIR/.tollway)", err=True)
            raise typer.Exit(2)
        signer = auth.TokenSigner(auth.load_or_create_key(state_dir))
        try:
            typer.echo(signer.workload(namespace, service_account, time.time(),
                                       node=node or "", ttl=lifetime))
        except ValueError as exc:
            typer.echo(f"tollway token create: {exc}", err=True)
            raise typer.Exit(2) from None
        return
    body: dict[str, object] = {"namespace": namespace, "service_account": service_account}
    if lifetime is not None:
        body["ttl"] = lifetime
    if node:
        body["node"] = node
    response = apply.request("POST", apply.server_url(server) + "/v1/tokens", json=body,
                             token=token)
    if response.status_code != 200:
        typer.echo(f"tollway token create: {response.text.strip()}", err=True)
        raise typer.Exit(1)
    typer.echo(response.json()["token"])


def register(app: typer.Typer) -> None:
    app.add_typer(token_app, name="token")
