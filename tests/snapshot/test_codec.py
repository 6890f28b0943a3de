from __future__ import annotations

import pytest

from tollway.snapshot import codec, types


def test_codec_round_trips_a_snapshot() -> None:
    config = types.ProxyConfig(
        version="abc",
        node=types.Node(name="p1", labels={"app": "a"}),
        clusters=(types.Cluster(name="outbound|80||a.default.svc.cluster.local",
                                service="a.default.svc.cluster.local", port=80),),
    )
    assert codec.decode(codec.encode(config)) == config


@pytest.mark.parametrize(
    "data",
    [b"not json", b'{"version": 1}', b'{"version":"1","node":{"name":"x"},"schema":99}'],
)
def test_codec_refuses_bad_snapshots_with_its_own_error(data: bytes) -> None:
    with pytest.raises(codec.SnapshotError):
        codec.decode(data)
