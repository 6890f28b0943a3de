"""Property tests: on arbitrary YAML-shaped input, loading (and compiling what loads) never
raises anything but the project's own ConfigError; every problem is a Finding."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tollway.config.findings import ConfigError, Finding
from tollway.config.load import load_text
from tollway.config.source import parse_text

SEEDS = Path(__file__).resolve().parents[1] / "data" / "seed"
SEED_DOCS: list[Any] = [
    d.data for p in sorted(SEEDS.glob("*.yaml")) for d in parse_text(p.read_text())[0]
]
VOCAB = ["host", "subset", "weight", "route", "match", "uri", "prefix", "regex", "exact",
         "timeout", "retries", "attempts", "subsets", "labels", "name", "spec", "metadata",
         "trafficPolicy", "tls", "mode", "steps", "setWeight", "pause", "duration", "x"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40),
                    st.floats(allow_nan=True), st.text(max_size=12), st.sampled_from(VOCAB))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(VOCAB) | st.text(max_size=6),
                                            inner, max_size=4)),
    max_leaves=20,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated_seed(draw: st.DrawFn) -> Any:
    """A seed document with a few nodes replaced, deleted or added."""
    doc = copy.deepcopy(draw(st.sampled_from(SEED_DOCS)))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for seg in path[:-1]:
            parent = parent[seg]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(values)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(VOCAB))] = draw(values)
    return doc


def _strings(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set().union(*(_strings(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(_strings(v) for v in node)) if node else set()
    return {node} if isinstance(node, str) else set()


SEED_STRINGS = sorted(set().union(*(_strings(d) for d in SEED_DOCS)))


@st.composite
def plausible_seed(draw: st.DrawFn) -> Any:
    """A seed document with scalars swapped for others of the same type (mostly valid)."""
    doc = copy.deepcopy(draw(st.sampled_from(SEED_DOCS)))
    for _ in range(draw(st.integers(0, 3))):
        paths = [p for p in _paths(doc) if p]
        path = draw(st.sampled_from(paths))
        parent = doc
        for seg in path[:-1]:
            parent = parent[seg]
        old = parent[path[-1]]
        if isinstance(old, bool):
            parent[path[-1]] = draw(st.booleans())
        elif isinstance(old, int):
            parent[path[-1]] = draw(st.integers(0, 100))
        elif isinstance(old, str) and path[-1] not in ("apiVersion", "kind"):
            parent[path[-1]] = draw(st.sampled_from(SEED_STRINGS))
    return doc


def _check(text: str) -> None:
    try:
        result = load_text(text, "prop.yaml")
    except ConfigError:
        return
    assert all(isinstance(f, Finding) for f in result.findings)
    assert all(f.line >= 0 and f.file == "prop.yaml" for f in result.findings)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_seed())
def test_load_mutated_seeds_never_raises(doc: Any) -> None:
    _check(json.dumps(doc, allow_nan=True))


@settings(max_examples=150, deadline=None)
@given(values)
def test_load_arbitrary_documents_never_raises(doc: Any) -> None:
    _check(json.dumps(doc, allow_nan=True))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!|>'\"#\n\t %@`,?.0")), max_size=80))
def test_load_arbitrary_text_never_raises(text: str) -> None:
    _check(text)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(plausible_seed(), min_size=1, max_size=4))
def test_compile_what_loads_never_raises_but_config_error(docs: list[Any]) -> None:
    translate = pytest.importorskip("tollway.control.translate")
    result = load_text("\n---\n".join(json.dumps(d) for d in docs), "prop.yaml")
    if not result.ok:
        return
    try:
        translate.build_standalone(result.resources, listen_port=15001)
    except ConfigError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300))
def test_load_arbitrary_unicode_never_raises(text: str) -> None:
    _check(text)
