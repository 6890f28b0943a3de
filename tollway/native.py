"""Which build of the proxy's per-request modules runs: mypyc-compiled, or pure Python.

`pip install` (setup.py) compiles the modules in `COMPILED` with mypyc into extension
modules next to their sources, and writes `MANIFEST` beside this file: the outcome and a
SHA-256 of every compiled source. Compiled and pure builds behave the same (the proxy
tests run on both); the compiled one costs about half the instructions per request.

An extension module shadows a `.py` of the same name (the import system prefers it), and
an editable install (`pip install -e .`) keeps the sources editable: a `.so` built before
an edit would silently run the old code. `install()`, called first thing in
`tollway/__init__.py`, therefore decides once per process, before any compiled module
is imported:

- compiled, when the manifest says so, every source still has the hash it was compiled
  from, and `TOLLWAY_PURE` is not set;
- otherwise pure Python for *all* of them, never a mix: the compiled modules call each
  other natively (one shared library), so one stale module means the whole set is stale.
  A meta path finder then serves the `.py` of any `tollway` module that has a `.so`
  beside it. `describe()` says which build runs and why (`tollway-native`, bench/hot_path.py).

`TOLLWAY_PURE=1` at run time forces pure Python; at build time (`TOLLWAY_PURE=1 pip
install -e .`) it skips compiling. Only the standard library is imported here: this runs
in every Tollway process, the sidecar included.
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import sys
from importlib.machinery import ModuleSpec, SourceFileLoader
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import ModuleType

# The per-request modules of the HTTP/1 and HTTP/2 data paths, compiled in one mypyc group
# (one shared library, `GROUP`, so that calls between them are native C calls). Modules
# with a class other code subclasses or monkeypatches, or that run once per snapshot,
# stay Python.
COMPILED: tuple[str, ...] = (
    "tollway.proxy.core.match",
    "tollway.proxy.core.route",
    "tollway.proxy.core.strmatch",
    "tollway.proxy.core.split",
    "tollway.proxy.core.trace",
    "tollway.proxy.core.headerops",
    "tollway.proxy.core.pathnorm",
    "tollway.proxy.core.exchange",
    "tollway.proxy.http1.parse",
    "tollway.proxy.http1.response",
    "tollway.proxy.http1.write",
    "tollway.proxy.core.retry",
    "tollway.proxy.core.classify",
    "tollway.proxy.core.limits",
    "tollway.proxy.core.outlier",
    "tollway.proxy.core.balance",
    "tollway.proxy.core.grpc",
    "tollway.proxy.chain.stream",
    "tollway.proxy.chain.build",  # per snapshot, but ListenerPlan is read per request
    "tollway.proxy.chain.router",
    "tollway.proxy.chain.forward",
    "tollway.proxy.chain.attempt",
    "tollway.proxy.chain.mirror",
    "tollway.proxy.chain.telemetry",
    "tollway.proxy.upstream.lease",
    "tollway.proxy.upstream.connection",
    "tollway.proxy.upstream.pool",
    "tollway.proxy.upstream.cluster",
    "tollway.proxy.upstream.pipeline",
    "tollway.proxy.h2.grpccall",
    "tollway.proxy.listener",
    "tollway.proxy.h2.headers",
    "tollway.proxy.h2.guard",
    "tollway.proxy.h2.hpack_fast",
    "tollway.proxy.h2.wire",
    "tollway.proxy.h2.conn",
    "tollway.proxy.h2.server",
)
GROUP = "tollway.proxy._hotpath"  # the shared library: tollway/proxy/_hotpath__mypyc.*.so
MANIFEST = "native.json"  # beside this file, written by setup.py's build
ENV_PURE = "TOLLWAY_PURE"

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)  # the directory holding the `tollway` package
_EXT = importlib.machinery.EXTENSION_SUFFIXES

# Set once by install(): (compiled?, why)
_state: tuple[bool, str] = (False, "not decided (tollway.native.install() was not called)")
_installed = False


def source_path(module: str, root: str = _ROOT) -> str:
    """The .py file of a module name, under `root`."""
    return os.path.join(root, *module.split(".")) + ".py"


def source_hash(path: str) -> str:
    import hashlib  # only when a source's size or mtime moved: not at every start

    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def pure_requested(environ: Any = os.environ) -> bool:
    return str(environ.get(ENV_PURE, "")).strip().lower() in ("1", "true", "yes", "on")


def decide(manifest: dict[str, Any] | None, root: str = _ROOT,
           environ: Any = os.environ) -> tuple[bool, str]:
    """(run the compiled build?, a sentence saying why) - pure logic over the manifest and
    the sources it names."""
    if pure_requested(environ):
        return False, f"pure Python: {ENV_PURE}=1"
    if manifest is None:
        return False, "pure Python: not compiled (no tollway/native.json; pip install compiles)"
    if manifest.get("status") != "compiled":
        return False, f"pure Python: the build did not compile ({manifest.get('reason', '?')})"
    modules: dict[str, Any] = manifest.get("modules", {})
    for module, recorded in modules.items():
        path = source_path(module, root)
        try:
            st = os.stat(path)
            if (st.st_size, st.st_mtime_ns) != (recorded["size"], recorded["mtime_ns"]) and (
                source_hash(path) != recorded["sha256"]
            ):
                rel = os.path.relpath(path, root)
                return False, (f"pure Python: {rel} changed since it was compiled "
                               "(pip install -e . compiles it again)")
        except (OSError, KeyError, TypeError):
            return False, f"pure Python: {module} is missing or the manifest is damaged"
        if not _has_extension(module, root):
            return False, f"pure Python: the extension module of {module} is missing"
    return True, (f"compiled (mypyc {manifest.get('mypy', '?')}, {len(modules)} modules; "
                  f"{ENV_PURE}=1 runs pure Python)")


def _has_extension(module: str, root: str) -> bool:
    base = os.path.join(root, *module.split("."))
    return any(os.path.exists(base + suffix) for suffix in _EXT)


def read_manifest(directory: str = _HERE) -> dict[str, Any] | None:
    try:
        with open(os.path.join(directory, MANIFEST), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class SourceFirst:
    """Meta path finder: for a module under `prefix` that has an extension module beside
    its .py, load the .py. Installed only when the pure build runs and .so files exist."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if path is None or not name.startswith(self.prefix):
            return None
        leaf = name.rpartition(".")[2]
        for directory in path:
            base = os.path.join(directory, leaf)
            if not any(os.path.exists(base + suffix) for suffix in _EXT):
                continue
            py = base + ".py"
            if os.path.exists(py):
                spec = ModuleSpec(name, SourceFileLoader(name, py), origin=py)
                spec.has_location = True  # __file__ and __cached__ as for any source module
                return spec
        return None

    def invalidate_caches(self) -> None: ...


def install() -> None:
    """Decide the build for this process (idempotent); see the module doc."""
    global _state, _installed
    if _installed:
        return
    _installed = True
    _state = decide(read_manifest())
    if not _state[0]:
        sys.meta_path.insert(0, SourceFirst("tollway."))


def compiled() -> bool:
    """Does this process run the compiled build?"""
    return _state[0]


def describe() -> str:
    return _state[1]


def loaded_compiled() -> list[str]:
    """The `COMPILED` modules imported so far as extension modules (a check on the above)."""
    out = []
    for name in COMPILED:
        mod = sys.modules.get(name)
        if mod is not None and not str(getattr(mod, "__file__", "")).endswith(".py"):
            out.append(name)
    return out

