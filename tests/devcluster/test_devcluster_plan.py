"""The dev cluster's flags and certs, checked without starting anything."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from tollway.devcluster import layout as L
from tollway.devcluster import pki, procs, supervise
from tollway.devcluster import plan as P

PORTS = P.Ports(2379, 2380, 10257, 10259, 10249, 10256, 8080, 8181)


def flags(comp: P.Component) -> dict[str, str]:
    return dict(a[2:].split("=", 1) for a in comp.argv[1:] if a.startswith("--") and "=" in a)


def test_components_start_in_dependency_order(tmp_path: Path) -> None:
    comps = P.components(L.Layout.at(tmp_path), Path("/bin-dir"), PORTS)
    names = [c.name for c in comps]
    assert names == ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                     "kube-proxy", "coredns", "devnode"]
    for i, c in enumerate(comps):
        assert all(names.index(a) < i for a in c.after), c.name
    assert P.from_json(P.to_json(comps)) == comps


def test_apiserver_advertises_the_bridge_not_loopback(tmp_path: Path) -> None:
    api = {c.name: c for c in P.components(L.Layout.at(tmp_path), Path("/b"), PORTS)}
    f = flags(api["kube-apiserver"])
    assert not ipaddress.ip_address(f["advertise-address"]).is_loopback
    assert f["advertise-address"] == str(L.BRIDGE_IP)
    assert ipaddress.ip_address(f["advertise-address"]) in L.NODE_POD_CIDR
    assert f["service-cluster-ip-range"] == str(L.SERVICE_CIDR)
    assert L.KUBERNETES_SERVICE_IP in L.SERVICE_CIDR and L.DNS_SERVICE_IP in L.SERVICE_CIDR
    # Webhooks stay on: no plugin list overrides the defaults.
    assert "disable-admission-plugins" not in f and "admission-control" not in f
    assert f["etcd-servers"].startswith("https://127.0.0.1:")


def test_kcm_allocates_the_node_cidr_the_bridge_lives_in(tmp_path: Path) -> None:
    comps = {c.name: c for c in P.components(L.Layout.at(tmp_path), Path("/b"), PORTS)}
    f = flags(comps["kube-controller-manager"])
    assert f["allocate-node-cidrs"] == "true"
    net = ipaddress.ip_network(f["cluster-cidr"])
    assert next(net.subnets(new_prefix=int(f["node-cidr-mask-size"]))) == L.NODE_POD_CIDR
    assert not net.overlaps(L.SERVICE_CIDR)
    proxy = flags(comps["kube-proxy"])
    assert proxy["proxy-mode"] == "iptables"
    assert proxy["nodeport-addresses"] == f"{L.BRIDGE_IP}/32"  # never the host's own NICs


def test_corefile_serves_cluster_local_on_the_bridge(tmp_path: Path) -> None:
    lay = L.Layout.at(tmp_path)
    text = P.corefile(lay, PORTS)
    assert f"bind {L.BRIDGE_IP}" in text
    assert f"kubernetes {L.CLUSTER_DOMAIN}" in text
    assert f"kubeconfig {lay.kubeconfig}" in text
    assert "forward" not in text


def test_pki_serving_cert_covers_every_name_pods_dial(tmp_path: Path) -> None:
    lay = L.Layout.at(tmp_path)
    pki.write_all(lay)
    ca = x509.load_pem_x509_certificate((lay.pki / "ca.crt").read_bytes())
    cert = x509.load_pem_x509_certificate((lay.pki / "apiserver.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = {str(i) for i in san.get_values_for_type(x509.IPAddress)}
    assert {"127.0.0.1", str(L.BRIDGE_IP), str(L.KUBERNETES_SERVICE_IP)} <= ips
    assert "kubernetes.default.svc.cluster.local" in san.get_values_for_type(x509.DNSName)
    admin = x509.load_pem_x509_certificate((lay.pki / "admin.crt").read_bytes())
    orgs = [a.value for a in admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert orgs == ["system:masters"]
    assert (lay.pki / "ca.key").stat().st_mode & 0o077 == 0
    assert lay.kubeconfig.stat().st_mode & 0o077 == 0


def test_backoff_doubles_and_caps() -> None:
    delays = [supervise.backoff(n) for n in range(1, 10)]
    assert delays[:4] == [0.5, 1.0, 2.0, 4.0]
    assert max(delays) == 30.0 and delays == sorted(delays)


def test_pidfile_never_names_a_recycled_pid(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        pf = tmp_path / "x.pid"
        procs.write_pidfile(pf, proc.pid)
        assert procs.read_pidfile(pf) == proc.pid
        # Same pid, other start time: a different process as far as `down` is concerned.
        pid, st = pf.read_text().split()
        pf.write_text(f"{pid} {int(st) + 1}\n")
        assert procs.read_pidfile(pf) is None
        procs.write_pidfile(pf, proc.pid)
        assert procs.kill_pidfiles(tmp_path) == 1
        proc.wait(10)
        assert not pf.exists()
    finally:
        proc.kill()
        proc.wait()


def test_supervisor_restarts_a_crashing_component_and_stops_in_reverse(tmp_path: Path) -> None:
    lay = L.Layout.at(tmp_path)
    lay.logs.mkdir()
    marker = tmp_path / "starts"
    crash = P.Component("crasher", [sys.executable, "-c",
                                    f"open({str(marker)!r}, 'a').write('x'); raise SystemExit(3)"])
    sleeper = P.Component("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"],
                          after=["crasher"], grace=2)
    lay.plan.write_text(json.dumps(P.to_json([crash, sleeper])))
    sup = supervise.Supervisor(lay)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(marker.read_text() if marker.exists() else "") < 3:
        sup.step()
        time.sleep(0.05)
    assert len(marker.read_text()) >= 3  # restarted after each exit
    slot = {s.comp.name: s for s in sup.slots}
    assert slot["crasher"].restarts >= 2 and slot["crasher"].last_exit == 3
    assert slot["sleeper"].proc is not None  # started once its dependency was up
    sup.stop_all()
    assert slot["sleeper"].proc.poll() is not None
    assert not list(lay.pids.glob("*.pid"))


def test_ready_checks_speak_tcp_and_http(tmp_path: Path) -> None:
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/ready" else 503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    lay = L.Layout.at(tmp_path)
    try:
        assert supervise.check_ready(f"tcp:127.0.0.1:{port}", lay)
        assert supervise.check_ready(f"http:http://127.0.0.1:{port}/ready", lay)
        assert not supervise.check_ready(f"http:http://127.0.0.1:{port}/healthz", lay)
    finally:
        srv.shutdown()
        srv.server_close()
    assert not supervise.check_ready(f"tcp:127.0.0.1:{port}", lay)
    assert supervise.check_ready("", lay)


def test_up_without_root_says_so_in_one_sentence(tmp_path: Path) -> None:
    import os
    import shutil

    state = tmp_path / "open"
    state.mkdir()
    state.chmod(0o777)
    tmp_path.chmod(0o755)
    argv = [sys.executable, "-m", "tollway", "dev", "cluster", "up", "--state-dir",
            str(state / "s")]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv, "util-linux setpriv drops root for this test"
        argv = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
        probe = subprocess.run([*argv[:4], sys.executable, "-c", "import tollway.cli"],
                               capture_output=True, text=True, timeout=60, cwd="/")
        if probe.returncode != 0:  # e.g. a checkout inside a 0700 folder (mktemp -d)
            pytest.skip("uid 65534 cannot import this checkout's tollway: "
                        + probe.stderr.strip()[-200:])
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 1
    assert proc.stderr.startswith("tollway dev cluster up: root is needed")
    assert "Traceback" not in proc.stderr
    assert not list(state.glob("s/pki"))  # nothing was minted or started
