"""Every command of the README's user guide, in the order written, as a newcomer types them.

The commands are read from README.md itself (its ```sh blocks under "## User guide"), so
the guide cannot drift from what works. Only ports change: a mesh gets free ones, and the
CLI finds it through $TOLLWAY_SERVER as a user's shell would. `tollway up DIR` runs in the
background like the README's "second terminal"; a command whose comment says `exit N`
must exit N; `--watch` commands must show their first view and still be running then.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, reap_members, wait_port
from tests.e2e.e2e_mesh import Mesh

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


# Sections run elsewhere, each with the reason (a new section is run here unless listed).
ELSEWHERE = {
    "A real Kubernetes API with no cluster at hand":
        "needs root, iptables and a Kubernetes build; tests/devcluster runs it",
}


def guide_sections() -> dict[str, list[tuple[str, str]]]:
    """Per `###` section of the user guide: (command, comment) of each shell line."""
    text = (ROOT / "README.md").read_text()
    guide = text.split("## User guide", 1)[1].split("\n## ", 1)[0]
    out: dict[str, list[tuple[str, str]]] = {}
    for section in guide.split("\n### ")[1:]:
        title = section.split("\n", 1)[0].strip()
        lines = out.setdefault(title, [])
        for block in re.findall(r"```(?:sh|bash|shell|console)\n(.*?)```", section, re.S):
            for line in block.splitlines():
                command, _, comment = line.partition("  #")
                if command.strip() and not command.lstrip().startswith("#"):
                    lines.append((command.strip(), comment.strip()))
    return out


def guide_commands() -> list[tuple[str, str]]:
    return [line for title, lines in guide_sections().items() if title not in ELSEWHERE
            for line in lines]


def test_the_guide_has_the_commands_this_test_knows() -> None:
    sections = guide_sections()
    assert set(ELSEWHERE) <= set(sections), "a section listed in ELSEWHERE is gone"
    firsts = {shlex.split(c)[0] for c, _ in guide_commands()}
    assert firsts == {"tollway", "curl"}
    assert len(guide_commands()) >= 15


class Guide:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.mesh: Mesh | None = None
        self.env = dict(os.environ)
        self.transcript: list[str] = []

    def tollway(self, args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tollway", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def watch(self, args: list[str], until: str, timeout: float) -> tuple[str, int | None]:
        """Run a `--watch` command until its output shows `until` (or `timeout` passes),
        then stop it as Ctrl-C would. Returns what it printed and its exit code if it
        ended on its own (None: still watching, as it should be). Waits for the output,
        not a fixed time: on a loaded host the CLI's start-up alone took over 8 s."""
        proc = subprocess.Popen([sys.executable, "-m", "tollway", *args], cwd=ROOT,
                                env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        seen = b""
        deadline = time.monotonic() + timeout
        try:
            while until.encode() not in seen and time.monotonic() < deadline:
                chunk = proc.stdout.read()
                if chunk:
                    seen += chunk
                elif proc.poll() is not None:
                    break
                else:
                    time.sleep(0.1)
            code = proc.poll()
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            proc.stdout.close()
        return seen.decode(errors="replace"), code

    def up(self, folder: str) -> None:
        self.down()
        copy = self.tmp / folder.strip("/").replace("/", "-")
        shutil.copytree(ROOT / folder, copy, ignore=shutil.ignore_patterns(".tollway"))
        self.mesh = Mesh(copy)
        self.mesh.start(timeout=240)
        self.env["TOLLWAY_SERVER"] = self.mesh.url

    def down(self) -> None:
        if self.mesh is not None:
            self.mesh.stop()
            reap_members(self.mesh.root / ".tollway" / "members.json")
            self.mesh = None

    def curl(self, argv: list[str]) -> str:
        assert self.mesh is not None, "curl before any `tollway up`"
        argv = [a.replace("127.0.0.1:15001", f"127.0.0.1:{self.mesh.client_port}")
                for a in argv]
        proc = subprocess.run([*argv, "-sS", "--max-time", "10"], capture_output=True,
                              text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def proxy(self, argv: list[str]) -> None:
        port = free_port()
        admin = free_port()
        argv = [str(port) if a == "15001" else a for a in argv[1:]]
        proc = subprocess.Popen([sys.executable, "-m", "tollway", *argv, "--admin-port",
                                 str(admin)], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        try:
            wait_port(port, timeout=60)
            assert httpx.get(f"http://127.0.0.1:{admin}/ready", timeout=10).status_code == 200
        finally:
            proc.terminate()
            proc.wait(20)


def _wanted_exit(comment: str) -> int:
    found = re.search(r"exit (\d+)", comment)
    return int(found.group(1)) if found else 0


@pytest.mark.timeout(900)
def test_every_readme_command_works_in_the_order_written(tmp_path: Path) -> None:
    guide = Guide(tmp_path)
    try:
        for command, comment in guide_commands():
            argv = shlex.split(command)
            if argv[0] == "curl":
                body = guide.curl(argv)
                # the README says who answers; `tollway apply` returns once the change is
                # stored, and its push reaches the client proxy a moment later: asked again
                # until it answers so (60 s), not only the instant the apply returned
                want = [c for c in ("blue", "green") if f"{c} answers" in comment]
                deadline = time.monotonic() + 60
                while want and f'"{want[0]}"' not in body and time.monotonic() < deadline:
                    time.sleep(0.5)
                    body = guide.curl(argv)
                for color in want:
                    assert f'"{color}"' in body, (command, body)
                continue
            if argv[1] == "up":
                guide.up(argv[2])
                continue
            if argv[1] == "proxy":
                guide.proxy(argv)
                continue
            if "--watch" in argv:
                seen, code = guide.watch(argv[1:], until="weights", timeout=90)
                assert "weights" in seen, f"$ {command}\n{seen}"
                assert code is None, f"$ {command}: exited {code} instead of watching\n{seen}"
                continue
            proc = guide.tollway(argv[1:])
            out = proc.stdout + proc.stderr
            assert proc.returncode == _wanted_exit(comment), f"$ {command}\n{out}"
            if argv[1:3] == ["rollout", "set-image"]:
                time.sleep(3)  # let the first step begin before the next command
    finally:
        guide.down()
        with contextlib.suppress(Exception):
            guide.down()
