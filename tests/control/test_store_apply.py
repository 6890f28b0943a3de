from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tollway.config.findings import Finding, Severity
from tollway.config.resource import ResourceSet
from tollway.control.store import Change, ConfigStore
from tollway.kit.clock import FakeClock


def _no_checks(_r: ResourceSet) -> Sequence[Finding]:
    return ()


def _forbid_name(bad: str):  # type: ignore[no-untyped-def]
    def check(resources: ResourceSet) -> Sequence[Finding]:
        return [
            Finding("f.yaml", 1, r.kind, r.name, "metadata.name", "forbidden name")
            for r in resources
            if r.name == bad
        ]

    return check


def test_store_apply_creates_with_generation_one(clock: FakeClock, make_resource: Any) -> None:
    store = ConfigStore(validator=_no_checks, clock=clock)
    result = store.apply([make_resource("Service", "a"), make_resource("Service", "b")])
    assert result.ok and set(result.changed) == {
        ("Service", "default", "a"), ("Service", "default", "b")
    }
    meta = store.meta(("Service", "default", "a"))
    assert meta is not None and meta.generation == 1 and meta.resource_version == 1
    assert len(store.current()) == 2


def test_store_apply_invalid_changes_nothing(clock: FakeClock, make_resource: Any) -> None:
    store = ConfigStore(validator=_forbid_name("bad"), clock=clock)
    store.apply([make_resource("Service", "a")])
    result = store.apply([make_resource("Service", "b"), make_resource("Service", "bad")])
    assert not result.ok
    assert [f.message for f in result.findings] == ["forbidden name"]
    assert {r.name for r in store.current()} == {"a"}
    assert store.revision == 1


def test_store_warnings_do_not_block(clock: FakeClock, make_resource: Any) -> None:
    def warn(resources: ResourceSet) -> Sequence[Finding]:
        return [Finding("f", 1, "S", "a", "-", "hmm", Severity.WARNING)]

    store = ConfigStore(validator=warn, clock=clock)
    result = store.apply([make_resource("Service", "a")])
    assert result.ok and len(result.findings) == 1


def test_store_generation_bumps_only_on_spec_change(clock: FakeClock, make_resource: Any) -> None:
    store = ConfigStore(validator=_no_checks, clock=clock)
    key = ("VirtualService", "default", "vs")
    store.apply([make_resource("VirtualService", "vs", {"w": 1})])
    store.apply([make_resource("VirtualService", "vs", {"w": 1}, labels={"x": "y"})])
    meta = store.meta(key)
    assert meta is not None and meta.generation == 1 and meta.resource_version == 2
    store.apply([make_resource("VirtualService", "vs", {"w": 2})])
    meta = store.meta(key)
    assert meta is not None and meta.generation == 2 and meta.resource_version == 3


def test_store_identical_apply_is_a_no_op(clock: FakeClock, make_resource: Any) -> None:
    store = ConfigStore(validator=_no_checks, clock=clock)
    seen: list[Change] = []
    store.subscribe(seen.append)
    store.apply([make_resource("Service", "a", {"p": 1})])
    result = store.apply([make_resource("Service", "a", {"p": 1})])
    assert result.ok and result.changed == () and len(seen) == 1


def test_store_delete_and_subscribers(clock: FakeClock, make_resource: Any) -> None:
    store = ConfigStore(validator=_no_checks, clock=clock)
    seen: list[Change] = []
    unsubscribe = store.subscribe(seen.append)
    store.apply([make_resource("Service", "a")], actor="folder", reason="init")
    result = store.delete([("Service", "default", "a"), ("Service", "default", "zzz")])
    assert result.ok and result.deleted == (("Service", "default", "a"),)
    assert [c.revision for c in seen] == [1, 2]
    unsubscribe()
    store.apply([make_resource("Service", "b")])
    assert len(seen) == 2
    assert store.meta(("Service", "default", "a")) is None


def test_store_delete_blocked_by_resulting_set(clock: FakeClock, make_resource: Any) -> None:
    def needs_a(resources: ResourceSet) -> Sequence[Finding]:
        if resources.get("Service", "default", "b") and not resources.get(
            "Service", "default", "a"
        ):
            return [Finding("f", 1, "Service", "b", "spec", "b needs a")]
        return []

    store = ConfigStore(validator=needs_a, clock=clock)
    assert store.apply([make_resource("Service", "a"), make_resource("Service", "b")]).ok
    result = store.delete([("Service", "default", "a")])
    assert not result.ok and store.get(("Service", "default", "a")) is not None


def test_store_audit_records_actor_and_reason(clock: FakeClock, make_resource: Any) -> None:
    store = ConfigStore(validator=_no_checks, clock=clock)
    store.apply([make_resource("Service", "a")], actor="rollout", reason="step 2: 20%")
    clock.advance(5)
    store.delete([("Service", "default", "a")], actor="user", reason="cleanup")
    entries = store.audit()
    assert [(e.actor, e.action, e.reason) for e in entries] == [
        ("rollout", "apply", "step 2: 20%"), ("user", "delete", "cleanup")
    ]
    assert entries[1].time - entries[0].time == 5


def test_store_status_is_separate_and_copied(clock: FakeClock, make_resource: Any) -> None:
    store = ConfigStore(validator=_no_checks, clock=clock)
    key = ("Rollout", "default", "r")
    store.set_status(key, {"phase": "Progressing"})
    status = store.status(key)
    status["phase"] = "mutated"
    assert store.status(key) == {"phase": "Progressing"}
    assert store.status(("Rollout", "default", "other")) == {}
    assert store.revision == 0


def test_store_managed_by_tracks_last_writer(clock: FakeClock, make_resource: Any) -> None:
    store = ConfigStore(validator=_no_checks, clock=clock)
    store.apply([make_resource("Service", "a"), make_resource("Service", "b")], actor="folder")
    store.apply([make_resource("Service", "b", {"x": 1})], actor="user")
    assert store.managed_by("folder") == (("Service", "default", "a"),)
