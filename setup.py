"""Build hook: compile the proxy's per-request modules with mypyc at `pip install`.

Everything else about the package is in pyproject.toml. The modules, the shared library's
name and the manifest format are tollway/native.py's (read here without importing the
package). mypyc compiles the same mypy-strict sources the pure build runs; when it cannot
(no C compiler or Python headers, or a mypyc error) the install goes on with pure Python
and says so once, and tollway/native.json records why (`python -m tollway.native`).

- `TOLLWAY_PURE=1 pip install -e .` skips compiling.
- An editable install puts the extension modules beside their sources; stale ones are
  deleted before each build, and at run time tollway/native.py imports the sources
  instead whenever one of them changed after the build (no stale code ever runs).
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import sys
import sysconfig
import time
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
# The build's mypy run gives mypyc its types; it is not the type check (CI's `mypy` is).
# pip builds in an isolated environment without the runtime dependencies, so what they
# would type becomes Any (compiled as generic Python operations: correct, a bit slower),
# and errors that only this environment has are not reported.
_RELAXED = (
    "--ignore-missing-imports",
    "--follow-imports=silent",
    "--allow-subclassing-any",
    "--allow-untyped-calls",
    "--allow-untyped-decorators",
    "--no-warn-return-any",
    "--no-warn-unused-ignores",
)


def _native() -> Any:
    spec = importlib.util.spec_from_file_location(
        "_tollway_native_build", os.path.join(HERE, "tollway", "native.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _say(text: str) -> None:
    print(f"tollway build: {text}", file=sys.stderr, flush=True)


class BuildHotPath(build_ext):
    """build_ext that turns the placeholder extension into mypyc's, or into nothing."""

    def finalize_options(self) -> None:
        self._manifest: dict[str, Any] = {}
        self._exts: list[Extension] = []
        super().finalize_options()

    def _mypycify(self, native: Any) -> None:
        if native.pure_requested(os.environ):
            self._manifest = {"status": "pure", "reason": f"{native.ENV_PURE}=1 at build time"}
            return
        if not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")):
            self._manifest = {"status": "no-compiler",
                              "reason": "no Python.h (install python3-dev)"}
            return
        try:
            from mypyc.build import mypycify
        except ImportError as exc:
            self._manifest = {"status": "no-compiler", "reason": f"mypyc missing: {exc}"}
            return
        paths = [os.path.relpath(native.source_path(m, HERE), HERE) for m in native.COMPILED]
        started = time.monotonic()
        try:
            self._exts = mypycify(
                ["--config-file", os.path.join(HERE, "pyproject.toml"), *_RELAXED, *paths],
                group_name=native.GROUP,
                target_dir=os.path.join(self.build_temp, "mypyc"),
                opt_level="3",
            )
        except SystemExit as exc:  # mypyc reports type errors by exiting
            self._manifest = {"status": "mypyc-error", "reason": f"mypyc failed: {exc}"}
            self._exts = []
            return
        _say(f"mypyc translated {len(paths)} modules in {time.monotonic() - started:.0f}s")

    def run(self) -> None:
        native = _native()
        inplace = bool(self.inplace or getattr(self, "editable_mode", False))
        if inplace:
            _remove_built(HERE)  # never leave an old .so shadowing an edited source
        os.chdir(HERE)  # mypyc takes paths relative to the project
        self._mypycify(native)
        self.extensions = self._exts
        self.distribution.ext_modules = self._exts
        if self._exts:
            for ext in self._exts:  # what setuptools' finalize_options does per extension
                ext._full_name = self.get_ext_fullname(ext.name)  # type: ignore[attr-defined]
                ext._links_to_dynamic = False  # type: ignore[attr-defined]
                ext._needs_stub = False  # type: ignore[attr-defined]
            self.ext_map = {ext._full_name: ext for ext in self._exts}  # type: ignore[attr-defined]
            self.parallel = self.parallel or os.cpu_count() or 1
            started = time.monotonic()
            try:
                super().run()
            except Exception as exc:  # a C compiler error or none at all: pure Python
                self._manifest = {"status": "c-error", "reason": f"C build failed: {exc}"}
                _remove_built(self.build_lib)
                if inplace:
                    _remove_built(HERE)
            else:
                self._manifest = {
                    "status": "compiled",
                    "mypy": _mypy_version(),
                    "modules": {m: _record(native.source_path(m, HERE))
                                for m in native.COMPILED},
                }
                _say(f"compiled hot path built in {time.monotonic() - started:.0f}s")
        if self._manifest.get("status") != "compiled":
            _say(f"the proxy runs as pure Python: {self._manifest.get('reason')}")
        targets = [os.path.join(self.build_lib, "tollway")]
        if inplace:
            targets.append(os.path.join(HERE, "tollway"))
        for directory in targets:
            os.makedirs(directory, exist_ok=True)
            with open(os.path.join(directory, native.MANIFEST), "w", encoding="utf-8") as f:
                json.dump(self._manifest, f, indent=1, sort_keys=True)
                f.write("\n")

    def get_outputs(self) -> list[str]:
        return super().get_outputs() if self.extensions else []


def _record(path: str) -> dict[str, Any]:
    native = _native()
    st = os.stat(path)
    return {"sha256": native.source_hash(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _mypy_version() -> str:
    try:
        from mypy.version import __version__
    except ImportError:
        return "?"
    return str(__version__)


def _remove_built(root: str) -> None:
    """Extension modules and the manifest of an earlier build under root/tollway."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    for path in glob.glob(os.path.join(root, "tollway", "**", "*" + suffix), recursive=True):
        os.remove(path)
    manifest = os.path.join(root, "tollway", "native.json")
    if os.path.exists(manifest):
        os.remove(manifest)


# A placeholder: it makes setuptools run build_ext (and tag the wheel for this platform);
# BuildHotPath replaces it with mypyc's extensions, or with none.
setup(
    ext_modules=[Extension("tollway.proxy._hotpath_placeholder", sources=[])],
    cmdclass={"build_ext": BuildHotPath},
)
