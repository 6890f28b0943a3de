"""Volume plans: which files each volume holds and where containers mount them (pure)."""

from __future__ import annotations

import pytest
from lightkube.models.core_v1 import Container, PodSpec, Volume

from tests.devnode.podspecs import service_account_volume
from tollway.devnode.envvars import PodFacts
from tollway.devnode.volumes import (
    Mount,
    Sources,
    VolumeError,
    VolumePlan,
    container_mounts,
    needed_tokens,
    plan_volume,
    referenced,
)

POD = PodFacts("p", "ns1", "u", "n", "sa", "10.244.0.2", "10.244.0.1", {"a": "1", "b": "2"}, {})


def vol(d: dict[str, object]) -> Volume:
    return Volume.from_dict(d)  # type: ignore[return-value]


def plan(d: dict[str, object], maps=None, secrets=None, tokens=None) -> VolumePlan:
    return plan_volume(vol(d), POD, Sources(maps or {}, secrets or {}, tokens or {}))


def test_config_map_all_keys_or_items_with_modes() -> None:
    maps = {"c": {"a.conf": "A", "b.conf": "B"}}
    assert plan({"name": "v", "configMap": {"name": "c"}}, maps).files == {
        "a.conf": (b"A", 0o644),
        "b.conf": (b"B", 0o644),
    }
    p = plan(
        {
            "name": "v",
            "configMap": {
                "name": "c",
                "defaultMode": 0o600,
                "items": [{"key": "b.conf", "path": "sub/b", "mode": 0o400}],
            },
        },
        maps,
    )
    assert p.files == {"sub/b": (b"B", 0o400)}


def test_missing_sources_are_errors_unless_optional() -> None:
    with pytest.raises(VolumeError, match=r"volume 'v': configMap 'nope' not found"):
        plan({"name": "v", "configMap": {"name": "nope"}})
    assert plan({"name": "v", "secret": {"secretName": "s", "optional": True}}).files == {}
    with pytest.raises(VolumeError, match=r"key 'x' not found"):
        plan(
            {"name": "v", "configMap": {"name": "c", "items": [{"key": "x", "path": "x"}]}},
            {"c": {}},
        )


def test_paths_cannot_escape_the_volume() -> None:
    with pytest.raises(VolumeError, match="must be relative and stay inside the volume"):
        plan(
            {
                "name": "v",
                "configMap": {"name": "c", "items": [{"key": "k", "path": "../../etc/passwd"}]},
            },
            {"c": {"k": "x"}},
        )


def test_service_account_volume_like_admission_makes_it() -> None:
    d = service_account_volume("kube-api-access-abc")
    spec = PodSpec.from_dict({"containers": [{"name": "a"}], "volumes": [d]})
    assert needed_tokens(spec) == [("", 3607)]  # type: ignore[arg-type]
    assert referenced(spec) == ({"kube-root-ca.crt"}, set())  # type: ignore[arg-type]
    p = plan(d, {"kube-root-ca.crt": {"ca.crt": "PEM"}}, tokens={("", 3607): "jwt"})
    assert p.files == {"token": (b"jwt", 420), "ca.crt": (b"PEM", 420), "namespace": (b"ns1", 420)}


def test_downward_labels_file_format() -> None:
    p = plan(
        {
            "name": "v",
            "downwardAPI": {
                "items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]
            },
        }
    )
    assert p.files["labels"][0] == b'a="1"\nb="2"'


def test_unsupported_volume_type_names_the_alternatives() -> None:
    with pytest.raises(VolumeError, match="only emptyDir, hostPath, configMap"):
        plan({"name": "data", "persistentVolumeClaim": {"claimName": "x"}})


def test_mounts_resolve_and_validate() -> None:
    vols = {"w": VolumePlan("w", empty_dir=True)}
    c = Container.from_dict(
        {
            "name": "a",
            "volumeMounts": [
                {"name": "w", "mountPath": "/data/", "subPath": "x", "readOnly": True}
            ],
        }
    )
    assert container_mounts(c, vols) == [Mount("w", "x", "/data", True)]  # type: ignore[arg-type]
    bad = Container.from_dict({"name": "a", "volumeMounts": [{"name": "zz", "mountPath": "/d"}]})
    with pytest.raises(VolumeError, match=r"volumeMount 'zz': no volume of that name"):
        container_mounts(bad, vols)  # type: ignore[arg-type]
