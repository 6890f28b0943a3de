"""State files survive restarts and refuse to crash on junk; the safety bench holds its claims."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from tollway.rollout.persist import StateFile

BENCH = Path(__file__).resolve().parents[2] / "bench" / "rollout_safety.py"


def test_state_file_round_trip_and_atomic_replace(tmp_path: Path) -> None:
    f = StateFile(tmp_path, "Rollout", "payments", "payment-service")
    assert f.load() is None
    f.save({"state": {"phase": "Paused"}, "n": 1})
    f.save({"state": {"phase": "Healthy"}, "n": 2})
    assert f.load() == {"state": {"phase": "Healthy"}, "n": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["Rollout.payments.payment-service.json"]


def test_state_file_with_junk_starts_fresh(tmp_path: Path) -> None:
    f = StateFile(tmp_path, "Canary", "default", "../../etc")
    assert f.path.parent == tmp_path
    f.path.write_text("{not json")
    assert f.load() is None
    f.path.write_text("[1, 2]")
    assert f.load() is None


def test_bench_judge_beats_flagger_on_bad_canaries_without_false_rollbacks() -> None:
    spec = importlib.util.spec_from_file_location("rollout_safety", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["rollout_safety"] = mod
    spec.loader.exec_module(mod)
    results = mod.run(trials=40, seed=7)
    for rate in (0.05, 0.20):
        tollway = mod.pct(mod.exposure(results["tollway"][rate]), 0.5)
        flagger = mod.pct(mod.exposure(results["flagger"][rate]), 0.5)
        assert tollway * 5 <= flagger, (rate, tollway, flagger)
    healthy = results["tollway"][0.005]
    assert sum(o.decision == "rollback" for o in healthy) <= 1
    assert "Targets" in mod.report(results, 40)
