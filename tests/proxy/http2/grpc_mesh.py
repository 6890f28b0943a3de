"""Two sidecars around a gRPC service, as the gRPC tests build them.

client --h2c--> outbound sidecar --HTTP/2 (h2c, or inside mTLS)--> inbound sidecar(s)
--h2c--> grpcio server(s). Each helper returns the started `ProxyServer`, so a test can
reach its listener (`listener_address`) and its admin port (`admin_address`: the Prometheus
endpoint)."""

from __future__ import annotations

from proxy_harness import Harness

from tollway.control.ca import CertificateAuthority
from tollway.proxy import tls
from tollway.proxy.main import ProxyServer
from tollway.snapshot import types

SERVER_ID = "spiffe://cluster.local/ns/default/sa/echo"
SERVICE = "echo.default.svc.cluster.local"


def table(name: str, *dests: tuple[str, int], retries: types.Retry | None = types.Retry(),
          fault: types.Fault | None = None) -> types.RouteTable:
    route = types.Route(clusters=tuple(types.WeightedCluster(cluster=c, weight=w)
                                       for c, w in dests), retries=retries, fault=fault)
    return types.RouteTable(name=name, virtual_hosts=(
        types.VirtualHost(name="vh", domains=("*",), routes=(route,)),))


def inbound(harness: Harness, app_port: int, name: str, creds: tls.Credentials | None = None
            ) -> ProxyServer:
    """The server's sidecar: listener "in" for the workload `name` (version label too)."""
    node = types.Node(name=f"{name}-0", workload=name, service_account="echo",
                      labels={"app": "echo", "version": name})
    cluster = types.Cluster(name="inbound|50051||", service=SERVICE, port=app_port,
                            protocol="http2",
                            endpoints=(types.Endpoint(address="127.0.0.1", port=app_port),))
    cfg = types.ProxyConfig(
        version="s", node=node,
        listeners=(types.Listener(name="in", kind="inbound", address="127.0.0.1", port=0,
                                  route_table="in", service_port=50051),),
        route_tables=(table("in", ("inbound|50051||", 100), retries=None),),
        clusters=(cluster,),
        peer_authn=types.PeerAuthn(mode="STRICT" if creds else "PERMISSIVE"))
    state = tls.TlsState(creds) if creds is not None else None
    return harness.proxy(cfg, tls_state=state)


def outbound(harness: Harness, backends: dict[str, tuple[int, int]],
             creds: tls.Credentials | None = None, *,
             retries: types.Retry | None = types.Retry(),
             outlier: types.OutlierDetection | None = None,
             endpoints: dict[str, tuple[int, ...]] | None = None,
             load_balancer: types.LoadBalancer | None = None,
             telemetry: types.Telemetry | None = None,
             fault: types.Fault | None = None,
             tracing: types.Tracing | None = None) -> ProxyServer:
    """The client's sidecar: listener "out". backends: subset name -> (inbound sidecar
    port, weight); `endpoints` gives a subset more than one endpoint (ports)."""
    mode = "ISTIO_MUTUAL" if creds else "DISABLE"
    ports = {s: (endpoints or {}).get(s, (port,)) for s, (port, _) in backends.items()}
    clusters = tuple(
        types.Cluster(name=f"outbound|50051|{subset}|echo", service=SERVICE, port=50051,
                      subset=subset, protocol="http2", outlier=outlier,
                      load_balancer=load_balancer or types.LoadBalancer(),
                      endpoints=tuple(types.Endpoint(address="127.0.0.1", port=p,
                                                     labels={"version": subset})
                                      for p in ports[subset]),
                      tls=types.UpstreamTls(mode=mode, expected_identities=(  # type: ignore[arg-type]
                          (SERVER_ID,) if creds else ())))
        for subset in backends)
    routes = table("out", *((f"outbound|50051|{s}|echo", w) for s, (_, w) in backends.items()),
                   retries=retries, fault=fault)
    cfg = types.ProxyConfig(
        version="c", node=types.Node(name="client-0", workload="client", labels={"app": "c"}),
        listeners=(types.Listener(name="out", kind="outbound", address="127.0.0.1", port=0,
                                  route_table="out"),),
        route_tables=(routes,), clusters=clusters, telemetry=telemetry or types.Telemetry(),
        tracing=tracing or types.Tracing())
    state = tls.TlsState(creds) if creds is not None else None
    return harness.proxy(cfg, tls_state=state)


def mtls_pair() -> tuple[tls.Credentials, tls.Credentials]:
    """(server credentials for SERVER_ID, client credentials) from one new mesh CA."""
    ca = CertificateAuthority.create()

    def creds(spiffe: str) -> tls.Credentials:
        key, csr = tls.new_key_and_csr(spiffe)
        return tls.Credentials.from_pem(ca.sign_csr(csr, spiffe, 3600.0), key, ca.root_pem)

    return creds(SERVER_ID), creds("spiffe://cluster.local/ns/default/sa/client")
