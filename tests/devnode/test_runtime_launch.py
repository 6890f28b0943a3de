"""The container launcher: argv, the shell prologue's quoting, and the pods' PATH."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from tollway.devnode.runtime import BindMount, Sandbox, default_path, launch_argv, launch_script


def test_launch_enters_the_pod_netns_then_a_private_mount_and_uts_namespace() -> None:
    sb = Sandbox("twp-1234abcd", Path("/s/resolv.conf"), Path("/s/hosts"), "web-0")
    argv = launch_argv(sb, ["python3", "-m", "http.server"])
    assert argv[:3] == ["nsenter", "--net=/run/netns/twp-1234abcd", "--"]
    assert argv[3:8] == ["unshare", "--mount", "--uts", "--propagation", "private"]
    assert argv[-4:] == ["devnode-launch", "python3", "-m", "http.server"]
    host_net = launch_argv(Sandbox(None, sb.resolv_conf, sb.hosts, "n"), ["true"])
    assert host_net[0] == "unshare"


def test_prologue_quotes_hostile_paths(tmp_path: Path) -> None:
    """Mount paths come from pod specs: the shell must see them as single words."""
    sb = Sandbox(None, Path("/s/resolv.conf"), Path("/s/hosts"), "h")
    evil = "/data/$(touch pwned); rm -rf 'x'"
    script = launch_script(sb, [BindMount(Path("/v/a b"), evil, read_only=True)])
    words = shlex.split(script)
    assert evil in words and "/v/a b" in words
    assert "mount -o remount,bind,ro " + shlex.quote(evil) in script
    assert script.endswith('exec "$@"')
    # Run only the quoting through a real shell with `mount` replaced by echo.
    out = subprocess.run(
        ["sh", "-c", script.replace("mount ", "echo ").replace("hostname ", "echo "), "x", "true"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    ).stdout
    assert evil in out and not (tmp_path / "pwned").exists()


def test_pods_path_starts_with_this_install() -> None:
    first, *rest = default_path().split(os.pathsep)
    assert first == str(Path(sys.executable).parent)
    assert first not in rest


def test_run_as_group_sets_the_gid_and_keeps_uid_0(tmp_path: Path) -> None:
    """securityContext.runAsGroup: what the capture rules' --gid-owner exemption matches."""
    sb = Sandbox(None, Path("/s/resolv.conf"), Path("/s/hosts"), "h")
    script = launch_script(sb, [], group=1337)
    assert script.endswith('exec setpriv --regid 1337 --clear-groups -- "$@"')
    assert launch_script(sb, []).endswith('exec "$@"')
    if os.geteuid() != 0:
        return
    out = subprocess.run(
        ["sh", "-c", script.replace("mount ", "echo ").replace("hostname ", "echo "), "x",
         "sh", "-c", "echo ids $(id -u) $(id -g) $(id -G)"],
        capture_output=True, text=True, cwd=tmp_path, check=True,
    ).stdout
    assert "ids 0 1337 1337" in out
