"""Property tests over the kinds issue 12 added: mutated Sidecars, RequestAuthentications,
accepted kinds and upstream-field manifests never make loading (or translating what
loads, for every proxy kind) raise anything but ConfigError."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.config.test_validate_properties import _check, _paths, values
from tollway.config.findings import ConfigError
from tollway.config.load import load_text
from tollway.config.source import parse_text
from tollway.control import translate
from tollway.control.world import World
from tollway.snapshot import types

HERE = Path(__file__).resolve().parent
FILES = [*sorted((HERE / "accepted").glob("*.yaml")), *sorted((HERE / "valid").glob("*.yaml"))]
DOCS: list[Any] = [d.data for p in FILES for d in parse_text(p.read_text())[0]]
NODES = (types.Node(name="web-0.shop", workload="web", namespace="shop",
                    labels={"app": "reviews"}),
         types.Node(name="gw", workload="gw", namespace="istio-system", kind="gateway"))


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    doc = copy.deepcopy(draw(st.sampled_from(DOCS)))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p and p[0] not in ("apiVersion", "kind")]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for seg in path[:-1]:
            parent = parent[seg]
        if draw(st.booleans()):
            parent[path[-1]] = draw(values)
        else:
            del parent[path[-1]]
    return doc


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_new_kinds_never_raise(doc: Any) -> None:
    _check(json.dumps(doc, allow_nan=True))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutated() | st.sampled_from(DOCS), min_size=1, max_size=5))
def test_translating_what_loads_never_raises(docs: list[Any]) -> None:
    result = load_text("\n---\n".join(json.dumps(d) for d in docs), "prop.yaml")
    if not result.ok:
        return
    world = World.build(result.resources, ())
    for node in NODES:
        try:
            translate.build(world, node, translate.ProxyPorts(outbound=("127.0.0.1", 15001)))
        except ConfigError:
            pass
