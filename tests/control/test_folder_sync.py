from __future__ import annotations

from pathlib import Path

from tollway.control.folder import ManifestFolder
from tollway.control.store import ConfigStore

SVC = """apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  ports:
  - port: {port}
"""


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    import os

    st = path.stat()  # make the change visible even within one mtime tick
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def _store() -> ConfigStore:
    return ConfigStore(validator=lambda _r: [])


def test_folder_sync_applies_then_only_changes(tmp_path: Path) -> None:
    store = _store()
    folder = ManifestFolder(tmp_path, store)
    _write(tmp_path / "a.yaml", SVC.format(name="a", port=80))
    _write(tmp_path / "b.yaml", SVC.format(name="b", port=80))
    first = folder.sync()
    assert first is not None and first.ok and len(first.changed) == 2
    assert folder.sync() is None  # nothing changed on disk
    _write(tmp_path / "b.yaml", SVC.format(name="b", port=81))
    second = folder.sync()
    assert second is not None and second.changed == (("Service", "default", "b"),)


def test_folder_invalid_file_changes_nothing(tmp_path: Path) -> None:
    store = _store()
    folder = ManifestFolder(tmp_path, store)
    _write(tmp_path / "a.yaml", SVC.format(name="a", port=80))
    folder.sync()
    _write(tmp_path / "a.yaml", SVC.format(name="a", port=81))
    _write(tmp_path / "bad.yaml", "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n"
                                  "spec:\n  bogus: 1\n")
    result = folder.sync()
    assert result is not None and not result.ok
    assert any(f.file.endswith("bad.yaml") for f in result.findings)
    svc = store.get(("Service", "default", "a"))
    assert svc is not None and svc.spec["ports"][0]["port"] == 80


def test_folder_prunes_only_its_own_resources(tmp_path: Path, make_resource: object) -> None:
    store = _store()
    folder = ManifestFolder(tmp_path, store)
    _write(tmp_path / "a.yaml", SVC.format(name="a", port=80))
    _write(tmp_path / "b.yaml", SVC.format(name="b", port=80))
    folder.sync()
    store.apply([make_resource("Service", "user-made")], actor="user")  # type: ignore[operator]
    (tmp_path / "b.yaml").unlink()
    result = folder.sync()
    assert result is not None and result.deleted == (("Service", "default", "b"),)
    assert store.get(("Service", "default", "user-made")) is not None


def test_folder_ignores_state_dir_and_subfolders(tmp_path: Path) -> None:
    store = _store()
    (tmp_path / ".tollway").mkdir()
    (tmp_path / ".tollway" / "x.json").write_text("{}")
    (tmp_path / "switch").mkdir()
    _write(tmp_path / "switch" / "s.yaml", SVC.format(name="s", port=80))
    _write(tmp_path / "a.yaml", SVC.format(name="a", port=80))
    result = ManifestFolder(tmp_path, store).sync()
    assert result is not None and result.changed == (("Service", "default", "a"),)
