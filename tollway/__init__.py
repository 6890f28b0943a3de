"""Tollway: a service mesh with progressive delivery, written in Python."""

__version__ = "0.1.0"
