"""The nat-table rules that send a pod's TCP through its sidecar, as Istio's `istio-init`.

Pure: settings in, `iptables-restore` text out. The chains and their order follow
istio-iptables (REDIRECT mode, IPv4) so that what users know from Istio's docs and
`iptables-save` output holds here:

- PREROUTING -p tcp -> ISTIO_INBOUND: excluded inbound ports RETURN, the rest (or only the
  included ports) -> ISTIO_IN_REDIRECT -> REDIRECT to the inbound port (15006).
- OUTPUT -> ISTIO_OUTPUT, in order: excluded outbound ports RETURN; the inbound
  passthrough source 127.0.0.6 on lo RETURNs; the proxy calling its own pod's IP through
  lo goes to ISTIO_IN_REDIRECT (so the local app still gets inbound policy); other local
  loopback traffic RETURNs (not when an included range is a loopback one: the user asked
  for it); the proxy's own traffic (uid/gid owner) RETURNs so it never loops; 127.0.0.1
  and excluded ranges RETURN; then ISTIO_REDIRECT (REDIRECT to 15001) for everything
  ('*') or only the included ranges / ports.

Istio ignores malformed CIDRs "for bug compatibility"; Tollway refuses them with a
sentence naming the flag or annotation, since a silently dropped exclusion would send
traffic the user meant to keep out through the proxy (and an include the other way).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

PROXY_UID = 1337
OUTBOUND_PORT = 15001
INBOUND_PORT = 15006
TUNNEL_PORT = 15008  # Istio's HBONE port: never captured, kept for parity with istio-init
ADMIN_PORT = 15090  # the sidecar's admin (readiness, stats): reached directly, never captured
INBOUND_PASSTHROUGH_SOURCE = "127.0.0.6/32"
LOCALHOST = "127.0.0.1/32"
MULTIPORT_MAX = 15  # the kernel's xt_multiport limit per rule

# Istio's annotations (traffic.sidecar.istio.io/...) -> the settings field they feed.
ANNOTATION_PREFIX = "traffic.sidecar.istio.io/"
ANNOTATIONS = {
    "includeOutboundIPRanges": "include_outbound_ranges",
    "excludeOutboundIPRanges": "exclude_outbound_ranges",
    "includeInboundPorts": "include_inbound_ports",
    "excludeInboundPorts": "exclude_inbound_ports",
    "includeOutboundPorts": "include_outbound_ports",
    "excludeOutboundPorts": "exclude_outbound_ports",
}
WILDCARD = "*"


class CaptureError(ValueError):
    """A setting that cannot become rules; the message names the flag or annotation."""


@dataclass(frozen=True)
class Capture:
    """What istio-iptables takes as flags (REDIRECT mode). Ranges and ports are normalised
    strings: '*' or a comma-separated list (empty: none)."""

    outbound_port: int = OUTBOUND_PORT
    inbound_port: int = INBOUND_PORT
    proxy_uid: int = PROXY_UID
    proxy_gid: int = PROXY_UID
    include_outbound_ranges: str = WILDCARD
    exclude_outbound_ranges: str = ""
    include_inbound_ports: str = WILDCARD
    exclude_inbound_ports: str = str(ADMIN_PORT)
    include_outbound_ports: str = ""
    exclude_outbound_ports: str = ""


def split(value: str) -> list[str]:
    """Istio's list syntax: comma separated, blanks ignored."""
    return [part.strip() for part in value.split(",") if part.strip()]


def parse_ports(value: str, name: str, *, wildcard: bool = False) -> str:
    """Normalise a port list ('*' only where Istio allows it); raise naming `name`."""
    value = value.strip()
    if value == WILDCARD:
        if wildcard:
            return WILDCARD
        raise CaptureError(f"{name}: '*' is not allowed here; list ports like '8080,9090'.")
    ports: list[str] = []
    for part in split(value):
        if not part.isdigit() or not 0 < int(part) < 65536:
            raise CaptureError(
                f"{name}: {part!r} is not a port (1-65535); write a list like '8080,9090'."
            )
        if str(int(part)) not in ports:
            ports.append(str(int(part)))
    return ",".join(ports)


def parse_ranges(value: str, name: str, *, wildcard: bool = False) -> str:
    """Normalise a CIDR list (IPv4; '*' only for the include list); raise naming `name`."""
    value = value.strip()
    if value == WILDCARD:
        if wildcard:
            return WILDCARD
        raise CaptureError(f"{name}: '*' is not allowed here; list CIDRs like '10.0.0.0/8'.")
    nets: list[str] = []
    for part in split(value):
        try:
            net = ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise CaptureError(
                f"{name}: {part!r} is not a CIDR; write a list like '10.96.0.0/12,192.168.0.0/16'."
            ) from None
        if net.version != 4:
            raise CaptureError(f"{name}: {part!r} is IPv6; Tollway captures IPv4 only.")
        if str(net) not in nets:
            nets.append(str(net))
    return ",".join(nets)


def _port(value: int, name: str) -> int:
    if not 0 < value < 65536:
        raise CaptureError(f"{name}: {value} is not a port (1-65535).")
    return value


def checked(capture: Capture, names: Mapping[str, str] | None = None) -> Capture:
    """The same settings, validated and normalised. `names` maps a field to what the user
    wrote it as (a flag or an annotation), for the error sentence."""
    label = {f: f.replace("_", "-") for f in Capture.__dataclass_fields__} | dict(names or {})
    for uid_field in ("proxy_uid", "proxy_gid"):
        if getattr(capture, uid_field) < 0:
            raise CaptureError(f"{label[uid_field]}: must be a user/group id (0 or more).")
    return replace(
        capture,
        outbound_port=_port(capture.outbound_port, label["outbound_port"]),
        inbound_port=_port(capture.inbound_port, label["inbound_port"]),
        include_outbound_ranges=parse_ranges(
            capture.include_outbound_ranges, label["include_outbound_ranges"], wildcard=True),
        exclude_outbound_ranges=parse_ranges(
            capture.exclude_outbound_ranges, label["exclude_outbound_ranges"]),
        include_inbound_ports=parse_ports(
            capture.include_inbound_ports, label["include_inbound_ports"], wildcard=True),
        exclude_inbound_ports=parse_ports(
            capture.exclude_inbound_ports, label["exclude_inbound_ports"]),
        include_outbound_ports=parse_ports(
            capture.include_outbound_ports, label["include_outbound_ports"]),
        exclude_outbound_ports=parse_ports(
            capture.exclude_outbound_ports, label["exclude_outbound_ports"]),
    )


def from_annotations(annotations: Mapping[str, str], base: Capture | None = None) -> Capture:
    """A pod's `traffic.sidecar.istio.io/*` annotations over `base`, checked.

    As Istio's injection template: the include/exclude range and include inbound port
    annotations replace the default, `excludeInboundPorts` is added to the sidecar's own
    ports (which must stay reachable), the outbound port lists are taken as written."""
    cap = base or Capture()
    changes: dict[str, Any] = {}
    names: dict[str, str] = {}
    for short, field in ANNOTATIONS.items():
        key = ANNOTATION_PREFIX + short
        names[field] = f"annotation {key}"
        if key not in annotations:
            continue
        value = str(annotations[key])
        if field == "exclude_inbound_ports":
            value = ",".join(split(cap.exclude_inbound_ports) + split(value))
        changes[field] = value
    return checked(replace(cap, **changes), names)


def _multiport(ports: list[str]) -> Iterable[str]:
    """`--dport P` or `-m multiport --dports a,b,…` in chunks the kernel accepts."""
    if len(ports) == 1:
        yield f"--dport {ports[0]}"
        return
    for i in range(0, len(ports), MULTIPORT_MAX):
        yield "-m multiport --dports " + ",".join(ports[i : i + MULTIPORT_MAX])


def _is_loopback(cidr: str) -> bool:
    return ipaddress.ip_network(cidr).network_address.is_loopback


def rules(capture: Capture) -> list[str]:
    """The nat-table rule lines (`-N …`, `-A …`) in istio-iptables' order. `capture` must
    come from `checked` or `from_annotations`."""
    out = [
        "-N ISTIO_INBOUND",
        "-N ISTIO_REDIRECT",
        "-N ISTIO_IN_REDIRECT",
        "-N ISTIO_OUTPUT",
        f"-A ISTIO_INBOUND -p tcp --dport {TUNNEL_PORT} -j RETURN",
        f"-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports {capture.outbound_port}",
        f"-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports {capture.inbound_port}",
    ]
    include_in = capture.include_inbound_ports
    if include_in:
        out.append("-A PREROUTING -p tcp -j ISTIO_INBOUND")
        if include_in == WILDCARD:
            excluded = split(capture.exclude_inbound_ports)
            if excluded:
                out += [f"-A ISTIO_INBOUND -p tcp {m} -j RETURN" for m in _multiport(excluded)]
            out.append("-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT")
        else:
            out += [f"-A ISTIO_INBOUND -p tcp --dport {p} -j ISTIO_IN_REDIRECT"
                    for p in split(include_in)]
    out.append("-A OUTPUT -j ISTIO_OUTPUT")
    excluded_out = split(capture.exclude_outbound_ports)
    if excluded_out:
        for proto in ("tcp", "udp"):
            out += [f"-A ISTIO_OUTPUT -p {proto} {m} -j RETURN" for m in _multiport(excluded_out)]
    out.append(f"-A ISTIO_OUTPUT -o lo -s {INBOUND_PASSTHROUGH_SOURCE} -j RETURN")
    include_ranges = capture.include_outbound_ranges
    loopback_included = include_ranges != WILDCARD and any(
        _is_loopback(c) for c in split(include_ranges))
    for kind, owner in (("uid", capture.proxy_uid), ("gid", capture.proxy_gid)):
        out.append(
            f"-A ISTIO_OUTPUT -o lo ! -d {LOCALHOST} -p tcp ! --dport {TUNNEL_PORT} "
            f"-m owner --{kind}-owner {owner} -j ISTIO_IN_REDIRECT"
        )
        if not loopback_included:
            out.append(f"-A ISTIO_OUTPUT -o lo -m owner ! --{kind}-owner {owner} -j RETURN")
        out.append(f"-A ISTIO_OUTPUT -m owner --{kind}-owner {owner} -j RETURN")
    out.append(f"-A ISTIO_OUTPUT -d {LOCALHOST} -j RETURN")
    out += [f"-A ISTIO_OUTPUT -d {cidr} -j RETURN"
            for cidr in split(capture.exclude_outbound_ranges)]
    out += [f"-A ISTIO_OUTPUT -p tcp --dport {p} -j ISTIO_REDIRECT"
            for p in split(capture.include_outbound_ports)]
    if include_ranges == WILDCARD:
        out.append("-A ISTIO_OUTPUT -j ISTIO_REDIRECT")
    elif include_ranges:
        out += [f"-A ISTIO_OUTPUT -d {cidr} -j ISTIO_REDIRECT" for cidr in split(include_ranges)]
        out.append("-A ISTIO_OUTPUT -j RETURN")
    return out


def restore_text(capture: Capture) -> str:
    """The whole `iptables-restore` input: the nat table, committed atomically."""
    return "* nat\n" + "\n".join(rules(capture)) + "\nCOMMIT\n"


def flags(capture: Capture) -> list[str]:
    """`tollway iptables` arguments (istio-iptables' short flags) reproducing `capture`:
    what the injected init container runs."""
    argv = [
        "-p", str(capture.outbound_port), "-z", str(capture.inbound_port),
        "-u", str(capture.proxy_uid), "-g", str(capture.proxy_gid), "-m", "REDIRECT",
        "-i", capture.include_outbound_ranges, "-x", capture.exclude_outbound_ranges,
        "-b", capture.include_inbound_ports, "-d", capture.exclude_inbound_ports,
    ]
    if capture.include_outbound_ports:
        argv += ["-q", capture.include_outbound_ports]
    if capture.exclude_outbound_ports:
        argv += ["-o", capture.exclude_outbound_ports]
    return argv
