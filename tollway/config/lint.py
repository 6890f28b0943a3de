"""Per-resource warnings: valid manifests that probably do not mean what they say.

Errors come from the models; these never block an apply.
"""

from __future__ import annotations

from collections.abc import Iterator

from tollway.config.findings import Severity
from tollway.config.resource import Resource
from tollway.config.source import PathKey

Lint = tuple[Severity, PathKey, str]


def _rollout(resource: Resource) -> Iterator[Lint]:
    canary = resource.spec.get("strategy", {}).get("canary")
    if isinstance(canary, dict) and "autoPromotionEnabled" in canary:
        yield (
            Severity.WARNING,
            ("strategy", "canary", "autoPromotionEnabled"),
            "autoPromotionEnabled is a blueGreen field in Argo Rollouts, not a canary one; "
            "Tollway accepts it and honours autoPromotionEnabled: false as a manual gate "
            "before the final step (promote with `tollway rollout promote`)",
        )


_LINTS = {"Rollout": _rollout}


def lint(resource: Resource) -> list[Lint]:
    fn = _LINTS.get(resource.kind)
    return list(fn(resource)) if fn else []
