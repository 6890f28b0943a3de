from __future__ import annotations

import pytest

from tollway.control import proxies


def test_register_body_becomes_a_vm_entry_and_endpoint() -> None:
    entry = proxies.entry_from_register({
        "node": {"name": "vm-1.default", "workload": "billing", "labels": {"app": "billing"}},
        "admin": "10.0.0.5:15000", "inbound": "10.0.0.5:15006", "ports": {"app": 8080},
    })
    assert entry.origin == "vm" and entry.address == "10.0.0.5"
    replica = proxies.replica_from_entry(entry)
    assert replica is not None
    assert (replica.address, replica.port, replica.app_port) == ("10.0.0.5", 15006, 8080)
    assert replica.kind == "WorkloadEntry" and replica.labels == {"app": "billing"}


def test_register_without_inbound_is_not_an_endpoint() -> None:
    entry = proxies.entry_from_register({"node": {"name": "client-vm"}})
    assert proxies.replica_from_entry(entry) is None


@pytest.mark.parametrize("body, words", [
    ({}, "'node' must be an object"),
    ({"node": {"name": "x", "kind": "robot"}}, "'node' is not a Node"),
    ({"node": {"name": "x"}, "admin": "nohost"}, "is not host:port"),
    ({"node": {"name": "x"}, "ports": [1]}, "'ports' must be an object"),
])
def test_register_refuses_bad_bodies_with_a_reason(body: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        proxies.entry_from_register(body)


def test_book_upsert_reports_changes() -> None:
    book = proxies.ProxyBook()
    entry = proxies.entry_from_register({"node": {"name": "a"}})
    assert book.upsert(entry) and not book.upsert(entry)
    assert book.remove("a") and book.all() == ()
