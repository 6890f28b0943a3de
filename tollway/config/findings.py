"""Findings: what is wrong (or doubtful) in a manifest, as data.

Config errors are never exceptions escaping to the user: every check returns findings,
they are aggregated, and nothing is applied while any of them is an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem, located: file, line, resource and field path, and one sentence."""

    file: str
    line: int
    kind: str
    name: str
    path: str
    message: str
    severity: Severity = Severity.ERROR
    doc: int = 0

    def render(self) -> str:
        """`FILE:LINE: KIND/NAME: FIELD.PATH: severity: message` (the validate contract).

        A finding about the whole file (a YAML syntax error, an empty file) has no
        resource and no field: `FILE:LINE: severity: message`, as compilers print, rather
        than placeholders a reader has to decode."""
        if not (self.kind or self.name or self.path):
            return f"{self.file}:{self.line}: {self.severity.value}: {self.message}"
        kind = self.kind or "-"
        name = self.name or "-"
        path = self.path or "-"
        return (
            f"{self.file}:{self.line}: {kind}/{name}: {path}: "
            f"{self.severity.value}: {self.message}"
        )

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR


class ConfigError(Exception):
    """The project's own error for config: carries the findings that make it one."""

    def __init__(self, findings: list[Finding] | tuple[Finding, ...]) -> None:
        self.findings = tuple(findings)
        first = self.findings[0].render() if self.findings else "invalid configuration"
        more = f" (and {len(self.findings) - 1} more)" if len(self.findings) > 1 else ""
        super().__init__(first + more)


def has_errors(findings: list[Finding] | tuple[Finding, ...]) -> bool:
    return any(f.is_error for f in findings)
