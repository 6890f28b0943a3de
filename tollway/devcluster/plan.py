"""Which processes make a dev cluster, with which flags, in which order: pure data.

`up` writes the plan to STATE/plan.json; the supervisor only runs what it says. Keeping the
flags here, away from any IO, lets tests read them and keeps the supervisor generic.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tollway.devcluster import layout as L


@dataclass(frozen=True)
class Ports:
    """Loopback ports picked free at `up` (the apiserver's is fixed on the bridge IP)."""

    etcd_client: int
    etcd_peer: int
    kcm: int
    scheduler: int
    proxy_metrics: int
    proxy_healthz: int
    dns_health: int
    dns_ready: int


@dataclass(frozen=True)
class Component:
    name: str
    argv: list[str]
    # Start only once these components have been ready once (first start; restarts don't wait).
    after: list[str] = field(default_factory=list)
    # "tcp:HOST:PORT", "http:URL" (200 = ready), "https:URL" (checked with the admin client
    # cert) or "" (ready once started).
    ready: str = ""
    # Seconds between SIGTERM and SIGKILL on stop.
    grace: float = 10.0


def components(lay: L.Layout, bin_dir: Path, ports: Ports) -> list[Component]:
    """The cluster in start order (stop order is the reverse)."""
    def b(name: str) -> str:
        return str(bin_dir / name)

    pki = lay.pki
    ca, apiserver = str(pki / "ca.crt"), f"https://{L.BRIDGE_IP}:{L.APISERVER_PORT}"
    etcd_url = f"https://127.0.0.1:{ports.etcd_client}"
    peer_url = f"https://127.0.0.1:{ports.etcd_peer}"
    cidr, svc = str(L.CLUSTER_CIDR), str(L.SERVICE_CIDR)

    def auth_kubeconfigs(kc: Path) -> list[str]:
        return [f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}"]

    etcd = Component("etcd", [
        b("etcd"), "--name=node0", f"--data-dir={lay.etcd_data}",
        f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
        f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=node0={peer_url}", "--initial-cluster-state=new",
        f"--cert-file={pki / 'etcd.crt'}", f"--key-file={pki / 'etcd.key'}",
        f"--trusted-ca-file={ca}", "--client-cert-auth=true",
        f"--peer-cert-file={pki / 'etcd.crt'}", f"--peer-key-file={pki / 'etcd.key'}",
        f"--peer-trusted-ca-file={ca}", "--peer-client-cert-auth=true",
        "--listen-metrics-urls=", "--auto-compaction-retention=1",
        "--quota-backend-bytes=2147483648",
        # A throwaway dev store: fsync costs seconds per write on a loaded 2-core host.
        "--unsafe-no-fsync=true", "--log-level=warn",
    ], ready=f"tcp:127.0.0.1:{ports.etcd_client}", grace=10)

    apiserver_proc = Component("kube-apiserver", [
        b("kube-apiserver"),
        f"--etcd-servers={etcd_url}", f"--etcd-cafile={ca}",
        f"--etcd-certfile={pki / 'apiserver-etcd-client.crt'}",
        f"--etcd-keyfile={pki / 'apiserver-etcd-client.key'}",
        f"--bind-address={L.BRIDGE_IP}", f"--secure-port={L.APISERVER_PORT}",
        # Non-loopback, so the `kubernetes` Service's endpoint is reachable from pods.
        f"--advertise-address={L.BRIDGE_IP}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={ca}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        f"--service-account-issuer=https://kubernetes.default.svc.{L.CLUSTER_DOMAIN}",
        f"--service-cluster-ip-range={svc}",
        "--authorization-mode=Node,RBAC",
        # Admission: the default plugin set, which includes Mutating/ValidatingAdmissionWebhook.
        "--allow-privileged=true",
        f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
        f"--kubelet-certificate-authority={ca}",
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        "--profiling=false", "--v=1",
    ], after=["etcd"], ready=f"https:{apiserver}/readyz", grace=15)

    kcm_kc = lay.component_kubeconfig("kube-controller-manager")
    kcm = Component("kube-controller-manager", [
        b("kube-controller-manager"), *auth_kubeconfigs(kcm_kc),
        "--bind-address=127.0.0.1", f"--secure-port={ports.kcm}", "--leader-elect=false",
        "--allocate-node-cidrs=true", f"--cluster-cidr={cidr}",
        f"--node-cidr-mask-size={L.NODE_CIDR_MASK}", f"--service-cluster-ip-range={svc}",
        f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={ca}",
        "--use-service-account-credentials=true",
        f"--cluster-signing-cert-file={ca}", f"--cluster-signing-key-file={pki / 'ca.key'}",
        "--controllers=*,bootstrapsigner,tokencleaner", "--v=1",
    ], after=["kube-apiserver"])

    sched_kc = lay.component_kubeconfig("kube-scheduler")
    scheduler = Component("kube-scheduler", [
        b("kube-scheduler"), *auth_kubeconfigs(sched_kc),
        "--bind-address=127.0.0.1", f"--secure-port={ports.scheduler}", "--leader-elect=false",
        "--v=1",
    ], after=["kube-apiserver"])

    proxy = Component("kube-proxy", [
        b("kube-proxy"), f"--kubeconfig={lay.component_kubeconfig('kube-proxy')}",
        f"--hostname-override={L.NODE_NAME}", "--proxy-mode=iptables",
        f"--cluster-cidr={cidr}",
        # NodePorts only on the bridge IP: nothing opens on the host's own interfaces.
        f"--nodeport-addresses={L.BRIDGE_IP}/32",
        f"--metrics-bind-address=127.0.0.1:{ports.proxy_metrics}",
        f"--healthz-bind-address=127.0.0.1:{ports.proxy_healthz}",
        # 0 = leave the host's conntrack sysctls as they are.
        "--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0",
        "--conntrack-tcp-timeout-close-wait=0", "--v=1",
    ], after=["kube-apiserver"], ready=f"http:http://127.0.0.1:{ports.proxy_healthz}/healthz")

    coredns = Component("coredns", [b("coredns"), "-conf", str(lay.corefile)],
                        after=["kube-apiserver"],
                        # 200 once the kubernetes plugin has synced Services from the API.
                        ready=f"http:http://127.0.0.1:{ports.dns_ready}/ready")

    agent = Component("devnode", [
        sys.executable, "-m", "tollway.devnode", f"--kubeconfig={lay.kubeconfig}",
        f"--node-name={L.NODE_NAME}", f"--state-dir={lay.node}", f"--bridge={L.BRIDGE}",
        f"--cluster-dns={L.DNS_SERVICE_IP}", f"--node-ip={L.BRIDGE_IP}",
        # The kubelet endpoint the apiserver dials for `kubectl logs` (mTLS both ways).
        f"--port={L.KUBELET_PORT}", f"--tls-cert-file={pki / 'kubelet.crt'}",
        f"--tls-private-key-file={pki / 'kubelet.key'}", f"--client-ca-file={ca}",
    ], after=["kube-apiserver"], grace=40)
    return [etcd, apiserver_proc, kcm, scheduler, proxy, coredns, agent]


def corefile(lay: L.Layout, ports: Ports) -> str:
    """CoreDNS serving cluster.local from the API, on the bridge IP (kube-dns points there).

    No `forward`: a dev cluster answers for its own names only, and `loop` would abort if
    the host's resolver ever pointed back at us.
    """
    return f"""\
.:53 {{
    bind {L.BRIDGE_IP}
    errors
    health 127.0.0.1:{ports.dns_health}
    ready 127.0.0.1:{ports.dns_ready}
    kubernetes {L.CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {lay.kubeconfig} tollway-dev
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    cache 30
    loadbalance
}}
"""


def to_json(comps: list[Component]) -> list[dict[str, object]]:
    return [asdict(c) for c in comps]


def from_json(rows: list[dict[str, object]]) -> list[Component]:
    return [Component(**row) for row in rows]  # type: ignore[arg-type]
