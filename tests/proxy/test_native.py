"""The compiled hot path (tollway/native.py, setup.py): which build runs, and that no stale
extension module ever shadows an edited source.

The proxy tests run twice in `make test`: on the build `pip install` made (compiled when a
C compiler is there) and with TOLLWAY_PURE=1 (pure Python). These tests check the switch
itself and that this process runs the build it says it runs."""

from __future__ import annotations

import importlib.machinery
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tollway
from tollway import native

ROOT = Path(tollway.__file__).resolve().parent.parent
EXT = importlib.machinery.EXTENSION_SUFFIXES[0]


def _tree(tmp_path: Path, modules: dict[str, str], *, extensions: bool = True) -> dict[str, object]:
    """Sources (and fake extension files) under tmp_path, and the manifest a build of them
    would have written."""
    recorded: dict[str, object] = {}
    for module, text in modules.items():
        path = Path(native.source_path(module, str(tmp_path)))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if extensions:
            path.with_suffix("").with_name(path.stem + EXT).write_bytes(b"not an ELF file")
        st = path.stat()
        recorded[module] = {"sha256": native.source_hash(str(path)), "size": st.st_size,
                            "mtime_ns": st.st_mtime_ns}
    return {"status": "compiled", "mypy": "test", "modules": recorded}


def test_a_fresh_build_runs_compiled(tmp_path: Path) -> None:
    manifest = _tree(tmp_path, {"pkg.a": "A = 1\n", "pkg.sub.b": "B = 2\n"})
    ok, why = native.decide(manifest, str(tmp_path), environ={})
    assert ok, why
    assert why.startswith("compiled") and "2 modules" in why


def test_an_edited_source_makes_the_whole_set_pure(tmp_path: Path) -> None:
    manifest = _tree(tmp_path, {"pkg.a": "A = 1\n", "pkg.sub.b": "B = 2\n"})
    Path(native.source_path("pkg.sub.b", str(tmp_path))).write_text("B = 3\n")
    ok, why = native.decide(manifest, str(tmp_path), environ={})
    assert not ok
    assert "pkg/sub/b.py changed since it was compiled" in why


def test_a_touched_but_unchanged_source_stays_compiled(tmp_path: Path) -> None:
    """git checkout rewrites files with new mtimes: the hash decides, not the mtime."""
    manifest = _tree(tmp_path, {"pkg.a": "A = 1\n"})
    path = native.source_path("pkg.a", str(tmp_path))
    os.utime(path, ns=(1, 1))
    assert native.decide(manifest, str(tmp_path), environ={})[0]


@pytest.mark.parametrize(
    ("manifest", "env", "expect"),
    [
        (None, {}, "not compiled"),
        ({"status": "no-compiler", "reason": "no Python.h"}, {}, "no Python.h"),
        ({"status": "compiled", "modules": {}}, {"TOLLWAY_PURE": "1"}, "TOLLWAY_PURE=1"),
    ],
)
def test_pure_when_not_built_or_asked(
    tmp_path: Path, manifest: dict[str, object] | None, env: dict[str, str], expect: str
) -> None:
    ok, why = native.decide(manifest, str(tmp_path), environ=env)
    assert not ok and why.startswith("pure Python") and expect in why


def test_a_missing_extension_module_means_pure(tmp_path: Path) -> None:
    manifest = _tree(tmp_path, {"pkg.a": "A = 1\n"}, extensions=False)
    ok, why = native.decide(manifest, str(tmp_path), environ={})
    assert not ok and "extension module of pkg.a is missing" in why


def test_source_first_finder_never_loads_the_extension(tmp_path: Path) -> None:
    """Pure mode: a module with a (here: unloadable) .so beside its .py imports the .py."""
    _tree(tmp_path, {"shadowpkg.mod": "WHERE = 'source'\n"})
    (tmp_path / "shadowpkg" / "__init__.py").write_text("")
    finder = native.SourceFirst("shadowpkg.")
    sys.path.insert(0, str(tmp_path))
    sys.meta_path.insert(0, finder)
    try:
        import shadowpkg.mod  # type: ignore[import-not-found]

        assert shadowpkg.mod.WHERE == "source"
        assert shadowpkg.mod.__file__.endswith("mod.py")
    finally:
        sys.meta_path.remove(finder)
        sys.path.remove(str(tmp_path))
        for name in ("shadowpkg.mod", "shadowpkg"):
            sys.modules.pop(name, None)


def test_this_process_runs_the_build_it_reports() -> None:
    import tollway.proxy.listener  # noqa: F401  (a compiled module, when compiled)

    loaded = native.loaded_compiled()
    if native.compiled():
        assert "tollway.proxy.listener" in loaded, native.describe()
    else:
        assert loaded == [], native.describe()
    if native.pure_requested():
        assert not native.compiled()


def test_the_build_compiled_when_it_could() -> None:
    """A mypyc or C error is a code problem (a construct mypyc refuses, a type that lies):
    the install falls back to pure Python so nobody is blocked, and this test says why."""
    manifest = native.read_manifest()
    if manifest is None:
        pytest.skip("no tollway/native.json: this install was made before the compiled build")
    assert manifest.get("status") not in ("mypyc-error", "c-error"), manifest.get("reason")


def test_a_subprocess_sees_the_same_switch() -> None:
    """The sidecar is a subprocess: TOLLWAY_PURE reaches it through the environment."""
    code = "import tollway.native as n, tollway.proxy.listener; print(n.compiled())"
    env = {**os.environ, "TOLLWAY_PURE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True, cwd=ROOT, timeout=120)
    assert out.stdout.strip() == "False"


def test_the_manifest_names_the_modules_native_lists() -> None:
    manifest = native.read_manifest()
    if manifest is None or manifest.get("status") != "compiled":
        pytest.skip(f"not a compiled build: {native.describe()}")
    assert sorted(manifest["modules"]) == sorted(native.COMPILED)
    assert json.dumps(manifest)  # plain JSON, readable by anyone debugging a build
