"""Probe schedules and result thresholds, as a kubelet applies them; no sockets here.

A tracker answers two questions for the worker: "is a probe due now?" and "did this result
flip the verdict?". Kubelet semantics kept: nothing runs before initialDelaySeconds; one probe
per periodSeconds; a verdict flips only after successThreshold consecutive successes or
failureThreshold consecutive failures; readiness starts False, liveness and startup start
True (a container is presumed alive until proven otherwise); liveness/startup require
successThreshold 1. The action (httpGet/tcpSocket/exec) is resolved here too, named ports
included, so the IO side only dials what it is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lightkube.models.core_v1 import Container, Probe

Kind = Literal["readiness", "liveness", "startup"]


@dataclass(frozen=True)
class HttpAction:
    host: str
    port: int
    path: str
    scheme: str
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class TcpAction:
    host: str
    port: int


@dataclass(frozen=True)
class ExecAction:
    command: tuple[str, ...]


Action = HttpAction | TcpAction | ExecAction


class ProbeSpecError(ValueError):
    """A probe the agent cannot run; the message names the field and the fix."""


def resolve_port(container: Container, port: int | str, where: str) -> int:
    if isinstance(port, int):
        return port
    if port.isdigit():
        return int(port)
    for p in container.ports or []:
        if p.name == port:
            return p.containerPort
    raise ProbeSpecError(
        f"container {container.name!r} {where}.port names {port!r}, which is not in its "
        "ports[].name; use a number or add the named port"
    )


def resolve_action(container: Container, probe: Probe, kind: Kind, pod_ip: str) -> Action:
    where = f"{kind}Probe"
    if probe.httpGet is not None:
        h = probe.httpGet
        headers = tuple((x.name, x.value) for x in h.httpHeaders or [])
        return HttpAction(
            host=h.host or pod_ip,
            port=resolve_port(container, h.port, f"{where}.httpGet"),
            path=h.path or "/",
            scheme=(h.scheme or "HTTP").lower(),
            headers=headers,
        )
    if probe.tcpSocket is not None:
        t = probe.tcpSocket
        return TcpAction(
            host=t.host or pod_ip, port=resolve_port(container, t.port, f"{where}.tcpSocket")
        )
    if probe.exec is not None and probe.exec.command:
        return ExecAction(command=tuple(probe.exec.command))
    raise ProbeSpecError(
        f"container {container.name!r} {where} has no httpGet, tcpSocket or exec.command; "
        "devnode runs those three (grpc probes are not supported)"
    )


@dataclass
class ProbeTracker:
    kind: Kind
    period: float
    initial_delay: float
    timeout: float
    success_threshold: int
    failure_threshold: int
    verdict: bool
    next_due: float
    successes: int = 0
    failures: int = 0

    @classmethod
    def start(
        cls, kind: Kind, probe: Probe, started_at: float, *, scale: float = 1.0
    ) -> ProbeTracker:
        """A tracker for a container started at `started_at`; `scale` shrinks times in tests."""
        success = probe.successThreshold or 1
        if kind != "readiness" and success != 1:
            raise ProbeSpecError(f"{kind}Probe.successThreshold must be 1, got {success}")
        delay = float(probe.initialDelaySeconds or 0) * scale
        return cls(
            kind=kind,
            period=float(probe.periodSeconds or 10) * scale,
            initial_delay=delay,
            timeout=float(probe.timeoutSeconds or 1) * max(scale, 0.5),
            success_threshold=success,
            failure_threshold=probe.failureThreshold or 3,
            verdict=kind != "readiness",
            next_due=started_at + delay,
        )

    def due(self, now: float) -> bool:
        return now >= self.next_due

    def record(self, ok: bool, now: float) -> bool | None:
        """Count a result; returns the new verdict when it flips, else None."""
        self.next_due = now + self.period
        if ok:
            self.successes += 1
            self.failures = 0
            if not self.verdict and self.successes >= self.success_threshold:
                self.verdict = True
                return True
        else:
            self.failures += 1
            self.successes = 0
            if self.verdict and self.failures >= self.failure_threshold:
                self.verdict = False
                return False
        return None


def trackers_for(
    container: Container, started_at: float, *, scale: float = 1.0
) -> dict[Kind, ProbeTracker]:
    out: dict[Kind, ProbeTracker] = {}
    specs: tuple[tuple[Kind, Probe | None], ...] = (
        ("startup", container.startupProbe),
        ("liveness", container.livenessProbe),
        ("readiness", container.readinessProbe),
    )
    for kind, probe in specs:
        if probe is not None:
            out[kind] = ProbeTracker.start(kind, probe, started_at, scale=scale)
    return out
