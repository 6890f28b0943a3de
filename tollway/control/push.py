"""When to push and what each proxy has: debounce + per-proxy coalescing + ACK/NACK ledger.

Pure: time comes in as `now`, nothing here waits or sends. The IO shell (control.plane)
asks the debouncer when to recompute, recomputes every proxy's snapshot, offers each
version to the ledger, and sends only what the ledger says is new for a connected proxy.
Coalescing falls out of that: a proxy that has not been sent version B yet when C is
computed is simply sent C (each stream holds one pending snapshot, never a queue).

Debounce follows Istio pilot's shape (wait for a quiet period, but never longer than a
maximum after the first change), with tens of milliseconds instead of pilot's 100 ms / 10 s
because a local mesh is small and people watch the traffic move.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass
class Debouncer:
    """Flush once changes stop for `quiet` seconds, or `max_delay` after the first one."""

    quiet: float = 0.01  # one apply is one burst of store changes: 10 ms of quiet is plenty
    max_delay: float = 0.1
    _first: float | None = None
    _last: float | None = None

    def touch(self, now: float) -> None:
        if self._first is None:
            self._first = now
        self._last = now

    @property
    def pending(self) -> bool:
        return self._first is not None

    def due_at(self) -> float | None:
        """When to flush, or None when nothing is pending."""
        if self._first is None or self._last is None:
            return None
        return min(self._last + self.quiet, self._first + self.max_delay)

    def ready(self, now: float) -> bool:
        due = self.due_at()
        return due is not None and now >= due

    def flushed(self) -> None:
        self._first = None
        self._last = None


@dataclass(frozen=True, slots=True)
class ProxySync:
    """What one proxy has: computed, sent, acknowledged, refused (and why)."""

    name: str
    connected: bool = False
    desired: str = ""
    sent: str = ""
    acked: str = ""
    nacked: str = ""
    nack_reason: str = ""
    sent_at: float | None = None
    acked_at: float | None = None
    connected_at: float | None = None
    pushes: int = 0

    @property
    def current(self) -> bool:
        """Has this proxy acknowledged the version it should have?"""
        return bool(self.desired) and self.acked == self.desired


@dataclass(frozen=True, slots=True)
class LedgerStats:
    proxies: int
    connected: int
    current: int
    nacked: int
    pushes: int


@dataclass
class Ledger:
    """Per-proxy sync state; every method is a small, total state transition."""

    _rows: dict[str, ProxySync] = field(default_factory=dict)

    def row(self, name: str) -> ProxySync:
        return self._rows.get(name) or ProxySync(name)

    def rows(self) -> tuple[ProxySync, ...]:
        return tuple(self._rows[k] for k in sorted(self._rows))

    def _put(self, row: ProxySync) -> None:
        self._rows[row.name] = row

    def forget(self, name: str) -> None:
        self._rows.pop(name, None)

    def connect(self, name: str, now: float) -> None:
        """A stream opened: whatever was sent before is unknown now, so resend (resync)."""
        self._put(replace(self.row(name), connected=True, sent="", connected_at=now))

    def disconnect(self, name: str) -> None:
        self._put(replace(self.row(name), connected=False, sent=""))

    def offer(self, name: str, version: str) -> bool:
        """Record the version this proxy should have; True when it must be sent now."""
        row = replace(self.row(name), desired=version)
        self._put(row)
        return row.connected and row.sent != version

    def needs_send(self, name: str) -> bool:
        row = self.row(name)
        return row.connected and bool(row.desired) and row.sent != row.desired

    def sent(self, name: str, version: str, now: float) -> None:
        row = self.row(name)
        self._put(replace(row, sent=version, sent_at=now, pushes=row.pushes + 1))

    def ack(self, name: str, version: str, now: float) -> None:
        self._put(replace(self.row(name), acked=version, acked_at=now))

    def nack(self, name: str, version: str, reason: str) -> None:
        self._put(replace(self.row(name), nacked=version, nack_reason=reason))

    def statistics(self) -> LedgerStats:
        rows = self._rows.values()
        return LedgerStats(
            proxies=len(self._rows),
            connected=sum(r.connected for r in rows),
            current=sum(r.current for r in rows),
            nacked=sum(bool(r.nacked) and r.nacked == r.desired for r in rows),
            pushes=sum(r.pushes for r in rows),
        )
