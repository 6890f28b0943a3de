"""A command in a real pseudo-terminal, read as a person sees it.

The child is a session leader whose controlling terminal is the pty, so writing "\\x03"
is a real Ctrl-C (the line discipline sends SIGINT to the foreground process group),
and isatty() is true, so the code under test takes its terminal paths (live tables,
cursor movement). `pyte` applies every escape sequence the way a terminal does; what
scrolled off the top stays in its history, so `lines()` is the whole screen a person
could scroll back through.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pyte

# Become the session leader (start_new_session) and take the pty as controlling terminal:
# on Linux the first tty a session leader opens without O_NOCTTY becomes it.
_TAKE_TTY = "import os,sys; os.close(os.open(os.ttyname(0), os.O_RDWR)); " \
            "os.execvp(sys.argv[1], sys.argv[1:])"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r")


class Terminal:
    def __init__(self, argv: Sequence[str], *, columns: int = 160, rows: int = 40,
                 cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
        self.screen = pyte.HistoryScreen(columns, rows, history=20000, ratio=0.5)
        self.stream = pyte.Stream(self.screen)
        self.raw = bytearray()
        self._lock = threading.Lock()
        master, slave = os.openpty()
        import fcntl
        import struct
        import termios

        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        full_env = dict(os.environ if env is None else env)
        full_env.setdefault("TERM", "xterm-256color")
        full_env.pop("COLUMNS", None)
        full_env.pop("LINES", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _TAKE_TTY, *argv], stdin=slave, stdout=slave,
            stderr=slave, start_new_session=True, cwd=cwd, env=full_env, close_fds=True)
        os.close(slave)
        self.master = master
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: every writer closed the slave side
                return
            if not data:
                return
            with self._lock:
                self.raw += data
                self.stream.feed(self._decoder.decode(data))

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def lines(self) -> list[str]:
        """Every line a person could see, scrolled-off history first."""
        with self._lock:
            cols = self.screen.columns
            hist = [
                "".join(line[x].data for x in range(cols)).rstrip()
                for line in self.screen.history.top
            ]
            return hist + [line.rstrip() for line in self.screen.display]

    def display(self) -> list[str]:
        with self._lock:
            return [line.rstrip() for line in self.screen.display]

    def plain_output(self) -> str:
        """The bytes written, escape sequences removed: what was said, not what is seen."""
        with self._lock:
            return ANSI.sub("", self.raw.decode("utf-8", "replace"))

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.plain_output():
                return
            if self.proc.poll() is not None:
                time.sleep(0.3)  # let the reader drain what was written last
                if text in self.plain_output():
                    return
                break
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared; the screen:\n" + self.tail())

    def wait_exit(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def tail(self, n: int = 60) -> str:
        return "\n".join(line for line in self.lines() if line.strip())[-8000:] if n else ""

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        with contextlib.suppress(OSError):
            os.close(self.master)
