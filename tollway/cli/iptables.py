"""`tollway iptables`: install Istio-style traffic capture in this network namespace.

What the injected init container runs (as `istio-iptables` does in `istio-init`), with
istio-iptables' short flags so an Istio user's `-i '*' -x … -b '*' -d …` reads the same:

    tollway iptables -p 15001 -z 15006 -u 1337 -g 1337 -m REDIRECT -i '*' -b '*' -d 15090
    tollway iptables --dry-run ...     # print the iptables-restore input, change nothing

Exit codes: 2 a bad flag (one sentence naming it), 1 the rules could not be installed
(iptables missing, no NET_ADMIN, rules already there): nothing is half-applied.
"""

from __future__ import annotations

import typer

from tollway.capture import rules


def register(app: typer.Typer) -> None:
    @app.command("iptables")
    def iptables(
        outbound_port: int = typer.Option(
            rules.OUTBOUND_PORT, "--outbound-port", "-p",
            help="The sidecar's outbound listener; captured outbound TCP goes there."),
        inbound_port: int = typer.Option(
            rules.INBOUND_PORT, "--inbound-port", "-z",
            help="The sidecar's inbound listener; captured inbound TCP goes there."),
        proxy_uid: int = typer.Option(
            rules.PROXY_UID, "--proxy-uid", "-u",
            help="The sidecar's user: its own traffic is never captured."),
        proxy_gid: int = typer.Option(
            None, "--proxy-gid", "-g", help="The sidecar's group (default: the uid)."),
        mode: str = typer.Option(
            "REDIRECT", "--interception-mode", "-m", help="Only REDIRECT is supported."),
        include_ranges: str = typer.Option(
            rules.WILDCARD, "--include-outbound-ip-ranges", "-i",
            help="CIDRs whose outbound TCP is captured ('*': all)."),
        exclude_ranges: str = typer.Option(
            "", "--exclude-outbound-ip-ranges", "-x", help="CIDRs never captured."),
        include_inbound: str = typer.Option(
            rules.WILDCARD, "--include-inbound-ports", "-b",
            help="Inbound ports captured ('*': all; empty: none)."),
        exclude_inbound: str = typer.Option(
            str(rules.ADMIN_PORT), "--exclude-inbound-ports", "-d",
            help="Inbound ports never captured (with -b '*')."),
        include_outbound_ports: str = typer.Option(
            "", "--include-outbound-ports", "-q",
            help="Outbound ports captured whatever the destination."),
        exclude_outbound_ports: str = typer.Option(
            "", "--exclude-outbound-ports", "-o", help="Outbound ports never captured."),
        dry_run: bool = typer.Option(
            False, "--dry-run", help="Print the iptables-restore input and change nothing."),
    ) -> None:
        """Capture this network namespace's TCP into the sidecar (Istio's istio-init)."""
        if mode.upper() != "REDIRECT":
            typer.echo(f"error: --interception-mode {mode}: only REDIRECT is supported "
                       "(TPROXY is not implemented).", err=True)
            raise typer.Exit(2)
        names = {
            "outbound_port": "--outbound-port", "inbound_port": "--inbound-port",
            "proxy_uid": "--proxy-uid", "proxy_gid": "--proxy-gid",
            "include_outbound_ranges": "--include-outbound-ip-ranges",
            "exclude_outbound_ranges": "--exclude-outbound-ip-ranges",
            "include_inbound_ports": "--include-inbound-ports",
            "exclude_inbound_ports": "--exclude-inbound-ports",
            "include_outbound_ports": "--include-outbound-ports",
            "exclude_outbound_ports": "--exclude-outbound-ports",
        }
        try:
            capture = rules.checked(rules.Capture(
                outbound_port=outbound_port, inbound_port=inbound_port, proxy_uid=proxy_uid,
                proxy_gid=proxy_uid if proxy_gid is None else proxy_gid,
                include_outbound_ranges=include_ranges, exclude_outbound_ranges=exclude_ranges,
                include_inbound_ports=include_inbound, exclude_inbound_ports=exclude_inbound,
                include_outbound_ports=include_outbound_ports,
                exclude_outbound_ports=exclude_outbound_ports,
            ), names)
        except rules.CaptureError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        if dry_run:
            typer.echo(rules.restore_text(capture), nl=False)
            return
        from tollway.capture.apply import ApplyError, apply

        try:
            apply(capture)
        except ApplyError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        typer.echo(f"traffic captured: outbound TCP -> :{capture.outbound_port}, inbound "
                   f"-> :{capture.inbound_port}, uid/gid {capture.proxy_uid}/"
                   f"{capture.proxy_gid} exempt", err=True)
