"""The condition evaluator: Argo's subset, evaluated without eval, with clear errors."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollway.rollout.analysis import expr


@pytest.mark.parametrize(
    ("source", "result", "expected"),
    [
        ("result[0] >= 0.99", [0.995], True),
        ("result[0] >= 0.99", [0.98], False),
        ("result[0] <= 200", [199.9], True),
        ("result >= 0.95", 0.96, True),
        ("result[0] >= 0.9 and result[0] < 1", [0.95], True),
        ("result[0] >= 0.9 && result[0] < 0.92", [0.95], False),
        ("not (result[0] > 1) || false", [2], False),
        ("len(result) == 0 || result[0] > 5", [], True),
        ("isNaN(result[0])", [math.nan], True),
        ("default(result[0], 0) >= 0", [math.nan], True),
        ("asFloat(result) > 1.5", "2.5", True),
        ("asInt(result) == 3", "3", True),
        ("result.status == 'ok' and result.latency * 1000 < 250",
         {"status": "ok", "latency": 0.2}, True),
        ("(result[0] + result[1]) / 2 > 0.5 - 0.1", [0.5, 0.5], True),
        ("result[-1] == 3", [1, 2, 3], True),
        ("!(result[0] == 1)", [1], False),
        ("abs(result[0] - 1) < 0.01", [1.005], True),
        ("result in [1, 2]", 2, True),
    ],
)
def test_condition_evaluates_argo_subset(source: str, result: object, expected: bool) -> None:
    assert expr.evaluate(source, result) is expected


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("__import__('os')", "not supported"),
        ("result[0] >= ", "unexpected"),
        ("result[0] >= 0.9 ; 1", "unexpected character"),
        ("foo > 1", "unknown name 'foo'"),
        ("result[3] > 1", "out of range"),
        ("result[0] + 1", "not true/false"),
        ("result[0] > 'x'", "needs a number"),
        ("result.missing == 1", "no field"),
    ],
)
def test_condition_refuses_unsupported_or_bad_input(source: str, fragment: str) -> None:
    with pytest.raises(expr.ExprError, match=fragment):
        expr.evaluate(source, [0.5] if "." not in source else {"a": 1})


def test_condition_precedence_and_binds_tighter_than_or() -> None:
    assert expr.evaluate("true or false and false", None) is True
    assert expr.evaluate("2 + 3 * 4 == 14", None) is True
    assert expr.evaluate("2 ** 3 ** 2 == 512", None) is True


FINITE = st.floats(allow_nan=False, allow_infinity=False)


@given(FINITE, FINITE)
def test_condition_comparisons_match_python(a: float, b: float) -> None:
    for op in ("<", "<=", ">", ">=", "==", "!="):
        assert expr.evaluate(f"result[0] {op} result[1]", [a, b]) is eval(f"a {op} b")


@given(st.text(max_size=40))
def test_condition_never_crashes_on_arbitrary_text(source: str) -> None:
    try:
        expr.evaluate(source, [1.0])
    except expr.ExprError:
        pass
