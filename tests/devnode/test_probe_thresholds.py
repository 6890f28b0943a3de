"""Probe schedules and thresholds, and action resolution (named ports, defaults)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lightkube.models.core_v1 import Container, Probe

from tollway.devnode.probes import (
    ExecAction,
    HttpAction,
    ProbeSpecError,
    ProbeTracker,
    TcpAction,
    resolve_action,
    trackers_for,
)


def probe(**kw: object) -> Probe:
    return Probe.from_dict({"tcpSocket": {"port": 80}, **kw})  # type: ignore[return-value]


def test_readiness_needs_success_threshold_in_a_row() -> None:
    t = ProbeTracker.start("readiness", probe(periodSeconds=5, successThreshold=2), 100.0)
    assert not t.verdict and t.due(100.0)
    assert t.record(True, 100.0) is None  # one success is not enough
    assert t.next_due == 105.0
    assert t.record(False, 105.0) is None  # a failure resets the run of successes
    assert t.record(True, 110.0) is None
    assert t.record(True, 115.0) is True


def test_liveness_flips_only_after_failure_threshold() -> None:
    t = ProbeTracker.start("liveness", probe(failureThreshold=3, initialDelaySeconds=7), 0.0)
    assert t.verdict and not t.due(6.9) and t.due(7.0)
    assert t.record(False, 7) is None
    assert t.record(False, 17) is None
    assert t.record(True, 27) is None  # success resets the count
    assert [t.record(False, x) for x in (37, 47, 57)] == [None, None, False]


def test_defaults_are_kubernetes_defaults() -> None:
    t = ProbeTracker.start("liveness", probe(), 0.0)
    assert (t.period, t.initial_delay, t.timeout, t.failure_threshold, t.success_threshold) == (
        10.0,
        0.0,
        1.0,
        3,
        1,
    )


def test_scale_shrinks_time_for_tests() -> None:
    t = ProbeTracker.start(
        "readiness", probe(periodSeconds=10, initialDelaySeconds=4), 0.0, scale=0.1
    )
    assert t.period == pytest.approx(1.0) and t.next_due == pytest.approx(0.4)


def test_liveness_success_threshold_must_be_one() -> None:
    with pytest.raises(ProbeSpecError, match=r"livenessProbe\.successThreshold must be 1"):
        ProbeTracker.start("liveness", probe(successThreshold=2), 0.0)


@given(st.lists(st.booleans(), max_size=60), st.integers(1, 5), st.integers(1, 5))
def test_verdict_matches_the_last_threshold_run(results: list[bool], ok_n: int, bad_n: int) -> None:
    t = ProbeTracker.start("readiness", probe(successThreshold=ok_n, failureThreshold=bad_n), 0.0)
    verdict = False
    run_ok = run_bad = 0
    for i, r in enumerate(results):
        t.record(r, float(i))
        run_ok, run_bad = (run_ok + 1, 0) if r else (0, run_bad + 1)
        if run_ok >= ok_n:
            verdict = True
        if run_bad >= bad_n:
            verdict = False
        assert t.verdict is verdict


def container(**kw: object) -> Container:
    base = {"name": "app", "image": "x", "ports": [{"name": "http", "containerPort": 8080}]}
    return Container.from_dict({**base, **kw})  # type: ignore[return-value]


def test_resolve_http_with_named_port_and_defaults() -> None:
    c = container()
    p = Probe.from_dict({"httpGet": {"port": "http", "httpHeaders": [{"name": "X", "value": "1"}]}})
    a = resolve_action(c, p, "readiness", "10.244.0.7")  # type: ignore[arg-type]
    assert a == HttpAction("10.244.0.7", 8080, "/", "http", (("X", "1"),))


def test_resolve_tcp_and_exec() -> None:
    c = container()
    assert resolve_action(c, probe(), "liveness", "10.0.0.2") == TcpAction("10.0.0.2", 80)
    p = Probe.from_dict({"exec": {"command": ["cat", "/tmp/ok"]}})
    assert resolve_action(c, p, "liveness", "x") == ExecAction(("cat", "/tmp/ok"))  # type: ignore[arg-type]


def test_unknown_named_port_is_one_clear_sentence() -> None:
    p = Probe.from_dict({"tcpSocket": {"port": "grpc"}})
    with pytest.raises(ProbeSpecError, match=r"readinessProbe\.tcpSocket\.port names 'grpc'"):
        resolve_action(container(), p, "readiness", "x")  # type: ignore[arg-type]


def test_grpc_probe_is_refused_by_name() -> None:
    p = Probe.from_dict({"grpc": {"port": 9000}})
    with pytest.raises(ProbeSpecError, match="grpc probes are not supported"):
        resolve_action(container(), p, "liveness", "x")  # type: ignore[arg-type]


def test_trackers_for_only_the_declared_probes() -> None:
    c = container(readinessProbe={"tcpSocket": {"port": 1}})
    assert list(trackers_for(c, 0.0)) == ["readiness"]
