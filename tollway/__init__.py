"""Tollway: a service mesh with progressive delivery, written in Python."""

from tollway import native as _native

# Before any submodule: decides whether the mypyc-compiled hot path or its pure-Python
# sources are imported (a stale compiled module must never shadow an edited source).
_native.install()

__version__ = "0.1.0"
