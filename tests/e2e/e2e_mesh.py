"""Helpers for e2e tests: a real `tollway up` in a temp copy of an example, a steady client."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import free_port
from tollway.control.local.procs import port_free

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TOLLWAY = [sys.executable, "-m", "tollway"]


def _free_port() -> int:
    # below the ephemeral range (tests/conftest.py): a Gateway port 443+offset picked by
    # binding port 0 was taken by another worker's connection before `tollway up` bound it,
    # and the mesh never got ready (CI, test_a_dead_collector_costs_no_request)
    return free_port()


def _gateway_offset() -> int:
    """An offset at which a Gateway's ports 80 and 443 are both free."""
    for _ in range(50):
        offset = _free_port() - 443
        if offset > 1024 and port_free(offset + 80):
            return offset
    raise AssertionError("no free port pair for a Gateway's ports 80 and 443")


def _log_tails(state: Path, lines: int = 8) -> str:
    """The last lines of each log `tollway up` wrote: what a failed start reports."""
    out = []
    for path in [*sorted((state / "logs").glob("*.log")), state / "tollway.log"]:
        if path.is_file():
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path.name}\n" + "\n".join(tail))
    return "\n".join(out)


class Mesh:
    """`tollway up DIR` as a subprocess; `start()` returns once it printed `ready`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.api_port = _free_port()
        self.client_port = _free_port()
        self.offset = _gateway_offset()  # a Gateway's ports 80 and 443 land on free ones
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self.extra_args: list[str] = []  # more `tollway up` flags, e.g. --cert-ttl

    def start(self, timeout: float = 120.0,
              until: tuple[str, ...] = ("tollway: ready:", "tollway: running:")) -> None:
        """Returns once `tollway up` printed a line starting with one of `until`."""
        # Meshes under test run no Prometheus of their own unless a test asks for one:
        # ~47 MB each, and parallel workers would race for port 9090.
        extra = self.extra_args
        if not any(a.startswith("--prometheus-port") for a in extra):
            extra = ["--no-prometheus", *extra]
        self.proc = subprocess.Popen(
            [*TOLLWAY, "up", str(self.root), "--api-port", str(self.api_port),
             "--client-port", str(self.client_port),
             "--gateway-port-offset", str(self.offset), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        proc = self.proc
        ready = threading.Event()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                self.lines.append(line)
                # the announcement itself (up.py's _announce_ready), not any line that
                # happens to contain "ready" ("already", "became ready"): the lines tests
                # read after start() are all printed before it
                if line.startswith(until):
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(timeout) or proc.poll() is not None:
            raise AssertionError(f"tollway up did not get ready (exit {proc.poll()}):\n"
                                 + "".join(self.lines) + _log_tails(self.root / ".tollway"))

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*TOLLWAY, *args, "--server", self.url], capture_output=True,
                              text=True, timeout=60)

    def admin_headers(self) -> dict[str, str]:
        """The admin credential `tollway up` wrote 0600 into its state folder."""
        token = (self.root / ".tollway" / "admin-token").read_text().strip()
        return {"Authorization": f"Bearer {token}"}

    def token_file(self, namespace: str, service_account: str) -> Path:
        """A VM proxy's --token-file, issued by `tollway token create`."""
        done = self.cli("token", "create", "--namespace", namespace,
                        "--service-account", service_account)
        assert done.returncode == 0, done.stdout + done.stderr
        path = self.root.parent / f"{namespace}.{service_account}.token"
        path.write_text(done.stdout)
        path.chmod(0o600)
        return path

    def members(self) -> list[dict[str, Any]]:
        return list(httpx.get(self.url + "/v1/local/members", timeout=5).json()["members"])

    def proxies(self) -> list[dict[str, Any]]:
        return list(httpx.get(self.url + "/v1/proxies", timeout=5).json())

    def applied_config(self, workload: str = "tollway-client") -> dict[str, Any]:
        """The config a proxy applied, from its own admin /config_dump (fields at their
        defaults are left out). What it routes by: the control plane's status and
        `proxy-status` SYNCED come before a change's push reaches it."""
        row = next(p for p in self.proxies() if p["workload"] == workload)
        dump = httpx.get(f"http://{row['admin']}/config_dump", timeout=10).json()
        return dict(dump["config"] or {})

    def get(self, host: str = "myapp:8080", path: str = "/") -> httpx.Response:
        with httpx.Client(proxy=f"http://127.0.0.1:{self.client_port}", timeout=10) as c:
            return c.get(f"http://{host}{path}")

    def get_with(self, host: str = "myapp:8080", path: str = "/",
                 headers: dict[str, str] | None = None) -> httpx.Response:
        with httpx.Client(proxy=f"http://127.0.0.1:{self.client_port}", timeout=10) as c:
            return c.get(f"http://{host}{path}", headers=headers or {})

    def versions(self, n: int, host: str = "myapp:8080") -> Counter[str]:
        out: Counter[str] = Counter()
        with httpx.Client(proxy=f"http://127.0.0.1:{self.client_port}", timeout=10) as c:
            for _ in range(n):
                r = c.get(f"http://{host}/")
                out[r.json()["version"] if r.status_code == 200 else str(r.status_code)] += 1
        return out


class Stream:
    """A steady client in a thread: every answer's version, and every failure."""

    def __init__(self, mesh: Mesh, host: str = "myapp:8080") -> None:
        self.mesh = mesh
        self.host = host
        self.versions: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        proxy = f"http://127.0.0.1:{self.mesh.client_port}"
        with httpx.Client(proxy=proxy, timeout=10) as client:
            while not self._stop.is_set():
                try:
                    r = client.get(f"http://{self.host}/")
                    if r.status_code == 200:
                        self.versions.append(r.json()["version"])
                    else:
                        self.failures.append(f"{r.status_code} {r.text[:200]}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                time.sleep(0.005)

    def __enter__(self) -> Stream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def wait_for(self, cond: Callable[[list[str]], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        start = len(self.versions)
        while time.monotonic() < deadline:
            if cond(self.versions[start:]):
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out; last versions {self.versions[-20:]}; "
                             f"failures {self.failures[:5]}")

    def recent(self, n: int) -> list[str]:
        return self.versions[-n:]


def wait_until(cond: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def running(root: Path, extra_args: Sequence[str] = ()) -> Iterator[Mesh]:
    """`tollway up ROOT [extra_args]` started, then stopped and its replicas reaped."""
    from tests.conftest import reap_members

    mesh = Mesh(root)
    mesh.extra_args = list(extra_args)
    try:
        mesh.start()
        yield mesh
    finally:
        mesh.stop()
        reap_members(root / ".tollway" / "members.json")
