"""Shared fixtures: the seed manifests, free loopback ports, and the demo app as a real process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tollway.control.local.procs import PortAllocator

ROOT = Path(__file__).resolve().parent.parent
SEED_DIR = Path(__file__).resolve().parent / "data" / "seed"
EXAMPLES_DIR = ROOT / "examples"


@pytest.fixture
def seed_dir() -> Path:
    return SEED_DIR


# Ports for servers a test starts come from below the kernel's ephemeral range, as `tollway
# up` takes its own: a port found by binding port 0 is in that range, and between its close
# and the server's bind any outgoing connection (the other xdist worker's floods) may take it
# as its source port.
_PORTS = PortAllocator()


def free_port() -> int:
    """A loopback port free now, never handed out twice in this process."""
    return _PORTS.allocate()


def wait_port(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


class DemoApp:
    """A real demo-app process on a free loopback port."""

    def __init__(self, port: int, proc: subprocess.Popen[bytes]) -> None:
        self.port = port
        self.proc = proc

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_demo_app(**env: str) -> DemoApp:
    port = free_port()
    full = dict(os.environ, PORT=str(port), **env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tollway.demo.app"],
        env=full,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port)
    return DemoApp(port, proc)


@pytest.fixture
def demo_app_factory() -> Iterator[object]:
    started: list[DemoApp] = []

    def make(**env: str) -> DemoApp:
        app = start_demo_app(**env)
        started.append(app)
        return app

    yield make
    for app in started:
        app.stop()


def reap_members(members: Path) -> None:
    """Stop what a `tollway up` that died (or was killed by a test) left running, from its
    STATE/members.json, so a failed test leaves no sidecars or apps behind."""
    try:
        rows = json.loads(members.read_text())
    except (OSError, ValueError):
        return
    for row in rows.values():
        for key in ("sidecar_pid", "app_pid"):
            if row.get(key):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(row[key]), signal.SIGTERM)


def eventually(check: Callable[[], Any], timeout: float = 120.0, what: str = "",
               retry_on: tuple[type[BaseException], ...] = ()) -> Any:
    """Poll until check() returns something truthy; the last value or error goes in the failure.

    The cluster tests' wait: an API object settles in its own time on a loaded host."""
    errors = (AssertionError, subprocess.SubprocessError, ValueError, KeyError, *retry_on)
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except errors as e:
            last = e
        time.sleep(1.0)
    raise AssertionError(f"{what or check.__name__} not true after {timeout}s; last: {last!r}")


class DevCluster:
    """A `tollway dev cluster` started by the real CLI; shared by every `cluster` test.

    One per host (kube-proxy's chains are host-global), so cluster tests sit in one xdist
    group and take this session fixture. `down()`/`up()` let the lifecycle test prove that a
    torn-down cluster comes back.
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.kubeconfig = state_dir / "kubeconfig"
        self.up_output = ""
        from tollway.devcluster.build import bin_dir

        self.bin_dir = bin_dir()

    def cli(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tollway", "dev", "cluster", *args,
                               "--state-dir", str(self.state_dir)],
                              capture_output=True, text=True, timeout=timeout, cwd=ROOT)

    def up(self) -> None:
        proc = self.cli("up")
        self.up_output = proc.stdout + proc.stderr
        if proc.returncode != 0:
            raise RuntimeError(f"tollway dev cluster up failed ({proc.returncode}):\n"
                               f"{self.up_output}")

    def down(self) -> subprocess.CompletedProcess[str]:
        return self.cli("down", timeout=300)

    def kubectl(self, *args: str, check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(self.bin_dir / "kubectl"), *args], capture_output=True,
                              text=True, timeout=timeout,
                              env={**os.environ, "KUBECONFIG": str(self.kubeconfig)})
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr}")
        return proc


HOST_LOCK = Path("/run/tollway/test-dev-cluster.lock")


@contextlib.contextmanager
def host_cluster_lock(path: Path = HOST_LOCK) -> Iterator[None]:
    """The host-wide dev-cluster lock, with the holder's pid written in the file.

    flock belongs to an open file, not a process: a process that asked again while holding
    it (a session fixture set up twice, as a rerun plugin does) would wait for itself
    forever. So a busy lock whose holder is this very process fails at once, saying so."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            if holder == str(os.getpid()):
                raise RuntimeError(
                    f"this process (pid {holder}) already holds {path}: the session-scoped "
                    "dev_cluster fixture is being set up a second time in one pytest process "
                    "(a rerun plugin re-creates session fixtures); run without reruns") from None
            fcntl.flock(fd, fcntl.LOCK_EX)  # another session's cluster: queue behind it
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@pytest.fixture(scope="session")
def dev_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    """A running dev cluster (needs root, iproute2, iptables; .ci/run installs them).

    One per host: sessions from other worktrees on this machine queue on a host-wide lock
    rather than fail on the bridge that the first one owns.
    """
    with host_cluster_lock():
        # A cluster started by hand (not under this lock) also owns the host: wait it out.
        from tollway.devcluster import hostnet
        from tollway.devcluster import layout as L
        from tollway.plumbing import sbin

        # the tests' own iptables checks, as root, find it as `dev cluster up` does
        # (a minimal PATH has no /usr/sbin)
        sbin.ensure_on_path()

        deadline = time.monotonic() + 600
        while hostnet.link_exists(L.BRIDGE) and time.monotonic() < deadline:
            time.sleep(2)
        cluster = DevCluster(tmp_path_factory.mktemp("devcluster") / "state")
        try:
            cluster.up()
            yield cluster
        finally:
            cluster.down()
