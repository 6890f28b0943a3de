"""Snapshots from a control plane that predates the request-path settings decode with
Istio's defaults: BASE path normalization, websocket the only tunnelled upgrade."""

from __future__ import annotations

import msgspec

from tollway.snapshot import codec, types


def test_old_snapshots_get_istios_defaults() -> None:
    old = {"version": "v1", "node": {"name": "p"},
           "listeners": [{"name": "out", "kind": "outbound"}], "schema": 1}
    cfg = codec.decode(msgspec.json.encode(old))
    assert cfg.mesh.path_normalization == "BASE"
    assert cfg.listeners[0].upgrade_types == ("websocket",)


def test_the_defaults_are_not_written_out() -> None:
    """omit_defaults: a default mesh adds nothing to the wire (versions stay as they were)."""
    cfg = types.ProxyConfig(version="v", node=types.Node(name="p"),
                            listeners=(types.Listener(name="out", kind="outbound"),))
    wire = msgspec.json.decode(codec.encode(cfg))
    assert "mesh" not in wire and "upgrade_types" not in wire["listeners"][0]
    merged = msgspec.structs.replace(cfg, mesh=types.Mesh(path_normalization="NONE"))
    assert codec.decode(codec.encode(merged)).mesh.path_normalization == "NONE"
