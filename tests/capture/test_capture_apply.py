"""`tollway iptables` in a real network namespace: the rules land in that namespace's nat
table only, a second run and a missing iptables-restore fail closed with one sentence."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tollway.capture import rules

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(shutil.which("ip") is None or shutil.which("iptables-save") is None,
                       reason="needs iproute2 and iptables"),
]

IP = shutil.which("ip") or "ip"
TOLLWAY = str(Path(sys.executable).with_name("tollway"))


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"twcap-{random.randrange(16**6):06x}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def _run(ns: str, *argv: str, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([IP, "netns", "exec", ns, *argv], capture_output=True, text=True,
                          timeout=60, env=env)


def _nat(ns: str) -> list[str]:
    out = _run(ns, "iptables-save", "-t", "nat").stdout
    return [line for line in out.splitlines() if line.startswith("-A")]


def _by_chain(lines: list[str]) -> dict[str, list[list[str]]]:
    """Rules per chain in order, each as its sorted words without the `-m tcp` that
    iptables-save adds (it also reorders a rule's matches)."""
    chains: dict[str, list[list[str]]] = {}
    for line in lines:
        words = line.replace(" -m tcp ", " ").split()
        chains.setdefault(words[1], []).append(sorted(words))
    return chains


def test_rules_are_installed_in_the_namespace_only(netns: str) -> None:
    host_before = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True,
                                 text=True).stdout.count("ISTIO_")
    a = rules.ANNOTATION_PREFIX
    cap = rules.from_annotations({a + "excludeOutboundIPRanges": "10.96.0.0/12",
                                  a + "excludeOutboundPorts": "22,443"})
    done = _run(netns, TOLLWAY, "iptables", *rules.flags(cap))
    assert done.returncode == 0, done.stderr
    want = [r for r in rules.rules(cap) if r.startswith("-A")]
    # iptables-save prints chain by chain; within each chain, in the order written
    assert _by_chain(_nat(netns)) == _by_chain(want)
    host_after = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True,
                                text=True).stdout.count("ISTIO_")
    assert host_after == host_before

    again = _run(netns, TOLLWAY, "iptables", *rules.flags(cap))
    assert again.returncode == 1
    assert "already" in again.stderr and "Traceback" not in again.stderr
    assert _by_chain(_nat(netns)) == _by_chain(want)  # nothing doubled


def test_missing_iptables_fails_closed(netns: str, tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}
    done = _run(netns, TOLLWAY, "iptables", env=env)
    assert done.returncode == 1
    assert "iptables-restore is not installed" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert _nat(netns) == []


def test_dry_run_changes_nothing(netns: str) -> None:
    done = _run(netns, TOLLWAY, "iptables", "--dry-run", "-i", "10.0.0.0/8")
    assert done.returncode == 0
    assert "-A ISTIO_OUTPUT -d 10.0.0.0/8 -j ISTIO_REDIRECT" in done.stdout
    assert _nat(netns) == []
