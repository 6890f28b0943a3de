from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tollway.control.push import Debouncer, Ledger


def test_debouncer_waits_for_quiet() -> None:
    d = Debouncer(quiet=0.02, max_delay=0.1)
    assert d.due_at() is None and not d.ready(0.0)
    d.touch(1.0)
    d.touch(1.01)
    assert not d.ready(1.02)
    assert d.ready(1.03)
    d.flushed()
    assert not d.pending


def test_debouncer_caps_delay_under_constant_changes() -> None:
    d = Debouncer(quiet=0.02, max_delay=0.1)
    t = 0.0
    while not d.ready(t):
        d.touch(t)
        t += 0.01
    assert t <= 0.1 + 0.01 + 1e-9  # at the first check after max_delay


@given(st.lists(st.floats(min_value=0, max_value=0.05), min_size=1, max_size=50))
def test_debouncer_due_never_after_max_delay(gaps: list[float]) -> None:
    d = Debouncer(quiet=0.02, max_delay=0.1)
    t = 0.0
    first = t
    for gap in gaps:
        d.touch(t)
        due = d.due_at()
        assert due is not None and due <= first + 0.1 + 1e-9 and due >= t
        t += gap
        if d.ready(t):
            break


def test_ledger_sends_only_to_connected_and_only_new() -> None:
    ledger = Ledger()
    assert not ledger.offer("p", "v1")  # not connected yet
    ledger.connect("p", 0.0)
    assert ledger.needs_send("p")
    ledger.sent("p", "v1", 0.0)
    assert not ledger.offer("p", "v1")
    assert ledger.offer("p", "v2")


def test_ledger_ack_makes_current_and_nack_keeps_reason() -> None:
    ledger = Ledger()
    ledger.connect("p", 0.0)
    ledger.offer("p", "v1")
    ledger.sent("p", "v1", 0.0)
    ledger.ack("p", "v1", 0.1)
    assert ledger.row("p").current
    ledger.offer("p", "v2")
    ledger.sent("p", "v2", 0.2)
    ledger.nack("p", "v2", "bad regex")
    row = ledger.row("p")
    assert not row.current and row.acked == "v1" and row.nack_reason == "bad regex"
    assert ledger.statistics().nacked == 1


def test_ledger_reconnect_resends_current_version() -> None:
    ledger = Ledger()
    ledger.connect("p", 0.0)
    ledger.offer("p", "v1")
    ledger.sent("p", "v1", 0.0)
    ledger.disconnect("p")
    assert not ledger.needs_send("p")
    ledger.connect("p", 1.0)
    assert ledger.needs_send("p")
    assert ledger.statistics().connected == 1


_OPS = st.lists(st.tuples(
    st.sampled_from(["connect", "disconnect", "offer", "send", "ack", "nack"]),
    st.sampled_from(["v1", "v2", "v3"]),
), max_size=40)


@given(_OPS)
def test_ledger_invariants_hold_for_any_sequence(ops: list[tuple[str, str]]) -> None:
    ledger = Ledger()
    for op, version in ops:
        row = ledger.row("p")
        if op == "connect":
            ledger.connect("p", 0.0)
        elif op == "disconnect":
            ledger.disconnect("p")
        elif op == "offer":
            ledger.offer("p", version)
        elif op == "send" and ledger.needs_send("p"):
            ledger.sent("p", row.desired, 0.0)
        elif op == "ack" and row.sent:
            ledger.ack("p", row.sent, 0.0)
        elif op == "nack" and row.sent:
            ledger.nack("p", row.sent, "no")
        row = ledger.row("p")
        assert ledger.needs_send("p") == (row.connected and bool(row.desired)
                                          and row.sent != row.desired)
        assert row.current == (bool(row.desired) and row.acked == row.desired)
        if not row.connected:
            assert row.sent == ""  # whatever was in flight is resent after a reconnect
