"""Local processes for `tollway up`: spawn with logs, check readiness, stop drained.

A `Proc` is either a child we spawned or a process we adopted after a restart of
`tollway up` (its pid recorded in the state dir); both are waited on and stopped the
same way, always by pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

Dial = Callable[[str, int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]

POLL = 0.05


class Proc:
    """A process we are responsible for, by pid."""

    def __init__(self, pid: int, child: asyncio.subprocess.Process | None = None) -> None:
        self.pid = pid
        self._child = child

    @property
    def adopted(self) -> bool:
        return self._child is None

    def alive(self) -> bool:
        if self._child is not None:
            return self._child.returncode is None
        return pid_alive(self.pid)

    async def wait(self) -> int | None:
        if self._child is not None:
            return await self._child.wait()
        while pid_alive(self.pid):
            await asyncio.sleep(0.2)
        return None

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    async def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds."""
        if not self.alive():
            return
        self.signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.wait(), grace)
        except TimeoutError:
            self.signal(signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wait(), 2.0)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of someone else still "exists"; treat it as gone
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
    except (OSError, IndexError):
        return True
    return state != "Z"


async def spawn(
    argv: Sequence[str], *, env: Mapping[str, str], log_path: Path, cwd: str | None = None
) -> Proc:
    """Start `argv` with stdout+stderr appended to `log_path`, in its own session.

    Its own session keeps a terminal's Ctrl-C away from it: `tollway up` stops every
    process itself, in order, so that sidecars drain before their apps go.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        child = await asyncio.create_subprocess_exec(
            *argv, env=dict(env), stdout=log, stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL, cwd=cwd, start_new_session=True,
        )
    return Proc(child.pid, child)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


class PortAllocator:
    """Free loopback ports, never the same one twice in one run.

    Ports come from below the kernel's ephemeral range (10000 up to it): a port handed out
    there cannot be taken meanwhile as the source port of some outgoing connection, which
    happens with port-0 probing once hundreds of connections are open.
    """

    def __init__(self, reserved: Sequence[int] = (), low: int = 10000,
                 high: int | None = None) -> None:
        self._given: set[int] = set(reserved)
        self.low = low
        self.high = high if high is not None else _ephemeral_low()
        self._next = low + random.SystemRandom().randrange(max(1, self.high - low))

    def reserve(self, port: int) -> None:
        self._given.add(port)

    def allocate(self) -> int:
        span = self.high - self.low
        for _ in range(max(span, 0)):
            port = self._next
            self._next = self.low + (self._next + 1 - self.low) % span
            if port not in self._given and _bindable(port):
                self._given.add(port)
                return port
        return self._any_free()

    def _any_free(self) -> int:
        for _ in range(100):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
            if port not in self._given:
                self._given.add(port)
                return port
        raise RuntimeError("no free loopback port found")


def port_free(port: int) -> bool:
    """Bindable on 127.0.0.1 with SO_REUSEADDR, as servers (ours, Go's) bind: a port
    left in TIME_WAIT counts as free."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def port_open(port: int, host: str = "127.0.0.1", dial: Dial | None = None) -> bool:
    """Something accepts on host:port; `dial` connects from elsewhere (a replica's netns)."""
    try:
        _, writer = await asyncio.wait_for((dial or asyncio.open_connection)(host, port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


async def http_ok(port: int, path: str, host: str = "127.0.0.1",
                  dial: Dial | None = None) -> bool:
    """A readinessProbe httpGet: any status from 200 to 399 is ready."""
    try:
        reader, writer = await asyncio.wait_for((dial or asyncio.open_connection)(host, port),
                                                1.0)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
        line = await asyncio.wait_for(reader.readline(), 2.0)
        parts = line.split()
        return len(parts) >= 2 and parts[1].isdigit() and 200 <= int(parts[1]) < 400
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
