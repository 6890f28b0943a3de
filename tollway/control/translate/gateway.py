"""Gateway servers -> gateway listeners, their route tables and TLS credentials [pure].

Each server port listens on `number + offset` (443 -> 8443 with the default offset 8000);
servers sharing a port share one listener (the first server with TLS gives its TLS). A
VirtualService binds when its `gateways` name the Gateway (`ns/name`, or a bare name in
the VS's namespace) and one of its hosts overlaps a server host (equal, or one covers the
other: `*.example.com` covers `api.example.com`, not `example.com`); every overlapping pair
gives a virtual host for the narrower host of the two (Istio's `Names.Intersection`).
Credentials: `credentialName` -> a `kubernetes.io/tls` Secret in the Gateway's namespace
(`tls.crt`, `tls.key`, and `ca.crt` — or a Secret `NAME-cacert` — for MUTUAL); or
`serverCertificate`/`privateKey`/`caCertificates` files, read through the injected
`read_file` (inline PEM), or passed on as paths when none is given. A TLS server whose
credential cannot be found gets no listener (Istio's gateway has no certificate for it
either).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from tollway.config.resource import Resource
from tollway.control.registry import as_int, as_list, as_map, selects, str_labels
from tollway.control.translate import listeners, names, routes
from tollway.control.translate.match import Where
from tollway.control.world import World, host_matches, visible, vs_gateways
from tollway.snapshot import types

ReadFile = Callable[[str], str | None]
TERMINATING = ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL", "ISTIO_MUTUAL")


@dataclass(frozen=True, slots=True)
class Server:
    gateway: Resource
    spec: Mapping[str, Any]

    @property
    def ref(self) -> str:
        return f"{self.gateway.namespace}/{self.gateway.name}"

    @property
    def number(self) -> int:
        return as_int(as_map(self.spec.get("port")).get("number"), 80) or 80

    @property
    def tls(self) -> Mapping[str, Any]:
        return as_map(self.spec.get("tls"))

    def hosts(self) -> list[tuple[str, str]]:
        """(namespace filter, dnsName): `*` any namespace, `.` the Gateway's own."""
        out = []
        for h in as_list(self.spec.get("hosts")):
            ns, _, name = str(h).rpartition("/")
            ns = self.gateway.namespace if ns == "." else (ns or "*")
            out.append((ns, name.lower()))
        return out


def selected_gateways(world: World, node: types.Node, everything: bool) -> list[Resource]:
    """Gateways whose selector matches the node's labels; a gateway proxy with no labels
    (Tollway's built-in ingress) serves them all."""
    everything = everything or (node.kind == "gateway" and not node.labels)
    out = []
    for gw in world.gateways:
        selector = str_labels(gw.spec.get("selector"))
        if everything or selects(selector, node.labels):
            out.append(gw)
    return out


def servers_by_port(gateways: list[Resource]) -> dict[int, list[Server]]:
    by_port: dict[int, list[Server]] = {}
    for gw in gateways:
        for s in as_list(gw.spec.get("servers")):
            server = Server(gw, as_map(s))
            by_port.setdefault(server.number, []).append(server)
    return dict(sorted(by_port.items()))


# ------------------------------------------------------------------ credentials


def _secret_value(secret: Resource, key: str) -> str | None:
    spec = secret.spec if secret.spec else secret.raw
    plain = as_map(spec.get("stringData")).get(key)
    if isinstance(plain, str):
        return plain
    blob = as_map(spec.get("data")).get(key)
    if not isinstance(blob, str):
        return None
    try:
        return base64.b64decode("".join(blob.split())).decode("utf-8")
    except (binascii.Error, ValueError):
        return None


def _from_secret(world: World, namespace: str, name: str,
                 mutual: bool) -> types.TlsCredential | None:
    secret = world.secret(namespace, name)
    if secret is None:
        return None
    cert, key = _secret_value(secret, "tls.crt"), _secret_value(secret, "tls.key")
    if not cert or not key:
        return None
    ca = _secret_value(secret, "ca.crt")
    if ca is None and mutual:
        extra = world.secret(namespace, f"{name}-cacert")
        ca = _secret_value(extra, "ca.crt") if extra else None
    return types.TlsCredential(cert_chain=cert, private_key=key, ca_certificates=ca)


def _from_files(tls: Mapping[str, Any], read_file: ReadFile | None) -> types.TlsCredential | None:
    def get(field: str) -> str | None:
        path = tls.get(field)
        if not isinstance(path, str) or not path:
            return None
        return read_file(path) if read_file is not None else path

    cert, key = get("serverCertificate"), get("privateKey")
    if not cert or not key:
        return None
    return types.TlsCredential(cert_chain=cert, private_key=key,
                               ca_certificates=get("caCertificates"))


def downstream_tls(world: World, server: Server,
                   read_file: ReadFile | None) -> types.DownstreamTls | bool | None:
    """The server's TLS; None for plaintext; False when its credential is missing."""
    tls = server.tls
    mode = str(tls.get("mode") or "PASSTHROUGH") if tls else ""
    if not tls or (set(tls) <= {"httpsRedirect"}):
        return None
    mutual = mode in ("MUTUAL", "OPTIONAL_MUTUAL")
    credential = None
    if mode in ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL"):
        name = tls.get("credentialName") or next(iter(as_list(tls.get("credentialNames"))), None)
        credential = (_from_secret(world, server.gateway.namespace, str(name), mutual) if name
                      else _from_files(tls, read_file))
        if credential is None:
            return False
    snapshot_mode = "SIMPLE" if mode == "OPTIONAL_MUTUAL" else mode
    return types.DownstreamTls(
        mode=cast(Any, snapshot_mode), credential=credential,
        sni_hosts=tuple(h for _, h in server.hosts()),
        min_protocol_version=tls.get("minProtocolVersion"),
    )


# ------------------------------------------------------------------ virtual hosts


def _intersection(server_host: str, vs_host: str) -> str | None:
    if host_matches(server_host, vs_host):
        return vs_host
    if host_matches(vs_host, server_host):
        return server_host
    return None


def _vhosts(world: World, node: types.Node, server: Server,
            listen_port: int) -> list[types.VirtualHost]:
    out = []
    redirect = bool(server.tls.get("httpsRedirect"))
    for vs in world.virtual_services:
        if server.ref not in vs_gateways(vs) or not visible(vs, server.gateway.namespace):
            continue
        shared = _shared_hosts(server, vs)
        if not shared:
            continue
        found = tuple([routes.https_redirect_route()] if redirect else
                      routes.vs_routes(world, vs, Where(node, server.number, server.ref)))
        if not found:
            continue
        for domain in shared:
            domains = (domain, f"{domain}:{server.number}", f"{domain}:{listen_port}")
            out.append(types.VirtualHost(name=f"{domain}:{server.number}",
                                         domains=domains, routes=found))
    return out


def _shared_hosts(server: Server, vs: Resource) -> list[str]:
    """Every (server host, VS host) pair that overlaps gives the narrower of the two, once
    each (Istio's `Names.Intersection`): server hosts `*.example.com` and `*` with VS host
    `*` serve both `*.example.com` and `*`, so `127.0.0.1:PORT` still finds the VS."""
    vs_hosts = [str(raw).lower() for raw in as_list(vs.spec.get("hosts"))]
    shared: dict[str, None] = {}
    for vs_host in vs_hosts:
        for ns, server_host in server.hosts():
            domain = _intersection(server_host, vs_host)
            if domain is not None and ns in ("*", vs.namespace):
                shared.setdefault(domain)
    return list(shared)


def build(world: World, node: types.Node, offset: int, address: str, everything: bool,
          read_file: ReadFile | None
          ) -> tuple[list[types.Listener], list[types.RouteTable]]:
    listener_list: list[types.Listener] = []
    tables: list[types.RouteTable] = []
    for number, servers in servers_by_port(selected_gateways(world, node, everything)).items():
        listen = number + offset
        tls: types.DownstreamTls | None = None
        served: list[Server] = []
        for server in servers:
            t = downstream_tls(world, server, read_file)
            if t is False:
                continue
            served.append(server)
            if tls is None and isinstance(t, types.DownstreamTls):
                tls = t
        if not served:
            continue
        bind = next((str(s.spec["bind"]) for s in served if s.spec.get("bind")), address)
        vhosts = [v for s in served for v in _vhosts(world, node, s, listen)]
        table = names.gateway_table(number)
        tables.append(types.RouteTable(name=table,
                                       virtual_hosts=listeners.unique_domains(vhosts)))
        listener_list.append(types.Listener(name=f"gateway|{number}", kind="gateway",
                                            address=bind, port=listen, route_table=table,
                                            tls=tls))
    return listener_list, tables
