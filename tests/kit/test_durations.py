from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollway.kit.durations import DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5s", 5.0), ("500ms", 0.5), ("1m30s", 90.0), ("0.25s", 0.25), ("1h", 3600.0), ("0", 0.0)],
)
def test_parse_duration_accepts_go_and_protobuf_forms(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "5 s", "s", "1x", "five seconds", "1m30"])
def test_parse_duration_refuses_non_durations(text: str) -> None:
    with pytest.raises(DurationError):
        parse_duration(text)


@given(st.integers(min_value=0, max_value=10**6))
def test_format_then_parse_round_trips_whole_seconds(n: int) -> None:
    assert parse_duration(format_duration(float(n))) == n
