"""Findings located in a Resource by field path (for checks that run after loading)."""

from __future__ import annotations

from tollway.config.findings import Finding, Severity
from tollway.config.resource import Resource
from tollway.config.source import PathKey, format_path


def finding(r: Resource, path: PathKey, message: str,
            severity: Severity = Severity.ERROR) -> Finding:
    """A finding in `r` at `path` (a path from the document root), at that path's line."""
    return Finding(r.source.file, r.line_of(path), r.kind, r.name, format_path(path),
                   message, severity, r.source.doc)
