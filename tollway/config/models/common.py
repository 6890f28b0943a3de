"""Shared building blocks for the typed models: strict base, durations, RE2, weights.

Every model is strict (no "5" for 5) and forbids unknown fields, and its field names are
the upstream camelCase ones (aliases), so error paths read exactly like the user's YAML.
"""

from __future__ import annotations

from typing import Annotated, Any

import re2
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from tollway.kit.durations import DurationError, parse_duration


class Strict(BaseModel):
    model_config = ConfigDict(
        strict=True, extra="forbid", alias_generator=to_camel, populate_by_name=False,
        frozen=True, hide_input_in_errors=False,
    )


def _duration(value: str) -> str:
    try:
        seconds = parse_duration(value)
    except DurationError as exc:
        raise ValueError(str(exc)) from None
    if seconds < 0:
        raise ValueError(f"'{value}' is negative; a duration must be >= 0")
    return value


def go_duration(value: str) -> str:
    """A Go duration string (`5s`, `1m30s`), as Argo and Flagger read them."""
    return _duration(value)


def _istio_duration(value: str) -> str:
    _duration(value)
    seconds = parse_duration(value)
    if 0 < seconds < 0.001:
        raise ValueError(f"'{value}' is below 1ms; Istio durations have millisecond precision")
    return value


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # we report the error ourselves, as a finding


def _re2(value: str) -> str:
    if len(value) > 1024:
        raise ValueError("regex is longer than 1024 characters (Istio's limit)")
    try:
        re2.compile(value, _RE2_OPTIONS)
    except Exception as exc:  # re2.error and friends
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(f"'{value}' is not a valid RE2 regex ({reason})") from None
    return value


def _label_key(value: str) -> str:
    if not value:
        raise ValueError("label keys must not be empty")
    return value


Duration = Annotated[str, AfterValidator(_istio_duration)]
GoDuration = Annotated[str, AfterValidator(_duration)]
Regex = Annotated[str, AfterValidator(_re2)]
Weight = Annotated[int, Field(ge=0, le=100)]
Percent = Annotated[float, Field(ge=0, le=100)]
PortNumber = Annotated[int, Field(ge=1, le=65535)]
NonNegInt = Annotated[int, Field(ge=0)]
Labels = dict[str, str]
NonEmptyStr = Annotated[str, Field(min_length=1)]
IntOrString = int | str


def duration_or_seconds(value: Any) -> Any:
    """Argo accepts `duration: 30` (seconds) as well as `duration: 30s`."""
    if isinstance(value, str):
        _duration(value)
    return value


ArgoDuration = Annotated[int | str, AfterValidator(duration_or_seconds)]


class LabelSelector(Strict):
    match_labels: Labels | None = None
    match_expressions: list[LabelSelectorRequirement] | None = None


class LabelSelectorRequirement(Strict):
    key: str
    operator: str
    values: list[str] | None = None


def _plain_labels(labels: Labels | None, field: str) -> None:
    """Istio's selector rule (validateWorkloadSelector, ValidateAlphaWorkloadSelector):
    no empty key and no '*' in a key or a value."""
    for k, v in (labels or {}).items():
        if not k:
            raise ValueError(f"{field} keys must not be empty")
        if "*" in k or "*" in v:
            raise ValueError(f"wildcards are not supported in {field} ({k}: {v})")


class WorkloadSelector(Strict):
    match_labels: Labels | None = None

    @model_validator(mode="after")
    def _no_wildcards(self) -> WorkloadSelector:
        _plain_labels(self.match_labels, "matchLabels")
        return self


class AlphaWorkloadSelector(Strict):
    """`workloadSelector: {labels: ...}` of ServiceEntry and Sidecar (networking API)."""

    labels: Labels | None = None

    @model_validator(mode="after")
    def _no_wildcards(self) -> AlphaWorkloadSelector:
        _plain_labels(self.labels, "workloadSelector labels")
        return self


LabelSelector.model_rebuild()
