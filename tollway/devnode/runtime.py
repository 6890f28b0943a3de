"""Start a container's command as a host process inside its pod's namespaces, signal it, probe it.

A container process is launched as
    nsenter --net=/run/netns/<pod> -- unshare --mount --uts --propagation private -- \
        sh -c 'mount --bind R /etc/resolv.conf; mount --bind H /etc/hosts; hostname N; exec "$@"'
Every step `exec`s the next, so the pid we hold is the container's own pid. The private mount
namespace gives the pod its resolv.conf and hosts file while the rest of the host filesystem
stays visible (that is the point: no image, the command runs from the host). Each process leads
its own session, so signals go to its whole process group. stdout and stderr go straight to the
log file, so a crashed agent does not take a container's output pipe down with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from tollway.devnode.probes import Action, ExecAction, HttpAction, TcpAction
from tollway.plumbing.netns import NETNS_DIR

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Sandbox:
    """What every process of one pod shares: its netns and the files bound over /etc."""

    netns: str | None  # None: hostNetwork, the node's own network namespace
    resolv_conf: Path
    hosts: Path
    hostname: str


@dataclass(frozen=True)
class BindMount:
    source: Path
    target: str
    read_only: bool = False


def launch_script(sandbox: Sandbox, mounts: list[BindMount], group: int | None = None) -> str:
    """The shell prologue run inside the new mount namespace before `exec`ing the command.

    `group` (securityContext.runAsGroup) becomes the process's real, effective and file-system
    gid (setpriv). The uid stays 0: containers run the host's binaries, which may live under
    a private /root. A sidecar's runAsGroup is what the capture rules' `--gid-owner`
    exemption matches, so an injected proxy's own traffic is not captured here either."""
    binds = [
        BindMount(sandbox.resolv_conf, "/etc/resolv.conf", False),
        BindMount(sandbox.hosts, "/etc/hosts", False),
        *mounts,
    ]
    steps = []
    for m in binds:
        src, dst = shlex.quote(str(m.source)), shlex.quote(m.target)
        steps.append(f"mount --bind {src} {dst}")
        if m.read_only:
            steps.append(f"mount -o remount,bind,ro {dst}")
    steps.append(f"hostname {shlex.quote(sandbox.hostname)}")
    if group is not None:
        steps.append(f'exec setpriv --regid {int(group)} --clear-groups -- "$@"')
    else:
        steps.append('exec "$@"')
    return " && ".join(steps)


def launch_argv(
    sandbox: Sandbox, argv: list[str], mounts: list[BindMount] | None = None,
    group: int | None = None,
) -> list[str]:
    enter = ["nsenter", f"--net={NETNS_DIR / sandbox.netns}", "--"] if sandbox.netns else []
    return [
        *enter,
        "unshare",
        "--mount",
        "--uts",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        launch_script(sandbox, mounts or [], group),
        "devnode-launch",
        *argv,
    ]


def default_path() -> str:
    """The host's PATH with the agent's own interpreter folder first, as `tollway up` does:
    `command: [tollway, demo-app]` and `python` then mean this Tollway install."""
    here = str(Path(sys.executable).parent)
    parts = [p for p in os.environ.get("PATH", DEFAULT_PATH).split(os.pathsep) if p]
    return os.pathsep.join([here, *(p for p in parts if p != here)])


def process_env(env: Mapping[str, str], hostname: str) -> dict[str, str]:
    """Images usually set PATH and HOME; with no image, the host's defaults stand in."""
    out = {"PATH": default_path(), "HOME": "/root", "HOSTNAME": hostname}
    out.update(env)
    return out


async def spawn(
    sandbox: Sandbox,
    argv: list[str],
    env: Mapping[str, str],
    log_path: Path,
    cwd: str | None,
    mounts: list[BindMount] | None = None,
    group: int | None = None,
) -> asyncio.subprocess.Process:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return await asyncio.create_subprocess_exec(
            *launch_argv(sandbox, argv, mounts, group),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=process_env(env, sandbox.hostname),
            cwd=cwd,
            start_new_session=True,
        )


def pid_record(pid: int) -> str:
    """ "PID STARTTIME" (field 22 of /proc/PID/stat), so a sweeper never kills a recycled pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return f"{pid} 0"
    return f"{pid} {stat.rsplit(')', 1)[1].split()[19]}"


def signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def stop(proc: asyncio.subprocess.Process, grace: float) -> int:
    """SIGTERM the process group, SIGKILL it after `grace` seconds; returns the exit status."""
    if proc.returncode is None:
        signal_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout=max(grace, 0.0))
        except TimeoutError:
            signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()
    signal_group(proc.pid, signal.SIGKILL)  # stragglers the main process left in its group
    return proc.returncode if proc.returncode is not None else -9


async def probe(
    action: Action, *, timeout: float, pid: int | None, env: Mapping[str, str]
) -> tuple[bool, str]:
    """Run one probe; (ok, message). http/tcp dial the pod IP from the node, as kubelet does;
    exec runs inside the container's namespaces (network, mount, uts)."""
    try:
        if isinstance(action, HttpAction):
            url = f"{action.scheme}://{action.host}:{action.port}{action.path}"
            async with httpx.AsyncClient(verify=False, timeout=timeout, trust_env=False) as c:
                r = await c.get(url, headers=dict(action.headers))
            ok = 200 <= r.status_code < 400
            return ok, f"HTTP probe failed with statuscode: {r.status_code}" if not ok else ""
        if isinstance(action, TcpAction):
            _, w = await asyncio.wait_for(
                asyncio.open_connection(action.host, action.port), timeout
            )
            w.close()
            with contextlib.suppress(OSError):
                await w.wait_closed()
            return True, ""
        return await _exec_probe(action, timeout=timeout, pid=pid, env=env)
    except (OSError, httpx.HTTPError, TimeoutError) as e:
        return False, f"{type(e).__name__}: {e}"


async def _exec_probe(
    action: ExecAction, *, timeout: float, pid: int | None, env: Mapping[str, str]
) -> tuple[bool, str]:
    if pid is None:
        return False, "container is not running"
    proc = await asyncio.create_subprocess_exec(
        "nsenter",
        "-t",
        str(pid),
        "-n",
        "-m",
        "-u",
        "--",
        *action.command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=dict(env),
        start_new_session=True,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        signal_group(proc.pid, signal.SIGKILL)
        await proc.wait()
        return False, f"command timed out after {timeout}s"
    if proc.returncode == 0:
        return True, ""
    return False, f"exit code {proc.returncode}: {out.decode(errors='replace')[-200:]}"
