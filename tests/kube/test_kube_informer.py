"""List+watch bookkeeping: versions, bookmarks, 410 -> relist with deletions diffed."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollway.kube.informer import Cache, Expired, WatchFailed


def obj(name: str, rv: str, ns: str = "a") -> dict[str, Any]:
    return {"kind": "Service", "metadata": {"name": name, "namespace": ns, "resourceVersion": rv}}


def test_list_then_watch_events_and_bookmarks_move_the_version() -> None:
    cache = Cache()
    events = cache.replace([obj("x", "1"), obj("y", "2")], "5")
    assert [(e.type, e.key) for e in events] == [("ADDED", ("a", "x")), ("ADDED", ("a", "y"))]
    assert cache.synced and cache.resource_version == "5"
    ev = cache.apply({"type": "MODIFIED", "object": obj("x", "7")})
    assert ev is not None and ev.type == "MODIFIED" and cache.resource_version == "7"
    bookmark = {"kind": "Service", "metadata": {"resourceVersion": "9"}}
    assert cache.apply({"type": "BOOKMARK", "object": bookmark}) is None
    assert cache.resource_version == "9"
    ev = cache.apply({"type": "DELETED", "object": obj("y", "10")})
    assert ev is not None and ev.type == "DELETED" and set(cache.objects) == {("a", "x")}
    # a replayed event of a version already seen changes nothing
    assert cache.apply({"type": "MODIFIED", "object": obj("x", "7")}) is None


def test_gone_raises_expired_and_the_relist_reports_what_was_deleted_meanwhile() -> None:
    cache = Cache()
    cache.replace([obj("x", "1"), obj("y", "2")], "2")
    with pytest.raises(Expired):
        cache.apply({"type": "ERROR", "object": {"kind": "Status", "code": 410,
                                                 "message": "too old resource version"}})
    assert not cache.synced
    events = cache.replace([obj("x", "1"), obj("z", "30")], "31")
    assert sorted((e.type, e.key[1]) for e in events) == [("ADDED", "z"), ("DELETED", "y")]


def test_other_errors_are_watch_failures() -> None:
    with pytest.raises(WatchFailed):
        Cache().apply({"type": "ERROR", "object": {"code": 500, "message": "boom"}})
    with pytest.raises(WatchFailed):
        Cache().apply({"type": "ADDED"})


@given(st.lists(st.tuples(st.sampled_from("abcde"), st.booleans()), max_size=30),
       st.sets(st.sampled_from("abcde")))
def test_relist_after_any_watch_history_matches_the_server(
        history: list[tuple[str, bool]], final: set[str]) -> None:
    """Whatever the watch saw, a relist leaves the cache equal to the list, and the
    events it returns turn the old cache into the new one."""
    cache = Cache()
    cache.replace([], "0")
    rv = 0
    for name, alive in history:
        rv += 1
        kind = "MODIFIED" if alive else "DELETED"
        cache.apply({"type": kind, "object": obj(name, str(rv))})
    before = set(cache.objects)
    events = cache.replace([obj(n, str(rv + 100)) for n in final], str(rv + 100))
    after = set(before)
    for e in events:
        if e.type == "DELETED":
            after.discard(e.key)
        else:
            after.add(e.key)
    assert after == {("a", n) for n in final} == set(cache.objects)
