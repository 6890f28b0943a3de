"""`tollway demo` in a real terminal, read as a person reads it.

The mesh must not draw over the story (no live table, no cursor games): every line the
demo says must still be on the screen, in order, at the end. Ctrl-C must end the demo,
the mesh and every replica within a few seconds, exit 130 and leave nothing running.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.cli.pty_kit import Terminal
from tests.conftest import free_port

pytestmark = pytest.mark.slow
STOP_WITHIN = 15.0  # seconds; generous for a loaded 2-core host (typically 1-3 s)


def _demo(*extra: str) -> tuple[Terminal, int]:
    api = free_port()
    term = Terminal([sys.executable, "-m", "tollway", "demo", "--api-port", str(api),
                     "--client-port", str(free_port()), *extra])
    return term, api


def _mesh_root(term: Terminal) -> Path:
    term.wait_for("mesh in ", 60)
    found = re.search(r"mesh in (\S+);", term.plain_output())
    assert found, term.tail()
    return Path(found.group(1))


def _pids_of(root: Path, api: int, seen: set[int]) -> set[int]:
    """Pids of the mesh: members.json's sidecars and apps, and any process naming its api."""
    with contextlib.suppress(OSError, ValueError):
        for row in json.loads((root / ".tollway" / "members.json").read_text()).values():
            seen.update(int(row[k]) for k in ("sidecar_pid", "app_pid") if row.get(k))
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if f"127.0.0.1:{api}".encode() in (entry / "cmdline").read_bytes():
                    seen.add(int(entry.name))
    return seen


def _alive(pids: set[int]) -> list[str]:
    out = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:120]
        except (OSError, IndexError):
            continue
        if state != "Z":
            out.append(f"{pid} {cmd.decode(errors='replace')}")
    return out


def _session(pid: int) -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.getsid(int(entry.name)) == pid:
                    out.add(int(entry.name))
    return out


@pytest.mark.timeout(420)
def test_demo_in_a_terminal_keeps_its_story_on_screen_and_ends_with_done() -> None:
    term, _api = _demo()
    try:
        code = term.wait_exit(400)
        screen = term.lines()
        said = [line.strip() for line in term.plain_output().splitlines() if line.strip()]
    finally:
        term.close()
    text = "\n".join(screen)
    assert code == 0, text[-6000:]
    # What a person sees at the end, without scrolling: the verdict and "Done."
    visible = "\n".join(term.display())
    assert "healthy v2 promoted, faulty v3 rolled back on its own. Done." in visible, visible
    # The whole story, in order, scrolled back: the weights moving, the judge, the verdicts.
    story = ["== rolling out v2", "stable  80% canary  20%", "all steps done: canary promoted",
             "== rolling out v3", "aborting, all traffic back to stable", "Done."]
    at = 0
    for step in story:
        found = text.find(step, at)
        assert found >= 0, f"{step!r} is not on the screen after position {at}:\n{text[-6000:]}"
        at = found
    # Nothing the demo said was drawn over: every line it wrote is on the screen, in order
    # (compared without blanks, as long lines wrap).
    blob = re.sub(r"\s+", "", "".join(screen))
    at = 0
    for line in said:
        found = blob.find(re.sub(r"\s+", "", line), at)
        assert found >= 0, f"said but not on the screen: {line!r}"
        at = found
    assert len([s for s in screen if re.search(r"stable +\d+% canary +\d+%", s)]) >= 10


@pytest.mark.timeout(300)
@pytest.mark.parametrize("how", ["ctrl-c", "ctrl-c twice", "sigterm"])
def test_interrupting_the_demo_ends_everything(how: str) -> None:
    term, api = _demo()
    try:
        root = _mesh_root(term)
        term.wait_for("== rolling out v2", 180)
        pids = _pids_of(root, api, set())
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the rolling update adds the canary's replicas
            pids = _pids_of(root, api, pids)
            time.sleep(0.2)
        assert len(pids) >= 4, f"expected sidecars and apps, found {pids}"
        session = _session(term.proc.pid)
        start = time.monotonic()
        if how == "sigterm":
            term.proc.send_signal(signal.SIGTERM)
        else:
            term.send(b"\x03")
            if how == "ctrl-c twice":
                time.sleep(0.3)
                term.send(b"\x03")
        code = term.wait_exit(STOP_WITHIN)
        took = time.monotonic() - start
        left = _alive(pids | session | _pids_of(root, api, set()))
    finally:
        term.close()
    want = 143 if how == "sigterm" else 130
    assert code == want, term.tail()
    assert took < STOP_WITHIN
    assert not left, f"still running after the demo ended: {left}"
    assert not root.exists(), f"{root} (with the mesh's CA key) was left behind"
    assert "connection" not in term.plain_output().split("stopping the mesh")[-1].lower()


@pytest.mark.timeout(420)
def test_demo_keep_leaves_the_mesh_up_and_says_where_to_look() -> None:
    import httpx

    term, api = _demo("--keep")
    try:
        root = _mesh_root(term)
        term.wait_for("Press Ctrl-C to stop it", 400)
        out = term.plain_output()
        url = f"http://127.0.0.1:{api}"
        assert f"dashboard      {url}/dashboard" in out, out[-3000:]
        assert "Done." in out
        assert httpx.get(f"{url}/dashboard", timeout=10).status_code == 200
        time.sleep(2.0)  # still up a while after the story ended
        assert term.proc.poll() is None
        pids = _pids_of(root, api, set())
        assert len(pids) >= 4
        term.send(b"\x03")
        code = term.wait_exit(STOP_WITHIN)
        left = _alive(pids)
    finally:
        term.close()
    assert code == 0, term.tail()  # Ctrl-C is how --keep is meant to end: not an error
    assert not left, left
    assert not root.exists(), f"{root} (with the mesh's CA key) was left behind"
